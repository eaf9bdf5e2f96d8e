-- :DiffillInfill: rewrite a range with the server's infill (workspace/executeCommand
-- diffill.infill {uri, range}); the server applies the edit through workspace/applyEdit.
local api = vim.api
local M = {}

--- LSP range of a byte range of `bufnr` (0-based rows, byte columns, end exclusive).
---@param bufnr integer
---@param srow integer
---@param scol integer
---@param erow integer
---@param ecol integer
---@param encoding string
---@return lsp.Range
function M.lsp_range(bufnr, srow, scol, erow, ecol, encoding)
  local function pos(row, col)
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    col = math.min(col, #line)
    return { line = row, character = vim.str_utfindex(line, encoding, col, false) }
  end
  return { start = pos(srow, scol), ['end'] = pos(erow, ecol) }
end

--- The byte range a command range stands for: the last visual selection when the command
--- was given from it (characterwise selections keep their columns), else whole lines.
---@param bufnr integer
---@param line1 integer 1-based
---@param line2 integer 1-based
---@return integer srow, integer scol, integer erow, integer ecol
function M.command_range(bufnr, line1, line2)
  local vstart, vend = api.nvim_buf_get_mark(bufnr, '<'), api.nvim_buf_get_mark(bufnr, '>')
  local mode = vim.fn.visualmode()
  if mode == 'v' and vstart[1] == line1 and vend[1] == line2 then
    local last = api.nvim_buf_get_lines(bufnr, vend[1] - 1, vend[1], false)[1] or ''
    -- '> is on the selection's last character, which may be several bytes long.
    local ecol = math.min(#last, vend[2] + #vim.fn.strcharpart(last:sub(vend[2] + 1), 0, 1))
    return vstart[1] - 1, vstart[2], vend[1] - 1, ecol
  end
  local last = api.nvim_buf_get_lines(bufnr, line2 - 1, line2, false)[1] or ''
  return line1 - 1, 0, line2 - 1, #last
end

--- Asks the server to infill rows/columns of `bufnr`; `on_done(err)` is called when the
--- server has answered (after it applied the edit).
---@param opts { bufnr?: integer, line1: integer, line2: integer, on_done?: fun(err: lsp.ResponseError?) }
function M.infill(opts)
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and api.nvim_get_current_buf() or opts.bufnr
  local client = require('diffill').client(bufnr)
  local function done(err)
    if opts.on_done then
      opts.on_done(err)
    end
  end
  if not client then
    vim.notify('diffill: the language server is not attached to this buffer', vim.log.levels.WARN)
    return done({ code = -32603, message = 'not attached' })
  end
  local srow, scol, erow, ecol = M.command_range(bufnr, opts.line1, opts.line2)
  local argument = {
    uri = vim.uri_from_bufnr(bufnr),
    range = M.lsp_range(bufnr, srow, scol, erow, ecol, client.offset_encoding),
  }
  client:request('workspace/executeCommand', {
    command = 'diffill.infill',
    arguments = { argument },
  }, function(err)
    if err then
      vim.notify('diffill: ' .. err.message, vim.log.levels.ERROR)
    end
    done(err)
  end, bufnr)
end

return M
