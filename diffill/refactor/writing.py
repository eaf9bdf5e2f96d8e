"""Writing refactored files safely: a temporary file in the same folder, then ``os.replace``; never
over a file that changed since it was read, never over a read-only file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from diffill.refactor.files import Snapshot, digest


class WriteSkipped(Exception):
    """The file was left as it is; the message says why."""


def _unchanged(path: Path, snap: Snapshot) -> bool:
    try:
        st = path.stat()
        if st.st_size != snap.size or st.st_mtime_ns != snap.mtime_ns:
            return False
        return digest(path.read_bytes()) == snap.digest
    except OSError:
        return False


def write_atomic(snap: Snapshot, new_text: str) -> None:
    """Replace the file with ``new_text`` in one step. Raises WriteSkipped, leaving the file as it
    was, when it changed since ``snap`` was read, is read-only, or the folder is not writable."""
    path = Path(snap.path)
    try:
        st = path.lstat()
    except OSError as e:
        raise WriteSkipped(f"cannot stat: {e.strerror}") from e
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise WriteSkipped("no longer a regular file")
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise WriteSkipped("read-only file")
    fd, tmp = None, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".diffill", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fd = None
            fh.write(new_text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:  # keep the owner when allowed (running as root over another user's files)
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass
        if not _unchanged(path, snap):  # checked as late as possible, right before the swap
            raise WriteSkipped("changed since it was read")
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise WriteSkipped(f"cannot write: {e.strerror}") from e
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
