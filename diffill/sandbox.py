"""Run untrusted Python (benchmark completions) in a sandboxed subprocess.

Layers, each of which stops something on its own:

- a fresh interpreter in its own session (process group), killed as a group at the wall-clock
  timeout and again when it ends, so nothing it started outlives it;
- resource limits set in the child (``resource.setrlimit``): address space, CPU seconds,
  RLIMIT_NPROC (no new processes for a non-root user: fork bombs), file size, open files;
- an empty temporary working folder, removed afterwards, and a stripped environment;
- no network: a new network namespace when the kernel allows it, and in any case an audit hook
  that refuses socket creation;
- the same audit hook refuses writes, removals and renames outside the working folder, new
  processes, signals and ctypes.

The child's first code is ``diffill/sandbox_child.py``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHILD_SOURCE = (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 3.0  # wall clock
    memory_mb: int = 1024  # RLIMIT_AS
    cpu_s: int = 4  # RLIMIT_CPU (soft; SIGXCPU)
    processes: int = 0  # RLIMIT_NPROC: no new processes (not enforced by the kernel for root)
    file_mb: int = 16  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    network_namespace: bool = True  # try to leave the network namespace


@dataclass
class SandboxResult:
    status: str  # "passed" | "failed" | "timed out"
    returncode: int | None
    detail: str  # the last line the program wrote to stderr, or why it was stopped
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _stripped_env(work: str) -> dict[str, str]:
    return {"PATH": os.defpath, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8"}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(path: Path) -> str:
    data = path.read_bytes()[-4096:].decode("utf-8", "replace").strip()
    return data.rsplit("\n", 1)[-1] if data else ""


def run_python(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``source`` as a program in the sandbox; passed means it exited with status 0 in time."""
    limits = limits or SandboxLimits()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diffill-sandbox-") as root:
        work = os.path.join(root, "work")
        os.mkdir(work)
        program = Path(root, "program.py")
        program.write_text(source, encoding="utf-8")
        out, err = Path(root, "stdout"), Path(root, "stderr")
        cmd = [sys.executable, "-s", "-B", "-c", CHILD_SOURCE, work, str(program),
               json.dumps(asdict(limits))]
        with out.open("wb") as fout, err.open("wb") as ferr:
            proc = subprocess.Popen(cmd, cwd=work, env=_stripped_env(work), stdin=subprocess.DEVNULL,
                                    stdout=fout, stderr=ferr, start_new_session=True, close_fds=True)
            try:
                returncode = proc.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                returncode = proc.wait()
                timed_out = True
            finally:
                _kill_group(proc.pid)  # whatever the program left running
        detail = _last_line(err)
    seconds = time.perf_counter() - t0
    if timed_out:
        return SandboxResult("timed out", None, f"killed after {limits.timeout_s:g} s", seconds)
    if returncode == 0:
        return SandboxResult("passed", 0, detail, seconds)
    if returncode < 0 and not detail:
        detail = f"killed by {signal.Signals(-returncode).name}"
    log.debug("sandboxed program failed (%s): %s", returncode, detail)
    return SandboxResult("failed", returncode, detail, seconds)
