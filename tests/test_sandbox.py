"""The sandbox runs untrusted Python: it must stop what a benchmark completion could do wrong."""

from __future__ import annotations

import os
from pathlib import Path

from diffill.sandbox import SandboxLimits, run_python

ESCAPE = Path("/tmp/diffill-sandbox-test-escape.txt")


def test_exit_status_decides_pass_or_fail():
    assert run_python("x = 1 + 1\n").passed
    failed = run_python("assert 1 == 2, 'wrong sum'\n")
    assert failed.status == "failed"
    assert "wrong sum" in failed.detail


def test_infinite_loop_is_killed_at_the_timeout():
    r = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=1.0))
    assert r.status == "timed out"
    assert not r.passed


def test_fork_bomb_is_stopped():
    r = run_python("import os\nwhile True:\n    os.fork()\n")
    assert r.status == "failed"  # refused at the first fork, long before the timeout
    assert "os.fork" in r.detail


def test_new_processes_are_refused():
    r = run_python("import subprocess\nsubprocess.run(['true'])\n")
    assert r.status == "failed" and "subprocess.Popen" in r.detail


def test_write_outside_the_working_folder_is_refused():
    ESCAPE.unlink(missing_ok=True)
    for program in [f"open({str(ESCAPE)!r}, 'w').write('x')\n",
                    f"import os\nos.open({str(ESCAPE)!r}, os.O_CREAT | os.O_WRONLY)\n",
                    "open('../escaped.txt', 'a').write('x')\n",
                    "import shutil\nshutil.rmtree('/tmp/diffill-sandbox-no-such-folder')\n",
                    "import os\nos.rename('kept.txt', '/tmp/diffill-sandbox-renamed.txt')\n"]:
        r = run_python(program)
        assert r.status == "failed", program
        assert "outside the working folder" in r.detail, program
    assert not ESCAPE.exists()
    assert not Path("/tmp/diffill-sandbox-renamed.txt").exists()


def test_writes_inside_the_working_folder_are_allowed_and_the_folder_starts_empty():
    program = ("import os\nassert os.listdir('.') == []\n"
               "os.mkdir('sub')\nopen('sub/a.txt', 'w').write('hi')\n"
               "assert open('sub/a.txt').read() == 'hi'\nos.remove('sub/a.txt')\n")
    assert run_python(program).passed


def test_sockets_are_refused():
    r = run_python("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n")
    assert r.status == "failed" and "socket" in r.detail


def test_limits_and_stripped_environment_apply_in_the_child(monkeypatch):
    monkeypatch.setenv("DIFFILL_SECRET_TOKEN", "do-not-leak")
    limits = SandboxLimits(memory_mb=512, cpu_s=3, processes=0, file_mb=2, open_files=32)
    program = (
        "import os, resource\n"
        "assert 'DIFFILL_SECRET_TOKEN' not in os.environ\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
        f"assert resource.getrlimit(resource.RLIMIT_AS) == ({512 << 20}, {512 << 20})\n"
        "assert resource.getrlimit(resource.RLIMIT_CPU) == (3, 4)\n"
        "assert resource.getrlimit(resource.RLIMIT_NPROC) == (0, 0)\n"
        f"assert resource.getrlimit(resource.RLIMIT_FSIZE) == ({2 << 20}, {2 << 20})\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE) == (32, 32)\n"
    )
    r = run_python(program, limits)
    assert r.passed, r.detail


def test_memory_limit_stops_a_huge_allocation():
    r = run_python("x = bytearray(8 * 1024 ** 3)\n", SandboxLimits(memory_mb=512))
    assert r.status == "failed" and "MemoryError" in r.detail


def test_working_folder_is_removed_afterwards():
    r = run_python("import os\nprint(os.getcwd())\nassert False, os.getcwd()\n")
    folder = r.detail.split("AssertionError: ", 1)[1]
    assert folder.startswith("/") and not os.path.exists(folder)
