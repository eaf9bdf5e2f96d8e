"""Run untrusted Python (benchmark completions) in a sandboxed subprocess.

Layers, each of which stops something on its own:

- a fresh interpreter in its own session (process group), killed as a group at the wall-clock
  timeout and again when it ends, so nothing it started outlives it;
- an unprivileged user: when diffill runs as root, the child drops to ``SandboxLimits.user``
  (nobody) before the program runs, so file permissions hold and RLIMIT_NPROC binds (the kernel
  does not apply it to root); the program's folder is the only one that user owns;
- resource limits set in the child (``resource.setrlimit``): address space, CPU seconds,
  RLIMIT_NPROC (no new processes or threads: fork bombs), file size, open files;
- Linux namespaces where the kernel allows them: no network, a mount namespace that empties
  /tmp, /var/tmp, /dev/shm, /home and /root and names only root and the sandbox's user in
  /etc/passwd, and a PID namespace whose /proc shows no other process;
- an empty temporary working folder, removed afterwards, and a stripped environment;
- an audit hook that refuses sockets, new processes, signals, ctypes, and writes, removals and
  renames outside the working folder (a second line: CPython's hooks are no boundary alone).

The child reports which layers hold. A missing namespace is logged once as a warning; running
as root without being able to leave root raises :class:`SandboxError` instead of running anything.
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

from diffill.errors import DiffillError

log = logging.getLogger(__name__)

CHILD_SOURCE = (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")
NAMESPACE_LAYERS = ("net-namespace", "mount-namespace", "pid-namespace")
_warned: set[tuple[str, ...]] = set()  # the missing layers already logged


class SandboxError(DiffillError):
    """The sandbox cannot be set up safely here, so no program is run."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 3.0  # wall clock
    memory_mb: int = 1024  # RLIMIT_AS
    cpu_s: int = 4  # RLIMIT_CPU (soft; SIGXCPU)
    processes: int = 0  # RLIMIT_NPROC: no new processes or threads (binds: the program never runs as root)
    file_mb: int = 16  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    namespaces: bool = True  # network, mount and PID namespaces, each where the kernel allows
    user: int = 65534  # uid and gid the program runs as when diffill runs as root (nobody)


@dataclass
class SandboxResult:
    status: str  # "passed" | "failed" | "timed out"
    returncode: int | None
    detail: str  # the last line the program wrote to stderr, or why it was stopped
    seconds: float
    layers: tuple[str, ...] = ()  # the isolation that held: "unprivileged", "net-namespace", ...

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _stripped_env(work: str) -> dict[str, str]:
    return {"PATH": os.defpath, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8"}


def _kill_group(pgid: int, wait_s: float = 0.0) -> None:
    """SIGKILL the group; with ``wait_s``, wait up to that long until no member is left."""
    deadline = time.monotonic() + wait_s
    try:
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:
            time.sleep(0.005)
            os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(path: Path) -> str:
    data = path.read_bytes()[-4096:].decode("utf-8", "replace").strip()
    return data.rsplit("\n", 1)[-1] if data else ""


def _read_report(path: Path, limits: SandboxLimits) -> tuple[str, ...]:
    """The layers the child reports; raises SandboxError where it refused to run the program."""
    try:
        report = json.loads(path.read_bytes() or b"{}")
    except ValueError:
        report = {}
    if report.get("problem"):
        raise SandboxError(f"the sandbox cannot run programs safely here: {report['problem']}")
    layers = tuple(report.get("layers", ()))
    missing = tuple(n for n in NAMESPACE_LAYERS if n not in layers) if report and limits.namespaces else ()
    if missing and missing not in _warned:
        _warned.add(missing)
        log.warning("sandbox: this system refuses %s; running with %s, resource limits and the "
                    "audit hook", ", ".join(missing), ", ".join(layers) or "no other isolation")
    return layers


def run_python(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``source`` as a program in the sandbox; passed means it exited with status 0 in time."""
    limits = limits or SandboxLimits()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diffill-sandbox-") as root:
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        if os.geteuid() == 0:  # the sandbox's user may pass through to its own folder, and no more
            os.chmod(root, 0o711)
            try:
                os.chown(work, limits.user, limits.user)
            except OSError as e:
                raise SandboxError(f"cannot give the sandbox's folder to uid {limits.user}: {e}") from e
        program = Path(root, "program.py")
        program.write_text(source, encoding="utf-8")
        out, err, report = Path(root, "stdout"), Path(root, "stderr"), Path(root, "report")
        with out.open("wb") as fout, err.open("wb") as ferr, report.open("wb") as frep:
            cmd = [sys.executable, "-s", "-B", "-c", CHILD_SOURCE, work, str(program),
                   json.dumps(asdict(limits)), str(frep.fileno())]
            proc = subprocess.Popen(cmd, cwd=work, env=_stripped_env(work), stdin=subprocess.DEVNULL,
                                    stdout=fout, stderr=ferr, start_new_session=True, close_fds=True,
                                    pass_fds=(frep.fileno(),))
            try:
                returncode = proc.wait(timeout=limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                returncode = proc.wait()
                timed_out = True
            finally:
                _kill_group(proc.pid, wait_s=1.0)  # whatever the program left running
        layers = _read_report(report, limits)
        detail = _last_line(err)
    seconds = time.perf_counter() - t0
    if timed_out:
        return SandboxResult("timed out", None, f"killed after {limits.timeout_s:g} s", seconds, layers)
    if returncode == 0:
        return SandboxResult("passed", 0, detail, seconds, layers)
    if returncode < 0 and not detail:
        detail = f"killed by {signal.Signals(-returncode).name}"
    log.debug("sandboxed program failed (%s): %s", returncode, detail)
    return SandboxResult("failed", returncode, detail, seconds, layers)
