"""The first code the sandbox's child interpreter runs, before the program under test.

``diffill.sandbox`` passes this file's text to ``python -c`` with four arguments: the empty
working folder, the program file, the settings as JSON and a file descriptor for the report.
It imports nothing from diffill. In order, it:

1. where the kernel allows (as root directly, as another user inside a new user namespace),
   leaves the network namespace (no route anywhere) and the mount namespace; in the new mount
   namespace /tmp, /var/tmp, /dev/shm, /home and /root become empty and read-only, the working
   folder comes back at its own path, and /etc/passwd and /etc/group list only root and the
   sandbox's user;
2. with a private mount namespace, forks into a new PID namespace and mounts a /proc there that
   shows the program's own processes only (this process stays outside and passes the exit status
   on; the namespace's pid 1 only waits for the program);
3. as root, drops to the sandbox's user (groups, gid, uid), so that file permissions and the
   process limit bind; in any case clears capabilities and sets no_new_privs;
4. sets resource limits: address space, CPU seconds, processes (RLIMIT_NPROC: no new processes
   or threads by default), file size, open files, no core dumps;
5. writes which of these layers hold to the report, and stops there if it could not leave root;
6. installs an audit hook that refuses sockets, new processes, signals to other processes,
   ctypes, links, writes, removals and renames outside the working folder, and opening folders
   outside it (so no descriptor relative path can lead out);
7. runs the program as ``__main__`` in a fresh module.

Audit hooks are not a security boundary on their own (CPython says so); they are a second line
behind the unprivileged user, the limits, the namespaces and the process group the parent kills.
"""

