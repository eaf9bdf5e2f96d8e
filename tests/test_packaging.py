"""The installed names: the repository's top-level folders install under ``diffill`` (diffill.model,
diffill.grammar, ...), so a user's own ``model.py`` or ``grammar.py`` neither shadows them nor is
shadowed by them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("model", "adapters", "grammar", "lsp_server")
SOURCES = [ROOT / d for d in ("diffill", *FOLDERS, "tests")]


def bare_imports(path: Path) -> list[str]:
    """Imports of a top-level folder by its bare name (``from model.x import y``, ``import grammar``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in FOLDERS]
    return found


def test_no_module_imports_a_folder_by_its_bare_name():
    files = [p for d in SOURCES for p in d.rglob("*.py") if "examples" not in p.parts]
    assert len(files) > 50
    assert [hit for p in files for hit in bare_imports(p)] == []


def frame(obj) -> bytes:
    body = json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh environment with the wheel installed; its dependencies come from this one's
    site-packages (a path in a .pth file), without this checkout's editable finder."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(ROOT), "-w", str(work / "dist")], check=True, capture_output=True, timeout=300)
    env = work / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((work / "dist").glob("diffill-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return env


@pytest.fixture
def user_project(tmp_path) -> Path:
    """A project with modules named like the repository's folders, the hole in model.py."""
    (tmp_path / "model.py").write_text("def area(w, h):\n    \n\nprint(area(2, 3))\n")
    (tmp_path / "grammar.py").write_text("raise SystemExit('the user module ran')\n")
    (tmp_path / "adapters.py").write_text("raise SystemExit('the user module ran')\n")
    return tmp_path


def test_the_installed_wheel_fills_a_hole_beside_a_users_model_py(installed, user_project):
    proc = subprocess.run([str(installed / "bin" / "diffill"), "infill", "model.py", "--at", "2:5", "--json"],
                          cwd=user_project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["start"] == len("def area(w, h):\n    ")
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import diffill.model as m; print(m.__file__)"],
                           cwd=user_project, capture_output=True, text=True, check=True).stdout
    assert Path(where).resolve().is_relative_to(installed.resolve()), where


def test_the_installed_wheel_serves(installed, user_project):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": user_project.as_uri(), "capabilities": {}}}
    data = (frame(init) + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            + frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
            + frame({"jsonrpc": "2.0", "method": "exit", "params": None}))
    proc = subprocess.run([str(installed / "bin" / "diffill"), "serve", "--threads", "1"], cwd=user_project,
                          input=data, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout[proc.stdout.index(b"\r\n\r\n") + 4:].split(b"Content-Length")[0])
    assert answer["id"] == 1 and "inlineCompletionProvider" in answer["result"]["capabilities"]
