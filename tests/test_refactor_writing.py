import os
import stat

import pytest

from diffill.refactor.files import read_snapshot
from diffill.refactor.writing import WriteSkipped, write_atomic


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".diffill")]


def test_write_replaces_the_file_and_keeps_its_mode(tmp_path):
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    os.chmod(f, 0o640)
    write_atomic(read_snapshot(str(f), "python"), "x = 2\n")
    assert f.read_text() == "x = 2\n"
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_a_file_changed_since_it_was_read_is_left_alone(tmp_path):
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    snap = read_snapshot(str(f), "python")
    f.write_text("x = 1  # edited\n")
    with pytest.raises(WriteSkipped, match="changed since"):
        write_atomic(snap, "x = 2\n")
    assert f.read_text() == "x = 1  # edited\n"
    assert leftovers(tmp_path) == []


def test_same_size_rewrite_with_restored_mtime_is_still_detected(tmp_path):
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    snap = read_snapshot(str(f), "python")
    f.write_text("x = 9\n")
    os.utime(f, ns=(snap.mtime_ns, snap.mtime_ns))
    with pytest.raises(WriteSkipped, match="changed since"):
        write_atomic(snap, "x = 2\n")
    assert f.read_text() == "x = 9\n"


def test_read_only_file_is_reported_not_written(tmp_path):
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    os.chmod(f, 0o444)
    with pytest.raises(WriteSkipped, match="read-only"):
        write_atomic(read_snapshot(str(f), "python"), "x = 2\n")
    assert f.read_text() == "x = 1\n"


def test_a_file_replaced_by_a_symlink_is_not_written_through(tmp_path):
    f, other = tmp_path / "a.py", tmp_path / "other.py"
    f.write_text("x = 1\n")
    other.write_text("x = 1\n")
    snap = read_snapshot(str(f), "python")
    f.unlink()
    os.symlink(other, f)
    with pytest.raises(WriteSkipped, match="regular file"):
        write_atomic(snap, "x = 2\n")
    assert other.read_text() == "x = 1\n"
