-- Plugin options: defaults, merged with `vim.g.diffill` and `require('diffill').setup(opts)`.
local M = {}

---@class diffill.Keymaps
---@field accept string|false     insert mode: accept the ghost text (falls back to the key itself)
---@field dismiss string|false    insert mode: hide the ghost text
---@field next string|false       insert mode: show the next candidate
---@field prev string|false       insert mode: show the previous candidate
---@field trigger string|false    insert mode: ask for a completion now

---@class diffill.Options
---@field inline boolean          ghost-text completion in buffers the server is attached to
---@field auto_trigger boolean    ask while typing (otherwise only with the trigger key)
---@field debounce_ms integer     wait this long after the last keystroke before asking
---@field native boolean|'auto'   use vim.lsp.inline_completion ('auto': on Neovim 0.12+)
---@field keymaps diffill.Keymaps

---@type diffill.Options
M.defaults = {
  inline = true,
  auto_trigger = true,
  debounce_ms = 150,
  native = 'auto',
  keymaps = {
    accept = '<Tab>',
    dismiss = '<C-]>',
    next = '<M-]>',
    prev = '<M-[>',
    trigger = '<M-\\>',
  },
}


--- Merges `opts` (and `vim.g.diffill`) over the defaults and validates the result.
---@param opts? table
---@return diffill.Options
function M.set(opts)
  local merged = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), vim.g.diffill or {}, opts or {})
  vim.validate('inline', merged.inline, 'boolean')
  vim.validate('auto_trigger', merged.auto_trigger, 'boolean')
  vim.validate('debounce_ms', merged.debounce_ms, 'number')
  vim.validate('native', merged.native, function(v)
    return v == 'auto' or type(v) == 'boolean'
  end, "'auto' or a boolean")
  for name, lhs in pairs(merged.keymaps) do
    vim.validate('keymaps.' .. name, lhs, function(v)
      return v == false or type(v) == 'string'
    end, 'a key or false')
  end
  M.options = merged
  return merged
end

--- Whether to leave ghost text to Neovim's own vim.lsp.inline_completion.
---@return boolean
function M.use_native()
  local native = M.options.native
  if native == 'auto' then
    return vim.lsp.inline_completion ~= nil
  end
  return native and vim.lsp.inline_completion ~= nil
end

---@type diffill.Options
M.options = M.set() -- picks up vim.g.diffill; setup() may override later

return M
