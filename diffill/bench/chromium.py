"""Headless Chromium (Debian's ``chromium`` package): screenshots and rendered DOM of a page."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ChromiumError(RuntimeError):
    """Chromium is missing or failed."""


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise ChromiumError("no chromium on PATH (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="diffill-chromium-") as profile:
        cmd = [binary, "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
        if os.geteuid() == 0:
            cmd.append("--no-sandbox")  # Chromium refuses to run as root with its own sandbox
        try:
            proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise ChromiumError(f"chromium did not finish in {timeout:g} s") from e
    if proc.returncode != 0:
        raise ChromiumError(f"chromium failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc


def dump_dom(page: Path, timeout: float = 60.0) -> str:
    """The page's DOM after Chromium has parsed and laid it out."""
    return _run(["--dump-dom", Path(page).resolve().as_uri()], timeout).stdout


def screenshot(page: Path, png: Path, width: int, height: int, timeout: float = 60.0) -> None:
    """A ``width`` x ``height`` PNG of the top of the page."""
    png = Path(png).resolve()
    _run([f"--window-size={width},{height}", f"--screenshot={png}", Path(page).resolve().as_uri()],
         timeout)
    if not png.is_file():
        raise ChromiumError(f"chromium wrote no screenshot to {png}")
