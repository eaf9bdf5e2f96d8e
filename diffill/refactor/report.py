"""What a refactoring run shows: unified diffs and the closing summary table."""

from __future__ import annotations

import difflib

from diffill.refactor.runner import Summary


def unified_diff(path: str, old: str, new: str) -> str:
    """A ``diff -u`` of one file (git's ``a/`` and ``b/`` prefixes on relative paths, so
    ``git apply`` takes it); "" when nothing changed."""
    if old == new:
        return ""
    lines = []
    a, b = (path, path) if path.startswith("/") else (f"a/{path}", f"b/{path}")
    for line in difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=a, tofile=b):
        lines.append(line)
        if not line.endswith("\n"):
            lines.append("\n\\ No newline at end of file\n")
    return "".join(lines)


def summary_table(summary: Summary) -> str:
    rows = [("files", summary.files), ("regions", summary.regions), ("filled", summary.filled),
            ("rejected", f"{summary.rejected}" + (" (" + ", ".join(f"{why}: {n}" for why, n in
                                                                   summary.reasons.most_common()) + ")"
                                                  if summary.reasons else "")),
            ("skipped", summary.skipped),
            ("written", summary.written),
            ("workers", f"{summary.workers}" + (f" ({summary.tasks_retried} tasks retried)"
                                                if summary.tasks_retried else "")),
            ("time", f"{summary.seconds:.1f} s")]
    width = max(len(name) for name, _ in rows)
    out = [f"{name:<{width}}  {value}" for name, value in rows]
    for p in summary.problems:
        out.append(f"skipped {p.path}: {p.reason}")
    return "\n".join(out) + "\n"
