"""End-to-end: the packaged VS Code extension in a real VS Code (code-server, from npm) driven by
headless Chromium, with the real ``diffill serve`` and the shipped model.

``editors/vscode/e2e/run.mjs`` does the clicking and typing and prints what the editor ended up
holding; this test checks it: Tab inserts exactly the ghost text that was shown, "diffill: Infill
Selection" rewrites the selected placeholder into something that parses, and the status bar item
names the model and the last request's latency. ``make e2e-vscode`` installs what it needs
(code-server and playwright-core into editors/vscode/e2e/node_modules, Chromium, the .vsix).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tree_sitter_python
from tree_sitter import Language, Parser

REPO = Path(__file__).resolve().parent.parent
E2E = REPO / "editors" / "vscode" / "e2e"
VSIX = REPO / "editors" / "vscode" / "diffill.vsix"
DIFFILL = Path(sys.executable).parent / "diffill"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# run.mjs times each step out with its own message well before this
RUN_TIMEOUT_S = 900

missing = [what for what, ok in [
    ("code-server (editors/vscode/e2e/install.sh)", (E2E / "node_modules" / "code-server").is_dir()),
    ("playwright-core (editors/vscode/e2e/install.sh)", (E2E / "node_modules" / "playwright-core").is_dir()),
    ("editors/vscode/diffill.vsix (make vscode)", VSIX.is_file()),
    (f"Chromium at {CHROMIUM}", CHROMIUM.is_file()),
    (f"{DIFFILL}", DIFFILL.is_file()),
] if not ok]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"make e2e-vscode installs what is missing: {', '.join(missing)}")


def parses(text: str) -> bool:
    tree = Parser(Language(tree_sitter_python.language())).parse(text.encode())
    return not tree.root_node.has_error


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One run in the editor; what the document held after each step."""
    # DIFFILL_VSCODE_SCREENSHOT=editors/vscode-ghost-text.png renews the picture in editors/README.md
    shot = Path(os.environ.get("DIFFILL_VSCODE_SCREENSHOT") or tmp_path_factory.mktemp("vscode") / "ghost-text.png")
    cmd = ["node", str(E2E / "run.mjs"), "--vsix", str(VSIX), "--server", str(DIFFILL),
           "--server-arg", "serve", "--server-arg=--threads", "--server-arg", "1", "--screenshot", str(shot)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        pytest.fail(f"run.mjs did not finish in {RUN_TIMEOUT_S} s:\n{err[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f"run.mjs failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["screenshot"] = shot
    return result


def test_tab_inserts_the_ghost_text(run):
    assert run["ghost"].strip(), "the ghost text was empty"
    assert run["after_typing"] == run["original"] + run["typed"]
    assert run["after_accept"].startswith(run["after_typing"])
    inserted = run["after_accept"][len(run["after_typing"]):]
    # the picture's text and the inserted text agree (line breaks are not in the rendered text)
    assert re.sub(r"\s", "", inserted) == re.sub(r"\s", "", run["ghost"])


def test_ghost_text_screenshot_is_a_png(run):
    assert run["screenshot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_infill_selection_rewrites_only_the_selection_with_valid_code(run):
    before, after, placeholder = run["after_accept"], run["after_infill"], run["placeholder"]
    start = before.index(placeholder)
    end = start + len(placeholder)
    assert after.startswith(before[:start]) and after.endswith(before[end:])
    fill = after[start:len(after) - len(before[end:])]
    assert fill.strip() and fill != placeholder
    assert parses(after), after


def test_status_bar_names_the_model_and_the_latency(run):
    assert "diffill-base" in run["status_loaded"]
    assert re.search(r"· \d+(\.\d+)? m?s$", run["status_after"]), run["status_after"]
