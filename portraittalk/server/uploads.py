"""Bounds on Gradio's own copies of uploads and outputs.

They are swept every 30 min and removed after 1 h (``DELETE_CACHE``); so that a burst of
uploads cannot fill the disk in between, the upload folder is also trimmed oldest-first
past a size every minute.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

log = logging.getLogger("portraittalk.app")

DELETE_CACHE = (1800, 3600)  # gr.Blocks(delete_cache=…): (sweep every, remove after) in seconds
UPLOAD_SWEEP_S = 60.0
UPLOAD_IN_USE_S = 600.0  # a younger file may belong to a request in progress


def trim_folder(root: Path, max_bytes: int, keep_newer_than_s: float) -> int:
    """Delete the oldest files under ``root`` until it holds at most ``max_bytes``; files younger
    than ``keep_newer_than_s`` may belong to a request in progress and are kept. Returns the
    number of bytes freed."""
    files = []
    for path in Path(root).rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                files.append((st.st_mtime, st.st_size, path))
        except OSError:  # removed meanwhile
            continue
    total = sum(size for _, size, _ in files)
    freed, now = 0, time.time()
    for mtime, size, path in sorted(files):
        if total - freed <= max_bytes or now - mtime < keep_newer_than_s:
            break
        try:
            path.unlink()
            freed += size
        except OSError:
            continue
    return freed


def start_upload_trimmer(root: Path, max_bytes: int, every_s: float = UPLOAD_SWEEP_S) -> threading.Event:
    """Trim ``root`` every ``every_s`` seconds in a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            freed = trim_folder(root, max_bytes, UPLOAD_IN_USE_S)
            if freed:
                log.info("upload cache over %d MB: removed %.1f MB of the oldest files", max_bytes >> 20, freed / 2**20)

    threading.Thread(target=loop, name="upload-trimmer", daemon=True).start()
    return stop
