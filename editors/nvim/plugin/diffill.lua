-- diffill: commands and ghost text for the diffill language server.
-- The server itself is configured by lsp/diffill.lua and started by vim.lsp.enable('diffill').
if vim.g.loaded_diffill then
  return
end
vim.g.loaded_diffill = true

if vim.fn.has('nvim-0.11') == 0 then
  vim.notify('diffill needs Neovim 0.11 or newer', vim.log.levels.WARN)
  return
end

vim.api.nvim_set_hl(0, 'DiffillGhostText', { link = 'Comment', default = true })

vim.api.nvim_create_user_command('DiffillInfill', function(cmd)
  require('diffill.infill').infill({ line1 = cmd.line1, line2 = cmd.line2 })
end, { range = true, desc = 'diffill: infill the selected range' })

vim.api.nvim_create_user_command('DiffillStatus', function()
  require('diffill').status()
end, { desc = 'diffill: model, adapter and latency of the language server' })

vim.api.nvim_create_user_command('DiffillRestart', function()
  require('diffill').restart()
end, { desc = 'diffill: restart the language server (e.g. to load a new workspace adapter)' })

local group = vim.api.nvim_create_augroup('diffill', { clear = true })

vim.api.nvim_create_autocmd('LspAttach', {
  group = group,
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == 'diffill' then
      require('diffill.inline').attach(args.buf, client)
    end
  end,
})

vim.api.nvim_create_autocmd('LspDetach', {
  group = group,
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == 'diffill' then
      require('diffill.inline').detach(args.buf)
    end
  end,
})
