-- Inline ghost-text completion from textDocument/inlineCompletion (LSP 3.18).
--
-- Neovim 0.12+ has vim.lsp.inline_completion, which this module switches on and maps keys to.
-- Neovim 0.11 has none, so the ghost text is drawn here with extmarks: typing restarts a
-- debounce timer; when it fires, the previous request is cancelled and a new one is sent; an
-- answer is shown only if the buffer and cursor are still where they were when it was asked.
local config = require('diffill.config')

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace('diffill.inline')

local TRIGGER_INVOKED = 1
local TRIGGER_AUTOMATIC = 2

---@class diffill.Item
---@field text string          the text to insert over `range`
---@field range integer[]      { start_row, start_col, end_row, end_col }, 0-based, byte columns
---@field command? lsp.Command

---@class diffill.BufState
---@field timer? uv.uv_timer_t
---@field request? { client: vim.lsp.Client, id: integer }
---@field items? diffill.Item[]
---@field index? integer
---@field extmark? integer

---@type table<integer, diffill.BufState>
local states = {}

---@param bufnr integer
---@return diffill.BufState
local function state(bufnr)
  states[bufnr] = states[bufnr] or {}
  return states[bufnr]
end

local function resolve(bufnr)
  return (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
end

---@param bufnr integer
---@return vim.lsp.Client?
local function client_for(bufnr)
  for _, client in ipairs(vim.lsp.get_clients({ bufnr = bufnr, name = 'diffill' })) do
    if client:supports_method('textDocument/inlineCompletion', bufnr) then
      return client
    end
  end
end

--- Byte column of an LSP position in `bufnr`.
---@param bufnr integer
---@param pos lsp.Position
---@param encoding string
---@return integer
local function byte_col(bufnr, pos, encoding)
  local line = api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  return ok and col or #line
end

--- Plain text of a snippet: placeholders keep their default text, tab stops vanish.
---@param snippet string
---@return string
local function snippet_text(snippet)
  local text = snippet:gsub('%${%d+:([^}]*)}', '%1'):gsub('%${%d+}', ''):gsub('%$%d+', '')
  return (text:gsub('\\([$}\\])', '%1'))
end

--- The items of an inlineCompletion answer, with ranges in byte columns.
---@param result lsp.InlineCompletionList|lsp.InlineCompletionItem[]
---@param bufnr integer
---@param encoding string
---@param cursor integer[] { row (0-based), col }
---@return diffill.Item[]
function M._items(result, bufnr, encoding, cursor)
  local items = {}
  for _, raw in ipairs(result.items or result) do
    local text = raw.insertText
    if type(text) == 'table' then
      text = text.kind == 'snippet' and snippet_text(text.value) or text.value
    end
    if type(text) == 'string' and text ~= '' then
      local range = { cursor[1], cursor[2], cursor[1], cursor[2] }
      if raw.range then
        range = {
          raw.range.start.line,
          byte_col(bufnr, raw.range.start, encoding),
          raw.range['end'].line,
          byte_col(bufnr, raw.range['end'], encoding),
        }
      end
      items[#items + 1] = { text = text, range = range, command = raw.command }
    end
  end
  return items
end

--- What the ghost text shows for `item`: the inserted text less what the buffer already has
--- between the start of its range and the cursor (the user typed it after asking).
---@param bufnr integer
---@param item diffill.Item
---@param cursor integer[] { row (0-based), col }
---@return string[]? lines, integer? col  where the ghost text starts on the cursor row
function M._ghost(bufnr, item, cursor)
  local row, col = item.range[1], item.range[2]
  if row ~= cursor[1] or col > cursor[2] then
    return nil
  end
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local typed = line:sub(col + 1, cursor[2])
  if item.text:sub(1, #typed) ~= typed then
    return nil
  end
  local rest = item.text:sub(#typed + 1)
  if rest == '' then
    return nil
  end
  return vim.split(rest, '\n', { plain = true }), cursor[2]
end

---@return integer[] { row (0-based), col }
local function cursor_pos()
  local cursor = api.nvim_win_get_cursor(0)
  return { cursor[1] - 1, cursor[2] }
end

local function clear_extmark(bufnr)
  local s = state(bufnr)
  if s.extmark then
    pcall(api.nvim_buf_del_extmark, bufnr, M.ns, s.extmark)
    s.extmark = nil
  end
end

--- Draws item `index` as ghost text at the cursor. Returns false when it does not fit there.
---@param bufnr integer
---@param index integer
---@return boolean
local function render(bufnr, index)
  local s = state(bufnr)
  clear_extmark(bufnr)
  local item = s.items and s.items[index]
  if not item then
    return false
  end
  local cursor = cursor_pos()
  local lines, col = M._ghost(bufnr, item, cursor)
  if not lines then
    return false
  end
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], 'DiffillGhostText' } }
  end
  local first = lines[1]
  if #s.items > 1 then
    first = first .. (' (%d/%d)'):format(index, #s.items)
  end
  s.index = index
  s.extmark = api.nvim_buf_set_extmark(bufnr, M.ns, cursor[1], col, {
    virt_text = { { first, 'DiffillGhostText' } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
  return true
end

local function cancel(bufnr)
  local s = state(bufnr)
  if s.request then
    pcall(s.request.client.cancel_request, s.request.client, s.request.id)
    s.request = nil
  end
end

--- Hides the ghost text and drops its candidates and any request in flight.
---@param bufnr? integer
function M.clear(bufnr)
  bufnr = resolve(bufnr)
  local s = state(bufnr)
  if s.timer then
    s.timer:stop()
  end
  cancel(bufnr)
  clear_extmark(bufnr)
  s.items, s.index = nil, nil
end

--- Sends textDocument/inlineCompletion for the cursor, cancelling the previous request.
---@param bufnr? integer
---@param kind? integer 1: invoked by the user, 2: automatic
function M.request(bufnr, kind)
  bufnr = resolve(bufnr)
  if bufnr ~= api.nvim_get_current_buf() then
    return
  end
  M.clear(bufnr)
  local client = client_for(bufnr)
  if not client then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  ---@cast params lsp.InlineCompletionParams
  params.context = { triggerKind = kind or TRIGGER_AUTOMATIC }
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local asked_at = cursor_pos()
  local s = state(bufnr)
  local ok, id
  ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if s.request and s.request.id == id then
      s.request = nil
    end
    if err or not result or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    local now = cursor_pos()
    if
      api.nvim_get_current_buf() ~= bufnr
      or api.nvim_buf_get_changedtick(bufnr) ~= tick
      or now[1] ~= asked_at[1]
      or now[2] ~= asked_at[2]
    then
      return -- stale: the user moved on
    end
    s.items = M._items(result, bufnr, client.offset_encoding, asked_at)
    if not render(bufnr, 1) then
      s.items = nil
    end
  end, bufnr)
  if ok and id then
    s.request = { client = client, id = id }
  end
end

--- Restarts the debounce timer; when it fires, a completion is requested.
---@param bufnr integer
function M.schedule(bufnr)
  local s = state(bufnr)
  M.clear(bufnr)
  s.timer = s.timer or vim.uv.new_timer()
  s.timer:start(
    config.options.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if api.nvim_buf_is_valid(bufnr) and api.nvim_get_mode().mode:sub(1, 1) == 'i' then
        M.request(bufnr, TRIGGER_AUTOMATIC)
      end
    end)
  )
end

---@param bufnr? integer
---@return boolean
function M.visible(bufnr)
  bufnr = resolve(bufnr)
  if config.use_native() then
    return false
  end
  return state(bufnr).extmark ~= nil
end

--- Inserts the shown candidate. Returns false when there is none.
---@param bufnr? integer
---@return boolean
function M.accept(bufnr)
  bufnr = resolve(bufnr)
  if config.use_native() then
    return vim.lsp.inline_completion.get({ bufnr = bufnr }) ~= false
  end
  local s = state(bufnr)
  local item = s.extmark and s.items and s.items[s.index]
  if not item then
    return false
  end
  M.clear(bufnr)
  local cursor = cursor_pos()
  local r = item.range
  local end_row, end_col = r[3], r[4]
  if end_row < cursor[1] or (end_row == cursor[1] and end_col < cursor[2]) then
    end_row, end_col = cursor[1], cursor[2] -- the range grew as the user typed along
  end
  local lines = vim.split(item.text, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, r[1], r[2], end_row, end_col, lines)
  local last_row = r[1] + #lines - 1
  local last_col = (#lines == 1 and r[2] or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { last_row + 1, last_col })
  if item.command then
    local client = client_for(bufnr)
    if client then
      client:exec_cmd(item.command, { bufnr = bufnr })
    end
  end
  return true
end

---@param bufnr? integer
function M.dismiss(bufnr)
  bufnr = resolve(bufnr)
  if config.use_native() then
    -- No dismiss in the API: switching it off and on drops the shown candidate.
    vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    return
  end
  M.clear(bufnr)
end

local function cycle(bufnr, step)
  bufnr = resolve(bufnr)
  if config.use_native() then
    local ic = vim.lsp.inline_completion
    local select = ic.select or ic.jump
    if select then
      select({ bufnr = bufnr, count = step })
    end
    return
  end
  local s = state(bufnr)
  if not (s.items and s.index) then
    return
  end
  local n = #s.items
  render(bufnr, (s.index - 1 + step) % n + 1)
end

---@param bufnr? integer
function M.next(bufnr)
  cycle(bufnr, 1)
end

---@param bufnr? integer
function M.prev(bufnr)
  cycle(bufnr, -1)
end

--- Asks for a completion now, without waiting for the debounce. (Neovim 0.12+ asks by
--- itself as you type and has no way to ask on demand, so this does nothing there.)
---@param bufnr? integer
function M.trigger(bufnr)
  bufnr = resolve(bufnr)
  if config.use_native() then
    return
  end
  M.request(bufnr, TRIGGER_INVOKED)
end

local function map_keys(bufnr)
  local keys = config.options.keymaps
  local function map(lhs, desc, fn, fallback)
    if not lhs then
      return
    end
    vim.keymap.set('i', lhs, function()
      if not fn() and fallback then
        api.nvim_feedkeys(vim.keycode(lhs), 'n', false)
      end
    end, { buffer = bufnr, desc = desc, silent = true })
  end
  map(keys.accept, 'diffill: accept ghost text', function()
    return M.accept(bufnr)
  end, true)
  map(keys.dismiss, 'diffill: dismiss ghost text', function()
    local shown = M.visible(bufnr)
    M.dismiss(bufnr)
    return shown or config.use_native()
  end, true)
  map(keys.next, 'diffill: next candidate', function()
    M.next(bufnr)
    return true
  end)
  map(keys.prev, 'diffill: previous candidate', function()
    M.prev(bufnr)
    return true
  end)
  map(not config.use_native() and keys.trigger, 'diffill: complete now', function()
    M.trigger(bufnr)
    return true
  end)
end

--- Turns ghost text on in `bufnr` for `client` (called on LspAttach).
---@param bufnr integer
---@param client vim.lsp.Client
function M.attach(bufnr, client)
  if not config.options.inline then
    return
  end
  map_keys(bufnr)
  if config.use_native() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr, client_id = client.id })
    return
  end
  local group = api.nvim_create_augroup('diffill.inline.' .. bufnr, { clear = true })
  if config.options.auto_trigger then
    api.nvim_create_autocmd('TextChangedI', {
      group = group,
      buffer = bufnr,
      callback = function()
        local s = state(bufnr)
        if s.extmark and render(bufnr, s.index) then
          return -- the user is typing along the ghost text: keep it, ask nothing
        end
        M.schedule(bufnr)
      end,
    })
  end
  api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    buffer = bufnr,
    callback = function()
      local s = state(bufnr)
      if s.extmark and not render(bufnr, s.index) then
        M.clear(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd('BufWipeout', {
    group = group,
    buffer = bufnr,
    callback = function()
      M.clear(bufnr)
      local s = states[bufnr]
      if s and s.timer then
        s.timer:close()
      end
      states[bufnr] = nil
    end,
  })
end

--- Turns ghost text off in `bufnr` (called on LspDetach).
---@param bufnr integer
function M.detach(bufnr)
  M.clear(bufnr)
  pcall(api.nvim_del_augroup_by_name, 'diffill.inline.' .. bufnr)
end

return M
