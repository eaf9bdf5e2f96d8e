-- diffill language server for Neovim 0.11+: `vim.lsp.enable('diffill')`.
-- Override any field with `vim.lsp.config('diffill', { ... })`, e.g.
--   vim.lsp.config('diffill', {
--     cmd = { '/path/to/.venv/bin/diffill', 'serve' },
--     settings = { diffill = { model = '/path/to/checkpoint', threshold = 0.8 } },
--   })
-- `settings.diffill` is sent both as initializationOptions and on
-- workspace/didChangeConfiguration, so it is the one place to configure the server.

---@type vim.lsp.Config
return {
  cmd = { 'diffill', 'serve' },
  filetypes = {
    'python',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'go',
    'rust',
    'java',
    'c',
    'cpp',
  },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml' },
  capabilities = {
    textDocument = { inlineCompletion = { dynamicRegistration = false } },
  },
  settings = {
    diffill = {
      model = vim.NIL, -- checkpoint folder; nil: the shipped default
      adapter = vim.NIL, -- adapter folder, 'shipped', 'none', or nil: the workspace's, else none
      useWorkspaceAdapter = true,
      maxTokens = vim.NIL, -- canvas budget; nil: by context
      threshold = 0.9,
      constraint = true, -- keep every infill syntactically valid
      languages = vim.NIL, -- list of languageIds; nil: those the model was trained on
    },
  },
  before_init = function(params, config)
    params.initializationOptions = (config.settings or {}).diffill
  end,
}
