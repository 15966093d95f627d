"""Two videos of the same person measured against one portrait: the evaluations kept in
memory, the table and curves side by side, a one-line verdict, and both videos in one MP4."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..evaluation import COMPARE_HEADERS, VideoEvaluation, compare
from ..evaluation.side_by_side import Panel, caption, side_by_side_video
from .results import file_digest

COMPARE_NAMES = ("A", "B")
# Plot legend: short series names (they must fit beside a half-width plot).
COMPARE_CURVES = {"identity (cosine)": "identity", "lip sync (local r)": "lip sync"}
# Differences smaller than these are called a draw in the verdict: identity as the mean
# descriptor cosine, lip sync as the audio-visual correlation's confidence.
IDENTITY_DRAW = 0.003
SYNC_DRAW = 0.05
EVALUATION_CACHE_ENTRIES = 8
SIDE_BY_SIDE_FILES = 8


class EvaluationCache:
    """The last few video evaluations in memory, keyed by the bytes of the video, the
    portrait and the audio and by the transcript: comparing a video with a second, third …
    other one measures it once."""

    def __init__(self, max_entries: int = EVALUATION_CACHE_ENTRIES) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: dict[str, VideoEvaluation] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(video: str, portrait: str, audio: str | None, transcript: str | None) -> str:
        h = hashlib.sha256()
        for role, path in (("video", video), ("portrait", portrait), ("audio", audio)):
            file_digest(h, role, path)
        h.update(f"transcript:{transcript or ''}".encode())
        return h.hexdigest()[:32]

    def get(self, key: str) -> VideoEvaluation | None:
        with self._lock:
            found = self._entries.pop(key, None)
            if found is not None:
                self._entries[key] = found  # most recently used goes last
            return found

    def put(self, key: str, evaluation: VideoEvaluation) -> None:
        with self._lock:
            self._entries[key] = evaluation
            while len(self._entries) > self.max_entries:
                self._entries.pop(next(iter(self._entries)))


def compare_verdict(summary_a: dict[str, Any], summary_b: dict[str, Any]) -> str:
    """One plain sentence: which video keeps the identity better and which is better in sync."""

    def leader(key: str, draw: float) -> str | None:
        """The better video's name; None for a draw or when neither could be measured."""
        va, vb = summary_a.get(key), summary_b.get(key)
        if va is None or vb is None:  # one side not measurable: the measurable one leads
            return None if va is None and vb is None else COMPARE_NAMES[0 if vb is None else 1]
        return None if abs(va - vb) < draw else COMPARE_NAMES[0 if va > vb else 1]

    identity = leader("identity_mean_cosine", IDENTITY_DRAW)
    sync = leader("sync_confidence", SYNC_DRAW)
    if identity and identity == sync:
        return f"**{identity} is better on both counts: it keeps the identity better and is better in sync.**"
    identity_text = (f"{identity} keeps the identity better" if identity
                     else "Both keep the identity about equally well")
    if summary_a.get("sync_confidence") is None and summary_b.get("sync_confidence") is None:
        sync_text = "lip sync could not be measured in either (no moving mouth or no sound)"
    else:
        sync_text = f"{sync} is better in sync" if sync else "both are about equally in sync"
    return f"**{identity_text}; {sync_text}.**"


def side_by_side(evaluations: Sequence[VideoEvaluation]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(metrics table, curves for the plot, verdict and notes) for videos A and B."""
    rows, curves = compare(evaluations[0], evaluations[1], names=COMPARE_NAMES)
    verdict = compare_verdict(evaluations[0].summary(), evaluations[1].summary())
    notes = [f"_Video {name}: {note}_" for name, ev in zip(COMPARE_NAMES, evaluations) for note in ev.notes]
    curves = curves.assign(series=curves["video"] + " " + curves["metric"].map(COMPARE_CURVES))
    return (pd.DataFrame(rows, columns=list(COMPARE_HEADERS)), curves[["time_s", "value", "series"]],
            "\n\n".join([verdict] + notes))


class SideBySideStore:
    """The last few side-by-side videos on disk, one file per pair of evaluations (and sound)."""

    def __init__(self, root: Path, max_files: int = SIDE_BY_SIDE_FILES) -> None:
        self.root = Path(root)
        self.max_files = max(1, max_files)
        self._lock = threading.Lock()

    def video(self, videos: Sequence[str], evaluation_keys: Sequence[str], evaluations: Sequence[VideoEvaluation],
              audio: str | None) -> Path:
        """The MP4 of videos A and B side by side, labelled, captioned with their key metrics."""
        h = hashlib.sha256("\n".join(evaluation_keys).encode())
        file_digest(h, "audio", audio)
        out = self.root / f"{h.hexdigest()[:32]}.mp4"
        with self._lock:
            if not out.is_file():
                self.root.mkdir(parents=True, exist_ok=True)
                panels = [Panel(Path(v), f"{name} · {Path(v).name}", caption(ev.summary()))
                          for name, v, ev in zip(COMPARE_NAMES, videos, evaluations)]
                partial = out.with_suffix(".part.mp4")
                side_by_side_video(panels[0], panels[1], partial, audio)
                os.replace(partial, out)
            os.utime(out)  # most recently used
            for old in sorted(self.root.glob("*.mp4"), key=lambda p: p.stat().st_mtime)[:-self.max_files]:
                old.unlink(missing_ok=True)
        return out
