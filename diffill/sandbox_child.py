"""The first code the sandbox's child interpreter runs, before the program under test.

``diffill.sandbox`` passes this file's text to ``python -c`` with three arguments: the empty
working folder, the program file and the limits as JSON. It imports nothing from diffill.
In order, it:

1. leaves the network namespace (an empty one has no route anywhere), when the kernel allows;
2. sets resource limits: address space, CPU seconds, processes (RLIMIT_NPROC, against fork
   bombs), file size, open files, no core dumps;
3. installs an audit hook that refuses sockets, new processes, signals to other processes,
   ctypes, links, and any write, removal or rename outside the working folder;
4. runs the program as ``__main__`` in a fresh namespace.

Audit hooks are not a security boundary on their own (CPython says so); they are one layer next
to the limits, the namespace, the process group the parent kills, and the throwaway folder.
"""

import json
import os
import resource
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
ALWAYS_REFUSED = {
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
    "os.killpg", "os.link", "os.symlink", "os.setuid", "os.setgid", "subprocess.Popen",
    "pty.spawn", "webbrowser.open",
}
REFUSED_PREFIXES = ("socket.", "ctypes.", "_ssl.", "winreg.")
PATH_EVENTS = {  # event -> positions of path arguments that must stay inside the folder
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "os.chflags": (0,), "os.lchflags": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
    "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copymode": (1,),
    "shutil.copystat": (1,), "shutil.chown": (0,), "shutil.make_archive": (0,),
    "shutil.unpack_archive": (1,),
}


def _unshare_network() -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWNET | CLONE_NEWUSER
        return libc.unshare(flags) == 0
    except (OSError, AttributeError):
        return False


def _set_limits(limits: dict) -> None:
    mb = 1024 * 1024
    pairs = [
        (resource.RLIMIT_AS, limits["memory_mb"] * mb, limits["memory_mb"] * mb),
        (resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1),
        (resource.RLIMIT_NPROC, limits["processes"], limits["processes"]),
        (resource.RLIMIT_FSIZE, limits["file_mb"] * mb, limits["file_mb"] * mb),
        (resource.RLIMIT_NOFILE, limits["open_files"], limits["open_files"]),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    for which, soft, hard in pairs:
        resource.setrlimit(which, (soft, hard))


def _guard(root: str):
    realpath, join, getcwd, fspath = os.path.realpath, os.path.join, os.getcwd, os.fspath

    def inside(path) -> bool:
        if isinstance(path, int) or path is None:  # an open descriptor, or "the current folder"
            return True
        full = realpath(join(getcwd(), os.fsdecode(fspath(path))))
        return full == root or full.startswith(root + os.sep)

    def hook(event: str, args: tuple) -> None:
        if event in ALWAYS_REFUSED or event.startswith(REFUSED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, 0))[:3]
            writes = bool((flags or 0) & WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
            if writes and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the working folder")
        elif event in PATH_EVENTS:
            for i in PATH_EVENTS[event]:
                if i < len(args) and not inside(args[i]):
                    raise PermissionError(f"sandbox: {event} on {args[i]!r} outside the working folder")

    return hook


def main() -> None:
    work, program, limits = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with open(program, "rb") as f:
        code = compile(f.read(), program, "exec")
    if limits["network_namespace"]:
        _unshare_network()
    sys.modules.pop("ctypes", None)
    _set_limits(limits)
    os.chdir(work)
    sys.dont_write_bytecode = True
    sys.argv = [program]
    sys.addaudithook(_guard(os.path.realpath(work)))
    exec(code, {"__name__": "__main__", "__file__": program, "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
