"""Facial dynamics: blinks, landmark jitter, head-pose ranges, and ADFD (docs/METRICS.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..contracts import SAME_PERSON_DISTANCE
from .sync import AVOffset

BLINK_START = 0.78  # eye opening below 78 % of the video's median opening starts a blink …
BLINK_END = 0.90  # … which ends once it is back above 90 %
MAX_BLINK_S = 0.5  # longer closures are eyes shut, not blinks

JITTER_REF_PCT = 2.0  # ADFD's smoothness factor is exp(−jitter / 2 % of the eye-corner distance)
# Soft same-person probability for ADFD's spatial term: 0.5 at the threshold, ~0.92 at 0.45.
IDENTITY_SOFTNESS = 0.06


def count_blinks(eye_open: np.ndarray, fps: float) -> list[tuple[int, int]]:
    """Blink events as (first frame, last frame): the eye opening dips below 78 % of the
    video's median and comes back above 90 % within 0.5 s."""
    e = np.asarray(eye_open, np.float64)
    valid = np.isfinite(e)
    if valid.sum() < 3:
        return []
    base = float(np.median(e[valid]))
    if base <= 1e-6:
        return []
    events, start = [], None
    max_len = max(1, int(round(MAX_BLINK_S * fps)))
    for i, v in enumerate(e):
        if not np.isfinite(v):
            start = None  # a lost face ends any blink in progress without counting it
            continue
        if start is None and v < BLINK_START * base:
            start = i
        elif start is not None and v > BLINK_END * base:
            if i - start <= max_len:
                events.append((start, i - 1))
            start = None
    return events


def landmark_jitter(velocity: np.ndarray, scale: float) -> float | None:
    """Mean frame-to-frame change of the head-rigid points' flow velocity (their
    acceleration), in % of ``scale`` (the face's eye-corner distance in the video).

    ``velocity``: (n_frames, k, 2) pixels per frame, NaN where unknown. Smooth head motion
    has near-zero acceleration; shaking, wobbling or boiling faces do not.
    """
    v = np.asarray(velocity, np.float64)
    if len(v) < 2 or scale <= 0:
        return None
    acc = np.linalg.norm(v[1:] - v[:-1], axis=2)
    acc = acc[np.isfinite(acc)]
    return float(100.0 * acc.mean() / scale) if acc.size else None


def same_person_probability(distance: np.ndarray) -> np.ndarray:
    """Soft version of dlib's same-person decision: 1 near 0, 0.5 at 0.6, ~0 beyond 0.8."""
    return 1.0 / (1.0 + np.exp((np.asarray(distance, np.float64) - SAME_PERSON_DISTANCE) / IDENTITY_SOFTNESS))


@dataclass
class ADFD:
    """Audio-Driven Facial Dynamics: 100 × spatial × temporal (0 … 100, higher is better)."""

    score: float
    spatial: float  # mean over frames of face found × same-person probability
    temporal: float  # audio_following × smoothness
    audio_following: float  # max(0, best mouth/envelope r within the sync window)
    smoothness: float  # exp(−jitter / 2 %)


def adfd(distances: np.ndarray, found: np.ndarray, sync: AVOffset | None, jitter_pct: float | None) -> ADFD:
    """Our ADFD; each factor is in [0, 1] so any failing one pulls the score down."""
    found = np.asarray(found, bool)
    per_frame = np.where(found, same_person_probability(distances), 0.0)
    spatial = float(per_frame.mean()) if per_frame.size else 0.0
    following = max(0.0, sync.sync_correlation) if sync is not None else 0.0
    smooth = math.exp(-jitter_pct / JITTER_REF_PCT) if jitter_pct is not None else 0.0
    temporal = following * smooth
    return ADFD(score=100.0 * spatial * temporal, spatial=spatial, temporal=temporal,
                audio_following=following, smoothness=smooth)


def dynamics_section(curves: Mapping[str, np.ndarray], fps: float, jitter: float | None,
                     portrait_gap: float) -> dict[str, Any]:
    """The report's dynamics: head-pose ranges, blinks, jitter, mouth activity."""

    def spread(x: np.ndarray) -> float | None:
        x = x[np.isfinite(x)]
        return round(float(np.percentile(x, 95) - np.percentile(x, 5)), 2) if x.size >= 2 else None

    blinks = count_blinks(curves["eye_open"], fps)
    minutes = len(curves["eye_open"]) / fps / 60.0
    gap = curves["mouth_gap"][np.isfinite(curves["mouth_gap"])]
    return {
        "yaw_range_deg": spread(curves["yaw"]),
        "pitch_range_deg": spread(curves["pitch"]),
        "roll_range_deg": spread(curves["roll"]),
        "blinks": len(blinks),
        "blinks_per_min": round(len(blinks) / minutes, 1) if minutes > 0 else None,
        "blink_frames": [list(b) for b in blinks],
        "jitter_pct": round(jitter, 3) if jitter is not None else None,  # finite when measured
        # 5–95 % spread of the lip gap: how much the mouth moves at all.
        "mouth_motion": spread(gap),
        "portrait_mouth_gap": round(float(portrait_gap), 4),
    }
