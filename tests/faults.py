"""Run the command line with a file system that fails on purpose, the same for every user.

A read-only folder cannot be made by chmod when the tests run as root, and a full disk
cannot be made without root at all; so the program is started through a small wrapper
that makes the operating system calls fail as such a file system would: ``os.open``
creating anything under PT_READ_ONLY raises EROFS, ``os.write`` to a file under PT_FULL
raises ENOSPC. Child processes (ffmpeg) see the real file system. PT_UMASK sets the umask.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

WRAPPER = r"""
import errno, os, sys

def _under(path, folder):
    return bool(folder) and os.path.abspath(path).startswith(folder.rstrip(os.sep) + os.sep)

_open, _write = os.open, os.write
_read_only, _full = os.environ.get("PT_READ_ONLY"), os.environ.get("PT_FULL")

def _failing_open(path, flags, mode=0o777, *, dir_fd=None):
    if _under(os.fspath(path), _read_only) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
    return _open(path, flags, mode, dir_fd=dir_fd)

def _failing_write(fd, data):
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        where = ""
    if _under(where, _full):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _write(fd, data)

os.open, os.write = _failing_open, _failing_write
if os.environ.get("PT_UMASK"):
    os.umask(int(os.environ["PT_UMASK"], 8))
module, *argv = sys.argv[1:]
if module == "portraittalk":
    from portraittalk.cli.main import main
else:
    from portraittalk.contact_sheet import main
raise SystemExit(main(argv))
"""


def run(module: str, *args: str, read_only: Path | None = None, full: Path | None = None,
        umask: int | None = None, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m module args…`` (portraittalk or portraittalk.contact_sheet) with the given folders failing."""
    environ = {**os.environ, "PT_UMASK": "" if umask is None else f"{umask:o}",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for name, folder in (("PT_READ_ONLY", read_only), ("PT_FULL", full)):
        if folder is not None:
            environ[name] = str(folder)
    return subprocess.run([sys.executable, "-c", WRAPPER, module, *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)
