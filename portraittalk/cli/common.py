"""What every command shares: quiet native logs, file checks, @file text, a progress line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError


def quiet_native_logs() -> None:
    """Keep stderr for this program's own messages.

    mediapipe/TFLite write chatter straight to file descriptor 2 from native threads, at
    moments no Python code can bracket. So fd 2 goes to /dev/null and Python's ``sys.stderr``
    (errors, warnings, progress, tracebacks) writes to a copy of the real stderr instead.
    PORTRAITTALK_NATIVE_LOGS=1 keeps the native messages (for debugging).
    """
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("PORTRAITTALK_NATIVE_LOGS") == "1":
        return
    try:
        sys.stderr.flush()
        own = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError):  # no usable fd 2: nothing to separate
        return
    sys.stderr = os.fdopen(own, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")


def check_files(labelled_paths) -> None:
    """Every given (label, path) must be an existing file, or one sentence says which is not."""
    for label, path in labelled_paths:
        if path is not None and not Path(path).is_file():
            raise InputError(f"The {label} file '{path}' does not exist; check the path.")


def text_file(value: str | None) -> str | None:
    """The file named by a text option given as @file.txt, else None."""
    return value[1:] if value and value.startswith("@") else None


def read_text_arg(value: str | None, what: str = "transcript") -> str | None:
    """A text option given inline, or as @file.txt (read as UTF-8, bad bytes replaced)."""
    path = text_file(value)
    if path is None:
        return value
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise InputError(f"The {what} file '{path}' cannot be read; check the path.") from None


class ProgressLine:
    """A pipeline progress callback that redraws one line on a terminal's stderr (silent
    when stderr is not a terminal) and, given a ``log`` file, appends one line per step to it
    ("0.150 motion Planning the motion"), for a script that follows the run; `done()` ends both."""

    def __init__(self, log: Path | None = None) -> None:
        self.shown = sys.stderr.isatty()
        self._log = open(log, "a", buffering=1, encoding="utf-8") if log is not None else None

    def __call__(self, stage: str, frac: float, msg: str) -> None:
        if self.shown:
            print(f"\r{int(frac * 100):3d}% {msg:<40}", end="", file=sys.stderr, flush=True)
        if self._log is not None:
            self._log.write(f"{frac:.3f} {stage} {msg}\n")

    def done(self) -> None:
        if self.shown:
            print(file=sys.stderr)
        if self._log is not None:
            self._log.close()
            self._log = None