import json
import os
import resource
import signal
import sys
import types

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522
HIDDEN = ("/tmp", "/var/tmp", "/dev/shm", "/home", "/root")  # emptied in the mount namespace

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
ALWAYS_REFUSED = {
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
    "os.killpg", "os.link", "os.symlink", "os.setuid", "os.setgid", "subprocess.Popen",
    "pty.spawn", "webbrowser.open",
}
REFUSED_PREFIXES = ("socket.", "ctypes.", "_ssl.", "winreg.")
PATH_EVENTS = {  # event -> (position of a path, position of its dir_fd or None), for each path
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
    "os.rename": ((0, 2), (1, 3)), "os.truncate": ((0, None),), "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),), "os.utime": ((0, 3),), "os.chflags": ((0, None),),
    "os.lchflags": ((0, None),), "os.mkfifo": ((0, 2),), "os.mknod": ((0, 3),),
    "shutil.rmtree": ((0, 1),), "shutil.copyfile": ((1, None),), "shutil.copymode": ((1, None),),
    "shutil.copystat": ((1, None),), "shutil.chown": ((0, None),),
    "shutil.make_archive": ((0, None),), "shutil.unpack_archive": ((1, None),),
}


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _write(path: str, text: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(text)
        return True
    except OSError:
        return False


def _user_namespace(libc) -> bool:
    """Become root of a new user namespace that maps our own uid and gid onto themselves."""
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return False
    return (_write("/proc/self/setgroups", "deny") and _write("/proc/self/uid_map", f"{uid} {uid} 1")
            and _write("/proc/self/gid_map", f"{gid} {gid} 1"))


def _id_files(folder: str, uid: int, gid: int) -> tuple[str, str]:
    """passwd and group files that name only root and the sandbox's user."""
    import grp
    import pwd

    users, groups = [], []
    for u in sorted({0, uid}):
        try:
            p = pwd.getpwuid(u)
            users.append(f"{p.pw_name}:x:{p.pw_uid}:{p.pw_gid}:{p.pw_gecos}:{p.pw_dir}:{p.pw_shell}\n")
        except KeyError:
            pass
    for g in sorted({0, gid}):
        try:
            groups.append(f"{grp.getgrgid(g).gr_name}:x:{g}:\n")
        except KeyError:
            pass
    paths = os.path.join(folder, "passwd"), os.path.join(folder, "group")
    for path, lines in zip(paths, (users, groups)):
        with open(path, "w") as f:
            f.writelines(lines)
        os.chmod(path, 0o644)
    return paths


def _stdlib_entries() -> list[str]:
    prefixes = tuple({sys.base_prefix + os.sep, sys.base_exec_prefix + os.sep})
    return [p for p in sys.path if p.startswith(prefixes) and os.path.isdir(p)]


def _hide_paths(libc, work: str, uid: int, gid: int) -> bool:
    """In a new mount namespace: empty read-only folders over HIDDEN, the working folder kept."""
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False  # mounts could reach the host's namespace: mount nothing
    ok = True
    try:
        for path, target in zip(_id_files(os.path.dirname(work), uid, gid), ("/etc/passwd", "/etc/group")):
            if os.path.isfile(target):
                ok &= libc.mount(path.encode(), target.encode(), None, MS_BIND, None) == 0
        keep = [work] + _stdlib_entries()
        fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
        for top in HIDDEN:
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            if libc.mount(b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755,size=1m") != 0:
                ok = False
                continue
            for p, fd in fds.items():  # the working folder, and the standard library where it lives here
                if p.startswith(top + os.sep):
                    os.makedirs(p, exist_ok=True)
                    flags = MS_BIND | MS_REC
                    ok &= libc.mount(f"/proc/self/fd/{fd}".encode(), p.encode(), None, flags, None) == 0
                    if p != work:
                        ok &= libc.mount(None, p.encode(), None, flags | MS_REMOUNT | MS_RDONLY, None) == 0
            remount = MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
            ok &= libc.mount(None, top.encode(), None, remount, None) == 0
        for fd in fds.values():
            os.close(fd)
        os.chdir(work)
    except OSError:
        return False
    return ok


def _wait_and_pass_on(pid: int, status_pipe: int) -> None:
    """Outside the PID namespace: wait, then end the way the program did."""
    _, status = os.waitpid(pid, 0)
    reported = os.read(status_pipe, 4)  # the program's own status, passed on by the namespace's pid 1
    if len(reported) == 4:
        status = int.from_bytes(reported, "little")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _pid_namespace(libc) -> bool:
    """Fork into a new PID namespace with its own /proc; only the program's process returns.

    This process stays outside. The namespace's pid 1 only waits for the program and reports its
    status: pid 1 ignores signals it has no handler for (SIGXCPU at the CPU limit, for one), so
    the program must not be it. When this process dies, pid 1 does, and the namespace with it.
    """
    if libc.unshare(CLONE_NEWPID) != 0:
        return False
    status_r, status_w = os.pipe()
    if pid := os.fork():
        os.close(status_w)
        _wait_and_pass_on(pid, status_r)
    os.close(status_r)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    mounted = libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0
    if pid := os.fork():
        _, status = os.waitpid(pid, 0)
        os.write(status_w, status.to_bytes(4, "little"))
        os._exit(0)
    os.close(status_w)
    return mounted


def _enter_namespaces(libc, work: str, uid: int, gid: int) -> list[str]:
    if os.geteuid() != 0 and not _user_namespace(libc):
        return []
    layers = []
    if libc.unshare(CLONE_NEWNET) == 0:
        layers.append("net-namespace")
    libc.unshare(CLONE_NEWIPC | CLONE_NEWUTS)  # no shared memory or host name to reach either
    if _hide_paths(libc, work, uid, gid):
        layers.append("mount-namespace")
        if _pid_namespace(libc):
            layers.append("pid-namespace")
    return layers


def _clear_capabilities(ctypes, libc) -> bool:
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    return libc.capset(header, data) == 0


def _drop_privileges(ctypes, libc, uid: int, gid: int) -> str | None:
    """Leave root for ``uid``/``gid`` and any capability behind; a reason when that fails.

    Where the standard library lies under a folder the new user cannot enter (a Python installed
    under /root), its sys.path entries become descriptors opened before the drop, so that imports
    still work while the folders around it stay closed.
    """
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in _stdlib_entries()}
    try:
        if os.geteuid() == 0 or os.getuid() == 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
    except OSError as e:
        return f"cannot leave root for uid {uid}: {e}"
    if 0 in os.getresuid() or 0 in os.getresgid() or 0 in os.getgroups():
        return "still root after setuid"
    if not _clear_capabilities(ctypes, libc):
        return "cannot clear capabilities"
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return "cannot set no_new_privs"
    moved = {}
    for p, fd in fds.items():
        if os.access(p, os.R_OK | os.X_OK):
            os.close(fd)
        else:
            moved[p] = f"/proc/self/fd/{fd}"
            sys.path[sys.path.index(p)] = moved[p]
    for module in list(sys.modules.values()) if moved else ():  # packages imported at start-up
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [_moved(entry, moved) for entry in search]
    try:  # a module not imported at start-up: found and readable means imports still work
        import importlib.util

        with open(importlib.util.find_spec("colorsys").origin, "rb"):
            pass
    except (AttributeError, OSError) as e:
        return f"uid {os.getuid()} cannot read the standard library: {e}"
    return None


def _moved(path: str, moved: dict[str, str]) -> str:
    for old, new in moved.items():
        if path == old or path.startswith(old + os.sep):
            return new + path[len(old):]
    return path


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
    realpath, join, getcwd, fspath, fsdecode = os.path.realpath, os.path.join, os.getcwd, os.fspath, os.fsdecode
    isdir, isabs, readlink = os.path.isdir, os.path.isabs, os.readlink

    def within(full: str) -> bool:
        return full == root or full.startswith(root + os.sep)

    def inside(path, dir_fd=None) -> bool:
        """Whether ``path`` (relative to ``dir_fd`` when given, else to the current folder) is inside."""
        try:
            if path is None:
                return within(realpath(getcwd()))
            if isinstance(path, int):  # an open descriptor: where it points
                return within(readlink(f"/proc/self/fd/{path}"))
            relative_to_cwd = dir_fd is None or int(dir_fd) < 0  # -1 (default) or AT_FDCWD
            base = getcwd() if relative_to_cwd else readlink(f"/proc/self/fd/{int(dir_fd)}")
            return within(realpath(join(base, fsdecode(fspath(path)))))
        except (OSError, TypeError, ValueError):
            return False

    def check_open(path, mode, flags) -> None:
        if isinstance(path, int):  # wrapping a descriptor the program already has
            return
        text = fsdecode(fspath(path))
        writes = bool((flags or 0) & WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
        # The event does not carry os.open's dir_fd: '..' could climb from any folder.
        if not isabs(text) and ".." in text.split(os.sep):
            raise PermissionError(f"sandbox: {path!r} ('..' in a relative path) may lead outside the working folder")
        if inside(path):
            return
        if writes:
            raise PermissionError(f"sandbox: writing {path!r} outside the working folder")
        if isdir(realpath(join(getcwd(), text))):  # a folder descriptor would make relative paths lead out
            raise PermissionError(f"sandbox: opening the folder {path!r} outside the working folder")

    def hook(event: str, args: tuple) -> None:
        if event in ALWAYS_REFUSED or event.startswith(REFUSED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            check_open(*(tuple(args) + (None, None, 0))[:3])
        elif event in PATH_EVENTS:
            for i, fd_at in PATH_EVENTS[event]:
                dir_fd = args[fd_at] if fd_at is not None and fd_at < len(args) else None
                if i < len(args) and not inside(args[i], dir_fd):
                    raise PermissionError(f"sandbox: {event} on {args[i]!r} outside the working folder")

    return hook


def main() -> None:
    work, program, settings, report_fd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    with open(program, "rb") as f:
        code = compile(f.read(), program, "exec")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir(work)
    uid = gid = settings["user"]
    ctypes, libc = _libc()
    layers = _enter_namespaces(libc, work, uid, gid) if settings["namespaces"] else []
    problem = _drop_privileges(ctypes, libc, uid, gid)
    if problem is None:
        layers.append("unprivileged")
    del ctypes, libc
    sys.modules.pop("ctypes", None)
    os.write(report_fd, json.dumps({"layers": layers, "problem": problem}).encode())
    os.close(report_fd)
    if problem is not None:
        os._exit(3)
    _set_limits(settings)
    sys.dont_write_bytecode = True
    sys.argv = [program]
    module = types.ModuleType("__main__")
    module.__file__ = program
    sys.modules["__main__"] = module
    sys.addaudithook(_guard(os.path.realpath(work)))
    exec(code, module.__dict__)


if __name__ == "__main__":
    main()
