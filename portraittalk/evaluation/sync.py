"""Lip sync, measured from the sound and the mouth opening per frame (docs/METRICS.md).

The speech envelope is computed here from the samples, not taken from the pipeline's speech
analysis, so the measurement does not depend on the system under test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..contracts import PhoneSegment

MAX_LAG_S = 0.6  # audio-visual offsets searched within ±0.6 s (±15 frames at 25 fps)
# ITU-R BT.1359 detectability thresholds: sound 45 ms before the picture, or 125 ms after it.
SYNC_WINDOW_S = (-0.125, 0.045)
HIGHPASS_WINDOW_S = 0.5  # mouth and envelope lose their slower-than-syllable trends first
LOCAL_SYNC_WINDOW_S = 2.0  # window of the per-frame lip-sync curve
ENVELOPE_RANGE_DB = 45.0  # the envelope maps [loudest − 45 dB, loudest] to [0, 1]
MIN_MOUTH_MOTION = 0.02  # lip-gap spread (5–95 %) below this: the mouth does not move

CLOSED_GAP = 0.05  # inner-lip gap / mouth width at or below which the lips count as closed
OPEN_GAP = 0.12  # gap at or above which the mouth counts as open …
OPEN_ABOVE_PORTRAIT = 0.05  # … and at least this much more open than in the portrait
REST_ABOVE_PORTRAIT = 0.05  # in pauses: no more open than the portrait plus this
PHONE_TOLERANCE_FRAMES = 1  # a phone's frames are widened by this on each side (alignment slack)
MIN_OPEN_VOWEL_S = 0.05  # shorter vowels need not reach a full opening
MIN_PAUSE_S = 0.30  # a silence this long is a pause …
PAUSE_EDGE_S = 0.10  # … whose first/last 0.1 s may still be co-articulated

# Phones of recognised words; "acoustic" pseudo-phones (singing, unreadable speech) only mark
# syllables, so checking lip closure against them would be meaningless.
TRUSTED_PHONE_METHODS = ("forced-alignment", "espeak-dtw")
BILABIALS = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AO", "AW", "AY"})  # AH left out: pocketsphinx uses it for schwa


def speech_envelope(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Loudness of the sound shown with each video frame, 0 … 1, shape (n_frames,).

    Frame i is on screen during [i/fps, (i+1)/fps); its value is the mean power of 25 ms
    windows centred in that interval, in dB, mapped from [loudest − 45 dB, loudest] to
    [0, 1] ("loudest" = 99th percentile, so a click does not set the scale).
    """
    # Mean power of 25 ms windows every 10 ms, window k centred at k × 10 ms (running sums
    # keep memory flat for long clips).
    hop, size = max(1, sample_rate // 100), max(2, int(0.025 * sample_rate))
    x = np.pad(np.asarray(samples, np.float64), size // 2)
    sums = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, max(1, len(x) - size + 1), hop)
    power_10ms = (sums[np.minimum(starts + size, len(x))] - sums[starts]) / size
    idx = np.floor(np.arange(len(power_10ms)) * hop / sample_rate * fps).astype(int)
    keep = idx < n_frames
    power = np.bincount(idx[keep], weights=power_10ms[keep], minlength=n_frames)[:n_frames]
    counts = np.bincount(idx[keep], minlength=n_frames)[:n_frames]
    db = 10 * np.log10(np.where(counts > 0, power / np.maximum(counts, 1), 0.0) + 1e-10)
    top = np.percentile(db[counts > 0], 99) if counts.any() else 0.0
    return np.clip((db - (top - ENVELOPE_RANGE_DB)) / ENVELOPE_RANGE_DB, 0, 1).astype(np.float32)


@dataclass
class AVOffset:
    """Best lag between mouth motion and the sound; positive = the picture is late."""

    lag_frames: int
    lag_ms: float
    correlation: float  # Pearson r at the best lag
    confidence: float  # r at the best lag minus the median r over all lags searched
    in_sync: bool  # lag within ITU-R BT.1359's detectability window
    sync_correlation: float  # best r within that window (ADFD's audio-following term)
    lags: list[int] = field(default_factory=list)
    correlations: list[float] = field(default_factory=list)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 1e-12 else float("nan")


def av_offset(mouth: np.ndarray, envelope: np.ndarray, fps: float, max_lag_s: float = MAX_LAG_S) -> AVOffset | None:
    """Cross-correlate mouth opening with the speech envelope; None when either is flat.

    ``mouth[i]`` is compared with ``envelope[i − lag]``: a lag of +k means the mouth makes
    the shape k frames after the sound (the picture is late).
    """
    filled = _fill_gaps(np.asarray(mouth, np.float64))
    env = np.asarray(envelope, np.float64)
    if filled is None or min(len(filled), len(env)) < 8:
        return None
    mouth = filled
    n = min(len(mouth), len(env))
    mouth, env = mouth[:n], env[:n]
    if np.percentile(mouth, 95) - np.percentile(mouth, 5) < MIN_MOUTH_MOTION or np.std(env) < 1e-3:
        return None
    mouth, env = _syllable_band(mouth, fps), _syllable_band(env, fps)
    max_lag = max(1, min(int(round(max_lag_s * fps)), n // 3))
    lags = list(range(-max_lag, max_lag + 1))
    corr = np.array([_pearson(mouth[max(0, k):n + min(0, k)], env[max(0, -k):n - max(0, k)]) for k in lags])
    if not np.isfinite(corr).any():
        return None
    corr = np.nan_to_num(corr, nan=-1.0)
    best = int(np.argmax(corr))
    lo, hi = _sync_lag_window(fps)
    window = [i for i, k in enumerate(lags) if lo <= k <= hi]
    lag = lags[best]
    return AVOffset(lag_frames=lag, lag_ms=round(1000.0 * lag / fps, 1), correlation=float(corr[best]),
                    confidence=float(corr[best] - np.median(corr)), in_sync=lo <= lag <= hi,
                    sync_correlation=float(max(corr[i] for i in window)),
                    lags=lags, correlations=[round(float(c), 4) for c in corr])


def _syllable_band(x: np.ndarray, fps: float) -> np.ndarray:
    """Remove changes slower than ~2 Hz (x minus its 0.5 s moving average), keeping the
    syllable rhythm: otherwise the long speech/pause alternation correlates at every lag
    and blunts the peak."""
    from scipy.ndimage import uniform_filter1d

    size = max(3, int(round(HIGHPASS_WINDOW_S * fps)) | 1)
    return x - uniform_filter1d(x, size=size, mode="nearest")


def _sync_lag_window(fps: float) -> tuple[int, int]:
    """Lags (frames) inside the detectability window; always includes 0."""
    return min(0, math.ceil(SYNC_WINDOW_S[0] * fps - 1e-9)), max(0, math.floor(SYNC_WINDOW_S[1] * fps + 1e-9))


def local_sync(mouth: np.ndarray, envelope: np.ndarray, fps: float,
               window_s: float = LOCAL_SYNC_WINDOW_S) -> np.ndarray:
    """Per-frame Pearson r of mouth opening and envelope over a centred window (lag 0); NaN
    where the window has no sound or no mouth motion."""
    from numpy.lib.stride_tricks import sliding_window_view

    filled = _fill_gaps(np.asarray(mouth, np.float64))
    n = min(len(envelope), len(filled)) if filled is not None else 0
    out = np.full(len(envelope), np.nan, np.float32)
    w = max(5, int(round(window_s * fps)) | 1)
    if filled is None or n < w:
        return out
    mouth, env = filled, np.asarray(envelope[:n], np.float64)
    # Windows where the mouth or the sound barely changes have no meaningful correlation.
    raw_a, raw_b = sliding_window_view(mouth[:n], w), sliding_window_view(env, w)
    ok = (np.ptp(raw_a, axis=1) >= MIN_MOUTH_MOTION) & (np.ptp(raw_b, axis=1) >= 0.1)
    a = sliding_window_view(_syllable_band(mouth[:n], fps), w)
    b = sliding_window_view(_syllable_band(env, fps), w)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    r = np.where(ok & (den > 1e-12), (a * b).sum(1) / np.maximum(den, 1e-12), np.nan)
    out[w // 2:w // 2 + len(r)] = r
    return out


def _fill_gaps(x: np.ndarray) -> np.ndarray | None:
    """Linear interpolation over NaNs (frames without a face); None if over half are missing."""
    ok = np.isfinite(x)
    if ok.sum() < max(2, len(x) / 2):
        return None
    if ok.all():
        return x
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok])


@dataclass
class PhoneChecks:
    """Does the mouth do what the phones need? Fractions are None when nothing to check."""

    bilabials: int  # P/B/M phones checked
    bilabials_closed: int  # … where the lips closed
    open_vowels: int  # AA/AE/AO/AW/AY phones checked
    open_vowels_open: int  # … where the mouth opened
    pause_frames: int  # frames inside pauses
    pause_frames_at_rest: int  # … where the mouth was at rest
    phone_source: str  # how the phones were found (forced alignment / phone decoder / …)

    @property
    def bilabial_closed_fraction(self) -> float | None:
        return self.bilabials_closed / self.bilabials if self.bilabials else None

    @property
    def open_vowel_fraction(self) -> float | None:
        return self.open_vowels_open / self.open_vowels if self.open_vowels else None

    @property
    def pause_rest_fraction(self) -> float | None:
        return self.pause_frames_at_rest / self.pause_frames if self.pause_frames else None


def phone_checks(phones: Sequence[PhoneSegment], mouth_gap: np.ndarray, fps: float, portrait_gap: float,
                 phone_source: str = "") -> PhoneChecks:
    """Lips closed at bilabials, open at open vowels, at rest in pauses (see the thresholds)."""
    gap = np.asarray(mouth_gap, np.float64)
    n = len(gap)
    closed_thr = CLOSED_GAP
    open_thr = max(OPEN_GAP, portrait_gap + OPEN_ABOVE_PORTRAIT)
    rest_thr = max(CLOSED_GAP, portrait_gap + REST_ABOVE_PORTRAIT)
    counts = dict(bilabials=0, bilabials_closed=0, open_vowels=0, open_vowels_open=0,
                  pause_frames=0, pause_frames_at_rest=0)
    for ph in phones:
        name = ph.phone.upper()
        if name in BILABIALS or (name in OPEN_VOWELS and ph.end - ph.start >= MIN_OPEN_VOWEL_S):
            # Frames on screen while the phone sounds, widened by the alignment slack.
            first = int(math.floor(ph.start * fps)) - PHONE_TOLERANCE_FRAMES
            last = int(math.ceil(ph.end * fps)) - 1 + PHONE_TOLERANCE_FRAMES
            seg = gap[max(0, first):min(n, last + 1)]
            seg = seg[np.isfinite(seg)]
            if seg.size == 0:
                continue
            if name in BILABIALS:
                counts["bilabials"] += 1
                counts["bilabials_closed"] += int(seg.min() <= closed_thr)
            else:
                counts["open_vowels"] += 1
                counts["open_vowels_open"] += int(seg.max() >= open_thr)
        elif name == "SIL" and ph.end - ph.start >= MIN_PAUSE_S:
            first = int(math.ceil((ph.start + PAUSE_EDGE_S) * fps))
            last = int(math.floor((ph.end - PAUSE_EDGE_S) * fps)) - 1
            seg = gap[max(0, first):min(n, last + 1)]
            seg = seg[np.isfinite(seg)]
            counts["pause_frames"] += int(seg.size)
            counts["pause_frames_at_rest"] += int((seg <= rest_thr).sum())
    return PhoneChecks(phone_source=phone_source, **counts)
