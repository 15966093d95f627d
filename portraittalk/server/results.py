"""Finished renders on disk, one folder each, keyed by a hash of the inputs and settings."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import __version__ as PORTRAITTALK_VERSION
from ..contracts import SAME_PERSON_DISTANCE
from ..io.paths import write_file
from ..io.subtitles import cues_from_words, write_subtitles
from ..pipeline import RenderResult
from ..settings import RenderSettings


@dataclass
class StoredResult:
    """A finished render in its own folder: the video, the scores and the motion track."""

    folder: Path
    report: dict[str, Any]
    from_cache: bool = False

    VIDEO, SCORES_JSON, SCORES_CSV, MOTION_JSON = "portraittalk.mp4", "scores.json", "scores.csv", "motion.json"
    SPEECH_WAV = "speech.wav"  # the synthesised speech, for a typed text
    SUBTITLES_VTT, SUBTITLES_SRT = "words.vtt", "words.srt"  # what is said, timed (empty without words)

    @property
    def video(self) -> Path:
        return self.folder / self.VIDEO

    @property
    def downloads(self) -> list[str]:
        names = (self.SCORES_CSV, self.SCORES_JSON, self.MOTION_JSON, self.SUBTITLES_VTT, self.SUBTITLES_SRT,
                 self.SPEECH_WAV)
        return [str(self.folder / n) for n in names if n != self.SPEECH_WAV or (self.folder / n).is_file()]


def file_digest(h: Any, role: str, path: str | None) -> None:
    """Feed a file's name and bytes to ``h``. File names are part of every key: the report
    names the inputs, and one visitor's file name must never appear in another visitor's download."""
    if path:
        h.update(f"{role}:{Path(path).name}:".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)


class ResultCache:
    """Finished renders keyed by a hash of (portrait bytes, reference bytes, audio bytes, file
    names, settings). Each entry is a folder; the oldest entries are removed past a count."""

    FORMAT = 2  # bump when what a folder holds changes
    SIDE_BY_SIDE = "side-by-side"  # the comparison videos' folder, not an entry
    STREAMS = "streams"  # the folder of streamed pieces, beside the entries

    def __init__(self, root: Path, max_entries: int) -> None:
        self.root = Path(root)
        self.max_entries = max(1, max_entries)
        self._lock = threading.Lock()
        self._last_use_ns = 0

    @staticmethod
    def key(portrait: str, audio: str | None, references: Sequence[str], settings: RenderSettings) -> str:
        h = hashlib.sha256()
        h.update(f"portraittalk {PORTRAITTALK_VERSION} cache {ResultCache.FORMAT}\n".encode())
        for role, path in [("portrait", portrait), ("audio", audio)] + [("reference", r) for r in references]:
            file_digest(h, role, path)
        h.update(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
        return h.hexdigest()[:32]

    def get(self, key: str) -> StoredResult | None:
        folder = self.root / key
        try:
            report = json.loads((folder / StoredResult.SCORES_JSON).read_text())
        except (OSError, ValueError):
            return None
        if not (folder / StoredResult.VIDEO).is_file():
            return None
        with self._lock:
            self._mark_used(folder)
        return StoredResult(folder, report, from_cache=True)

    def new_work_dir(self) -> Path:
        """A private folder for one request (same file system as the cache, for a cheap rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="work-", dir=self.root))

    def new_stream_dir(self) -> Path:
        """A folder (not yet made) for the pieces of a video streamed while it renders. Pieces
        outlive the request, as a page may still be fetching them; the oldest folders beyond
        the cache's entry count are removed."""
        streams = self.root / self.STREAMS
        streams.mkdir(parents=True, exist_ok=True)
        with self._lock:
            folders = sorted((p for p in streams.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in folders[self.max_entries:]:
                shutil.rmtree(old, ignore_errors=True)
        return streams / uuid.uuid4().hex

    def store(self, key: str, result: RenderResult, work: Path) -> StoredResult:
        """Write the downloads next to the video in ``work`` and publish it under ``key``."""
        report = result.run_report.for_download(StoredResult.VIDEO)
        write_file(work / StoredResult.SCORES_JSON, json.dumps(report, indent=1))
        write_scores_csv(report, work / StoredResult.SCORES_CSV)
        result.write_motion(work / StoredResult.MOTION_JSON)
        result.write_speech(work / StoredResult.SPEECH_WAV)
        cues = cues_from_words(result.words)
        for name in (StoredResult.SUBTITLES_VTT, StoredResult.SUBTITLES_SRT):
            write_subtitles(work / name, cues)
        folder = self.root / key
        with self._lock:
            if folder.exists():  # an identical request finished first; keep that one
                shutil.rmtree(work, ignore_errors=True)
            else:
                os.replace(work, folder)
                self._mark_used(folder)
            self._evict()
        return StoredResult(folder, report)

    def _mark_used(self, folder: Path) -> None:
        """Stamp the folder as the most recently used. The stamp is set explicitly, always later
        than the one before: the file system's own clock ticks too coarsely to order two quick uses."""
        self._last_use_ns = max(time.time_ns(), self._last_use_ns + 1)
        os.utime(folder, ns=(self._last_use_ns, self._last_use_ns))

    def _evict(self) -> None:
        entries = sorted((p for p in self.root.iterdir()
                          if p.is_dir() and not p.name.startswith("work-")
                          and p.name not in (self.SIDE_BY_SIDE, self.STREAMS)),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[self.max_entries:]:
            shutil.rmtree(old, ignore_errors=True)


def write_scores_csv(report: dict[str, Any], path: Path) -> Path:
    """Per-frame identity scores as CSV (empty table with a header when scoring was off)."""
    frames = (report.get("identity") or {}).get("frames", [])
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["frame", "time_s", "cosine", "distance", "similarity", "same_person", "face_found"])
    for fr in frames:
        w.writerow([fr["frame"], fr["time_s"], fr["cosine"], fr["distance"],
                    round(1.0 - fr["distance"], 5), fr["distance"] <= SAME_PERSON_DISTANCE,
                    fr["face_found"]])
    return write_file(path, text.getvalue())
