"""Identity scoring in a thread beside rendering: frames go in as they are made, scores come out at the end."""

from __future__ import annotations

import queue
import threading
import time
from typing import Protocol

import numpy as np

from ..contracts import Box, IdentityScores


class FrameStream(Protocol):
    """A scorer fed one frame at a time (the identity scorer's ``stream(reference)``)."""

    def add(self, frame: np.ndarray, box: Box | None, mesh: np.ndarray | None = None) -> None: ...

    def finish(self) -> IdentityScores: ...


# How often a waiting scoring thread looks whether the render was cancelled.
_POLL_S = 0.25


class ScoringThread:
    """Feeds ``stream`` from a thread of its own: alignment (with the frame's mesh, when known,
    dlib's landmark model does not run, and the GIL is held only briefly) and the descriptor
    network, which releases the GIL, run beside the renderer.

    ``put`` blocks once ``backlog`` frames wait, so memory stays bounded when scoring is the
    slower side. An error in the thread is kept and raised by ``finish``, never lost silently.
    ``cancel`` stops it when the render fails or is interrupted.
    """

    def __init__(self, stream: FrameStream, backlog: int = 8) -> None:
        self._stream = stream
        self._jobs: queue.Queue[tuple[np.ndarray, Box, np.ndarray | None] | None] = queue.Queue(maxsize=backlog)
        self._failure: BaseException | None = None
        self.busy_s = 0.0  # time spent scoring, in the thread
        self._cancelled = threading.Event()
        self.cpu_s = 0.0  # CPU time of the thread
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, rgb: np.ndarray, box: Box, mesh: np.ndarray | None = None) -> None:
        self._jobs.put((rgb, box, mesh))

    def close(self) -> None:
        """No more frames: the thread ends once it has scored what it holds."""
        self._jobs.put(None)

    def cancel(self, timeout_s: float = 5.0) -> None:
        """Stop without scoring what waits; returns once the thread has ended (or after
        ``timeout_s``). Touches no lock of the queue: an interrupt may have left one held."""
        self._cancelled.set()
        self._thread.join(timeout_s)

    def finish(self) -> IdentityScores:
        """Wait for the thread (after ``close``) and return the scores of every frame put."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._stream.finish()

    def _run(self) -> None:
        while not self._cancelled.is_set():
            try:
                item = self._jobs.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is None:
                self.cpu_s = time.thread_time()
                return
            if self._failure is not None:
                continue  # drain, so the renderer never blocks on a full queue
            t0 = time.perf_counter()
            try:
                self._stream.add(*item)
            except BaseException as err:  # raised by finish(), after rendering
                self._failure = err
            self.busy_s += time.perf_counter() - t0
