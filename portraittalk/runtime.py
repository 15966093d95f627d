"""Process-level helpers for a long-running renderer: memory returned to the system, thread counts, stage clocks."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path

# glibc's M_ARENA_MAX option for mallopt().
_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's per-thread allocation arenas for a long-running server.

    Every request thread otherwise gets an arena of its own that keeps its high-water mark,
    so a server's memory would ratchet up with each burst of visitors.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, count)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def release_freed_memory() -> None:
    """Give memory freed by a finished render back to the system (glibc keeps it otherwise,
    so a long-running server would sit at its highest peak). Frames are freed by reference
    counting, so no garbage collection pass is needed (it would cost ~0.3 s)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@contextlib.contextmanager
def opencv_threads(count: int | None) -> Iterator[None]:
    """OpenCV's thread count inside the block (None: unchanged). With identity scoring in a
    thread beside it and ffmpeg encoding, the renderer's own worker threads only contend for
    the same cores (measured: 20.8 → 18.7 ms a frame on 2 cores)."""
    import cv2
    before = cv2.getNumThreads()
    if count is not None:
        cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class StageClock:
    """Wall-clock and CPU seconds per stage of a render. A stage timed several times adds up;
    its CPU is that of the thread timing it (other threads report theirs with ``add``)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        self._stages: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0, time.thread_time() - c0)

    def add(self, stage: str, wall_s: float, cpu_s: float) -> None:
        wall, cpu = self._stages.get(stage, (0.0, 0.0))
        self._stages[stage] = (wall + wall_s, cpu + cpu_s)

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def stop(self) -> None:
        """Time the whole render as "total" (CPU: the whole process's, without child processes)."""
        self._stages["total"] = (self.elapsed(), time.process_time() - self._cpu_start)

    def wall(self, stage: str) -> float:
        return self._stages.get(stage, (0.0, 0.0))[0]

    def stages(self) -> dict[str, tuple[float, float]]:
        return dict(self._stages)


def cache_root() -> Path:
    """Where models are unpacked and kept: $PORTRAITTALK_CACHE, else the user's cache folder."""
    if os.environ.get("PORTRAITTALK_CACHE"):
        return Path(os.environ["PORTRAITTALK_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "portraittalk"


@functools.cache
def start_onnxruntime() -> None:
    """Start onnxruntime's environment (once per process) with the temp folder pointed at our cache.

    Its telemetry writes a session file (".ses") into the temp folder when the environment starts,
    and ``disable_telemetry_events`` does not stop it; nothing of ours may be left in the user's
    $TMPDIR. Whisper's voice-activity model (silero, in faster-whisper) starts it, and is kept."""
    import tqdm
    from faster_whisper.vad import get_vad_model

    tqdm.tqdm.monitor_interval = 0  # faster-whisper's progress bars: no monitor thread outliving a render
    folder = cache_root() / "onnxruntime"
    saved = os.environ.get("TMPDIR")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TMPDIR"] = str(folder)
    except OSError:  # no cache folder: the file goes where onnxruntime puts it
        pass
    try:
        get_vad_model()
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
