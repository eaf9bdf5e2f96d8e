"""The sandbox runs untrusted Python: it must stop what a benchmark completion could do wrong."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from diffill.sandbox import SandboxError, SandboxLimits, run_python

ESCAPE = Path("/tmp/diffill-sandbox-test-escape.txt")
AS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not AS_ROOT, reason="leaving root for another user needs root")
# Each escape is tried with the namespaces the kernel allows and without any (the uid drop, the
# limits and the audit hook alone), since the latter is what a container without them gets.
either_way = pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no-namespaces"])

# Starts a process the way subprocess does, below its audit event.
FORK_EXEC = f"""
import _posixsubprocess, os

def spawn(argv):
    r, w = os.pipe()
    group = [-1] if {sys.version_info >= (3, 11)} else []
    vfork = [False] if {sys.version_info >= (3, 11)} else []
    return _posixsubprocess.fork_exec(
        [os.fsencode(a) for a in argv], [os.fsencode(argv[0])], True, (w,), None, None,
        -1, -1, -1, -1, -1, -1, r, w, True, False, *group, None, None, None, -1, None, *vfork)
"""


@pytest.fixture
def outside():
    """A folder outside the sandbox that anyone may enter and write: only the sandbox keeps it clean."""
    folder = Path(tempfile.mkdtemp(prefix="diffill-sandbox-outside-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


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


@either_way
def test_a_shell_started_below_the_audit_hook_never_runs(outside, namespaces):
    target = outside / "forked"
    program = FORK_EXEC + f"spawn(['/bin/sh', '-c', 'id > {target}'])\nimport time\ntime.sleep(0.5)\n"
    r = run_python(program, SandboxLimits(namespaces=namespaces))
    assert r.status == "failed"
    assert not target.exists()


def _alive_with(marker: str) -> list[str]:
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            pass
    return alive


@either_way
def test_a_fork_loop_is_held_to_the_process_limit_and_cleaned_up(namespaces):
    marker = f"{30 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a sleep length no other process uses
    limits = SandboxLimits(processes=4, timeout_s=5.0, namespaces=namespaces)
    program = FORK_EXEC + (
        "started = 0\n"
        "for _ in range(50):\n"
        "    try:\n"
        f"        spawn(['/bin/sleep', '{marker}'])\n"
        "    except OSError:\n"
        "        raise SystemExit(f'started {started}')\n"
        "    started += 1\n"
    )
    r = run_python(program, limits)
    assert r.status == "failed", r.detail
    assert int(r.detail.split()[-1]) < limits.processes
    assert _alive_with(marker) == []


@either_way
def test_a_folder_descriptor_does_not_lead_outside(outside, namespaces):
    opened = f"import os\nfd = os.open({str(outside)!r}, os.O_RDONLY)\n"
    for program in [opened + "os.close(os.open('escaped', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n",
                    opened + "os.mkdir('made', dir_fd=fd)\n",
                    "import os\nopen('kept', 'w').close()\nfd = os.open('.', os.O_RDONLY)\n"
                    f"os.rename('kept', 'renamed', src_dir_fd=fd, dst_dir_fd=os.open({str(outside)!r}, 0))\n"]:
        r = run_python(program, SandboxLimits(namespaces=namespaces))
        assert r.status == "failed", program
    assert list(outside.iterdir()) == []


def test_descriptor_relative_paths_inside_the_working_folder_still_work():
    program = ("import os\nos.mkdir('sub')\nfd = os.open('sub', os.O_RDONLY)\n"
               "os.close(os.open('a.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n"
               "os.mkdir('d', dir_fd=fd)\nos.rename('a.txt', 'b.txt', src_dir_fd=fd, dst_dir_fd=fd)\n"
               "os.remove('b.txt', dir_fd=fd)\nassert os.listdir('sub') == ['d']\n")
    r = run_python(program)
    assert r.passed, r.detail


# /proc/PID/environ shows a process's environment as it was at exec, so the secret is given to a
# fresh interpreter that runs the sandbox, not set in this one.
RUN_AS_PARENT = """
import json, sys
from diffill.sandbox import SandboxLimits, run_python
r = run_python(sys.stdin.read(), SandboxLimits(namespaces=sys.argv[1] == "True"))
print(json.dumps({"status": r.status, "detail": r.detail, "layers": list(r.layers)}))
"""


@either_way
def test_the_parent_environment_is_not_visible(namespaces):
    secret = f"marker-{uuid.uuid4().hex}"
    program = (
        "import os\n"
        "seen = []\n"
        "for pid in [str(os.getppid())] + [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    try:\n"
        "        data = open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n"
        "        continue\n"
        f"    if {secret.encode()!r} in data:\n"
        "        seen.append(pid)\n"
        "assert not seen, f'the secret is in the environment of {seen}'\n"
    )
    parent = subprocess.run([sys.executable, "-c", RUN_AS_PARENT, str(namespaces)], input=program,
                            env={**os.environ, "DIFFILL_SANDBOX_TEST_SECRET": secret},
                            capture_output=True, text=True, timeout=60, check=True)
    r = json.loads(parent.stdout)
    if not AS_ROOT and "pid-namespace" not in r["layers"]:
        pytest.skip("without root or a PID namespace the program shares its user and /proc with the parent")
    assert r["status"] == "passed", r["detail"]


@root_only
@either_way
def test_root_only_files_cannot_be_read(outside, namespaces):
    outside.chmod(0o755)
    secret = outside / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    closed = outside / "closed"
    closed.mkdir(mode=0o700)
    (closed / "inside").write_text("root only")
    program = (
        "read = []\n"
        f"for path in [{str(secret)!r}, {str(closed / 'inside')!r}, '/etc/shadow']:\n"
        "    try:\n"
        "        open(path).read()\n"
        "        read.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "assert not read, f'read {read}'\n"
    )
    r = run_python(program, SandboxLimits(namespaces=namespaces))
    assert r.passed, r.detail


@either_way
def test_no_connection_reaches_a_local_server(namespaces):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        for module in ["socket", "_socket"]:
            program = f"import {module}\ns = {module}.socket()\ns.connect(('127.0.0.1', {port}))\n"
            r = run_python(program, SandboxLimits(namespaces=namespaces))
            assert r.status == "failed"
        with pytest.raises(BlockingIOError):
            server.accept()


@root_only
def test_the_program_never_runs_as_root():
    r = run_python("import os\nassert 0 not in os.getresuid() + os.getresgid() + tuple(os.getgroups())\n")
    assert r.passed, r.detail
    assert "unprivileged" in r.layers


@root_only
def test_a_sandbox_that_cannot_leave_root_runs_nothing(outside):
    target = outside / "ran"
    with pytest.raises(SandboxError, match="root"):
        run_python(f"open({str(target)!r}, 'w').close()\n", SandboxLimits(user=0))
    assert not target.exists()


def test_the_mount_namespace_empties_shared_folders(outside):
    (outside / "left").write_text("x")
    program = f"import os\nassert not os.path.exists({str(outside)!r})\nassert not os.access('/tmp', os.W_OK)\n"
    r = run_python(program)
    if "mount-namespace" not in r.layers:
        pytest.skip("this system refuses a mount namespace")
    assert r.passed, r.detail


def test_the_pid_namespace_shows_only_the_program_and_its_waiting_parent():
    r = run_python("import os\npids = {p for p in os.listdir('/proc') if p.isdigit()}\n"
                   "assert os.getppid() == 1 and pids == {'1', str(os.getpid())}, pids\n")
    if "pid-namespace" not in r.layers:
        pytest.skip("this system refuses a PID namespace")
    assert r.passed, r.detail


@either_way
def test_a_program_that_leaves_its_process_group_is_still_killed(monkeypatch, outside, namespaces):
    monkeypatch.setattr(tempfile, "tempdir", str(outside))  # the child's command line names this folder
    program = "import os, time\ntry:\n    os.setsid()\nexcept OSError:\n    pass\ntime.sleep(60)\n"
    r = run_python(program, SandboxLimits(timeout_s=1.0, namespaces=namespaces))
    assert r.status == "timed out"
    assert _alive_with(str(outside)) == []
