"""Ctrl-C and SIGTERM: a command stops cleanly, says so in one line and exits 128 + the signal
(130 for Ctrl-C, 143 for SIGTERM).

The first signal raises KeyboardInterrupt in the main thread, so every ``finally`` and
context manager on the way out runs: the encoder kills ffmpeg and deletes its temporary
file, the scoring thread stops. Should that not end the process within ``GRACE_S`` (a
native call that does not return, a lock the interrupted code left held), or should a
second signal come, the process ends at once. Either way the end is the same: child
processes killed, temporary files removed (``io.paths`` keeps the list), then
``os._exit``, so that native libraries (mediapipe/TFLite, torch) are never torn down while
their threads run ("terminate called without an active exception").
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

import psutil

from ..io.paths import remove_temporaries

GRACE_S = 10.0  # time the way out may take before the process ends without it
_received: list[int] = []  # the signals seen, first first
_signalled = threading.Event()
_ending = threading.Event()
_end_lock = threading.Lock()
_stderr_fd = 2


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (call from the main thread, after stderr is set up)."""
    global _stderr_fd
    try:
        _stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stderr without a descriptor
        pass
    # Started now, not from the handler: starting a thread takes locks the interrupted code may hold.
    threading.Thread(target=_end_after_grace, name="interrupt-grace", daemon=True).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def received() -> int | None:
    """The first signal received, or None."""
    return _received[0] if _received else None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _ending.is_set():
        return
    if _received:  # a second signal: no more waiting for the way out
        end(_received[0])
    _received.append(signum)
    _signalled.set()
    raise KeyboardInterrupt


def _end_after_grace() -> None:
    _signalled.wait()
    if not _ending.wait(GRACE_S):
        end(_received[0])


def end(signum: int) -> NoReturn:
    """Kill the child processes, remove the temporary files, say so and exit 128 + ``signum``.

    Safe from a signal handler or any thread: it takes no lock the interrupted code may hold
    and imports nothing."""
    _ending.set()
    if not _end_lock.acquire(blocking=False):  # another thread is ending the process
        threading.Event().wait()
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.Error:  # gone already
            pass
    psutil.wait_procs(children, timeout=5)  # reaped: no zombie outlives us
    remove_temporaries()
    name = signal.Signals(signum).name
    line = f"error: interrupted ({name}).\n"
    try:
        os.write(_stderr_fd, (("\n" if os.isatty(_stderr_fd) else "") + line).encode())
    except OSError:
        pass
    os._exit(128 + signum)
