-- diffill for Neovim: ghost-text completion and selection infill from the diffill
-- language server (configured in lsp/diffill.lua, started by vim.lsp.enable('diffill')).
local config = require('diffill.config')

local M = {}

M.name = 'diffill'

--- Sets plugin options (see :help diffill-options).
---@param opts? table
function M.setup(opts)
  config.set(opts)
end

--- The diffill client attached to `bufnr`, if any.
---@param bufnr? integer
---@return vim.lsp.Client?
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = M.name })[1]
end

--- Infills a range of the current buffer (see :DiffillInfill).
M.infill = function(...)
  return require('diffill.infill').infill(...)
end

--- Asks the server for its model, adapter and latencies, and prints them.
function M.status()
  local client = M.client(0) or vim.lsp.get_clients({ name = M.name })[1]
  if not client then
    vim.notify('diffill: no language server is running', vim.log.levels.WARN)
    return
  end
  client:request('workspace/executeCommand', { command = 'diffill.status', arguments = {} }, function(err, result)
    if err then
      vim.notify('diffill: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    result = result or {}
    local last = result.latencies_ms and result.latencies_ms[#result.latencies_ms]
    vim.notify(
      ('diffill: model %s, adapter %s, last %s, median %s'):format(
        result.model or 'default',
        result.adapter or 'none',
        last and ('%.0f ms'):format(last) or '-',
        result.p50_ms and ('%.0f ms'):format(result.p50_ms) or '-'
      )
    )
  end)
end

--- Stops the diffill clients and, once they are gone, starts them again for the open buffers.
function M.restart()
  local clients = vim.lsp.get_clients({ name = M.name })
  vim.lsp.enable(M.name, false) -- stops the clients
  local deadline = vim.uv.now() + 5000
  local function start_when_stopped()
    local alive = vim.tbl_filter(function(c)
      return not c:is_stopped()
    end, clients)
    if #alive > 0 and vim.uv.now() < deadline then
      vim.defer_fn(start_when_stopped, 50)
      return
    end
    for _, c in ipairs(alive) do
      c:stop(true)
    end
    vim.lsp.enable(M.name) -- attaches a new client to every open buffer of its filetypes
  end
  start_when_stopped()
end

-- Ghost text: accept, dismiss, cycle, trigger (see :help diffill-inline).
for _, name in ipairs({ 'accept', 'dismiss', 'next', 'prev', 'trigger', 'visible' }) do
  M[name] = function(...)
    return require('diffill.inline')[name](...)
  end
end

return M
