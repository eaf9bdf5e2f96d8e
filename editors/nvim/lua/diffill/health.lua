-- :checkhealth diffill
local M = {}

local function server_cmd()
  local ok, cfg = pcall(function()
    return vim.lsp.config.diffill
  end)
  if ok and cfg and type(cfg.cmd) == 'table' then
    return cfg.cmd
  end
end

function M.check()
  local health = vim.health
  health.start('diffill: Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok(('Neovim %s'):format(tostring(vim.version())))
  else
    health.error('Neovim 0.11 or newer is needed (lsp/diffill.lua and vim.lsp.enable)')
  end
  if vim.lsp.inline_completion then
    health.ok('ghost text: vim.lsp.inline_completion (Neovim 0.12+)')
  else
    health.ok('ghost text: drawn by diffill with extmarks (Neovim 0.11)')
  end

  health.start('diffill: language server')
  local cmd = server_cmd()
  if not cmd then
    health.error('no configuration for "diffill": is editors/nvim on the runtimepath?')
    return
  end
  local exe = cmd[1]
  if vim.fn.executable(exe) == 1 then
    health.ok(('%s found: %s'):format(exe, vim.fn.exepath(exe)))
  else
    health.error(('%s not found'):format(exe), {
      'Install diffill (pip install -e . in the repository) or point the config at it:',
      "vim.lsp.config('diffill', { cmd = { '/path/to/.venv/bin/diffill', 'serve' } })",
    })
  end
  if vim.lsp.is_enabled and not vim.lsp.is_enabled('diffill') then
    health.warn("the server is not enabled", { "add vim.lsp.enable('diffill') to your config" })
  end

  local clients = vim.lsp.get_clients({ name = 'diffill' })
  if #clients == 0 then
    health.info('not running (it starts when you open a file of a supported language)')
    return
  end
  for _, client in ipairs(clients) do
    local caps = client.server_capabilities or {}
    health.ok(('running (client id %d, root %s)'):format(client.id, client.root_dir or '-'))
    if caps.inlineCompletionProvider then
      health.ok('server offers textDocument/inlineCompletion')
    else
      health.warn('server does not offer textDocument/inlineCompletion: no ghost text')
    end
    local resp = client:request_sync('workspace/executeCommand', { command = 'diffill.status', arguments = {} }, 5000)
    if resp and resp.result then
      local r = resp.result
      health.info(('model: %s'):format(r.model or 'shipped default'))
      health.info(('adapter: %s'):format(r.adapter or 'none'))
      if r.p50_ms then
        health.info(('median latency: %.0f ms over %d requests'):format(r.p50_ms, #(r.latencies_ms or {})))
      end
    else
      health.warn('diffill.status did not answer: ' .. vim.inspect(resp and resp.err or 'timeout'))
    end
  end
end

return M
