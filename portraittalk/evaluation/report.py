"""The evaluation report: :class:`VideoEvaluation` with its summary, JSON, text table and
Markdown benchmark row (fields in docs/METRICS.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts import IdentityScores
from .dynamics import ADFD
from .sync import AVOffset, PhoneChecks

# The headline table, one row per metric, as the CLI prints it and compare() lines up two videos:
# (summary key, label, unit, which way is better: "higher" | "lower" | "zero" | None, format)
COMPARE_ROWS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("identity_mean_cosine", "Identity: mean similarity", "", "higher", "{:.3f}"),
    ("identity_min_cosine", "Identity: worst frame", "", "higher", "{:.3f}"),
    ("identity_over_threshold_pct", "Identity: frames not the same person", "%", "lower", "{:.1f}"),
    ("face_found_pct", "Face found", "%", "higher", "{:.1f}"),
    ("av_offset_ms", "Lip sync: audio-visual offset", "ms", "zero", "{:+.0f}"),
    ("sync_confidence", "Lip sync: confidence", "", "higher", "{:.2f}"),
    ("bilabial_closed_pct", "Lips closed at P/B/M", "%", "higher", "{:.0f}"),
    ("open_vowel_open_pct", "Mouth open at open vowels", "%", "higher", "{:.0f}"),
    ("pause_rest_pct", "Mouth at rest in pauses", "%", "higher", "{:.0f}"),
    ("adfd", "ADFD (facial dynamics, 0–100)", "", "higher", "{:.1f}"),
    ("head_yaw_range_deg", "Head turn range (yaw)", "°", None, "{:.1f}"),
    ("head_pitch_range_deg", "Head nod range (pitch)", "°", None, "{:.1f}"),
    ("blinks_per_min", "Blinks per minute", "", None, "{:.1f}"),
    ("jitter_pct", "Landmark jitter", "% of eye distance", "lower", "{:.2f}"),
    ("background_ssim", "Background kept (SSIM)", "", "higher", "{:.3f}"),
    ("flicker", "Background flicker", "grey levels", "lower", "{:.2f}"),
    ("eval_s", "Evaluation time", "s", None, "{:.1f}"),
)


@dataclass
class VideoEvaluation:
    """All metrics of one video; ``to_dict()`` is the JSON report."""

    video: str  # file name
    portrait: str  # file name
    fps: float
    n_frames: int
    size: tuple[int, int]  # (width, height)
    identity: IdentityScores
    curves: dict[str, np.ndarray]  # per-frame series, listed in docs/METRICS.md
    av: AVOffset | None
    phones: PhoneChecks | None
    adfd: ADFD
    dynamics: dict[str, Any]  # head-pose ranges, blinks, jitter, mouth activity
    background: dict[str, Any]  # background SSIM and flicker
    timings_s: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps else 0.0

    def summary(self) -> dict[str, Any]:
        """Headline numbers, flat, rounded; None where a metric could not be measured."""
        ident = self.identity.summary()
        found = np.asarray(self.curves["face_found"], bool)
        n = max(1, self.n_frames)
        ph = self.phones
        return {
            "video": self.video,
            "frames": self.n_frames,
            "duration_s": round(self.duration_s, 3),
            "face_found_pct": round(100.0 * found.sum() / n, 1),
            "identity_mean_cosine": ident.get("mean_cosine"),
            "identity_min_cosine": ident.get("min_cosine"),
            "identity_mean_distance": ident.get("mean_distance"),
            "identity_over_threshold_pct": round(100.0 * ident.get("frames_over_threshold", 0) / n, 1),
            "av_offset_frames": self.av.lag_frames if self.av else None,
            "av_offset_ms": self.av.lag_ms if self.av else None,
            "av_in_sync": self.av.in_sync if self.av else None,
            "sync_correlation": _r(self.av.correlation) if self.av else None,
            "sync_confidence": _r(self.av.confidence) if self.av else None,
            "bilabial_closed_pct": _pct(ph.bilabial_closed_fraction) if ph else None,
            "open_vowel_open_pct": _pct(ph.open_vowel_fraction) if ph else None,
            "pause_rest_pct": _pct(ph.pause_rest_fraction) if ph else None,
            "adfd": round(self.adfd.score, 1),
            "adfd_spatial": _r(self.adfd.spatial),
            "adfd_temporal": _r(self.adfd.temporal),
            "head_yaw_range_deg": self.dynamics.get("yaw_range_deg"),
            "head_pitch_range_deg": self.dynamics.get("pitch_range_deg"),
            "head_roll_range_deg": self.dynamics.get("roll_range_deg"),
            "blinks": self.dynamics.get("blinks"),
            "blinks_per_min": self.dynamics.get("blinks_per_min"),
            "jitter_pct": self.dynamics.get("jitter_pct"),
            "mouth_motion": self.dynamics.get("mouth_motion"),
            "background_ssim": self.background.get("ssim_mean"),
            "flicker": self.background.get("flicker"),
            "eval_s": self.timings_s.get("total"),
        }

    def to_dict(self) -> dict[str, Any]:
        av = asdict(self.av) if self.av else None
        phones = None
        if self.phones:
            phones = asdict(self.phones) | {
                "bilabial_closed_fraction": self.phones.bilabial_closed_fraction,
                "open_vowel_fraction": self.phones.open_vowel_fraction,
                "pause_rest_fraction": self.phones.pause_rest_fraction}
        return {
            "summary": self.summary(),
            "video": {"name": self.video, "fps": self.fps, "frames": self.n_frames, "size": list(self.size),
                      "duration_s": round(self.duration_s, 3)},
            "portrait": self.portrait,
            "identity": {"threshold": self.identity.threshold, "summary": self.identity.summary()},
            "lip_sync": {"av_offset": av, "phones": phones},
            "adfd": asdict(self.adfd),
            "dynamics": self.dynamics,
            "background": self.background,
            "timings_s": self.timings_s,
            "notes": self.notes,
            "curves": {k: [None if not np.isfinite(v) else round(float(v), 5) for v in np.asarray(c, np.float64)]
                       for k, c in self.curves.items()},
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    # Markdown for benchmark reports: one row per video under a shared header.
    MARKDOWN_COLUMNS = (
        ("video", "video"), ("frames", "frames"), ("identity_mean_cosine", "id cos mean"),
        ("identity_min_cosine", "id cos min"), ("identity_over_threshold_pct", "id >thr %"),
        ("av_offset_frames", "AV offset fr"), ("sync_confidence", "sync conf"),
        ("bilabial_closed_pct", "bilabial closed %"), ("open_vowel_open_pct", "vowel open %"),
        ("pause_rest_pct", "pause rest %"), ("adfd", "ADFD"), ("head_yaw_range_deg", "yaw range °"),
        ("blinks_per_min", "blinks/min"), ("jitter_pct", "jitter %"), ("background_ssim", "bg SSIM"),
        ("flicker", "flicker"), ("eval_s", "eval s"),
    )

    @classmethod
    def markdown_header(cls) -> str:
        names = [label for _, label in cls.MARKDOWN_COLUMNS]
        return "| " + " | ".join(names) + " |\n|" + "|".join("---" for _ in names) + "|"

    def to_markdown_row(self) -> str:
        s = self.summary()
        return "| " + " | ".join(_fmt(s.get(key)) for key, _ in self.MARKDOWN_COLUMNS) + " |"

    def to_text(self) -> str:
        """A readable two-column table (the CLI prints this)."""
        s = self.summary()
        width = max(len(row[1]) for row in COMPARE_ROWS)
        lines = [f"{self.video}: {self.n_frames} frames, {self.fps:g} fps, {self.size[0]}×{self.size[1]}"]
        for key, label, unit, _, spec in COMPARE_ROWS:
            lines.append(f"  {label.ljust(width)}  {with_unit(s.get(key), spec, unit)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 1)


def with_unit(v: Any, spec: str, unit: str) -> str:
    """A summary value for a table cell: "—" when missing, else formatted by ``spec``, with its unit."""
    if v is None:
        return "—"
    text = spec.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _fmt(v)
    return f"{text} {unit}" if unit else text


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)
