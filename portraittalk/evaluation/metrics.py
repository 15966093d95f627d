"""Quality metrics for any talking-face video, measured from the decoded frames.

Everything here is measured the way a viewer sees the video: frames are decoded from the
file, the face is found again in every frame, the sound is read from the audio file (or
the video's own track). Nothing is taken from the renderer's internal state, so the same
numbers can be computed for videos made by other systems. Definitions, units and
thresholds are documented in docs/METRICS.md.

Layers:
  * pure functions on per-frame arrays (``speech_envelope``, ``av_offset``,
    ``phone_checks``, ``count_blinks``, ``landmark_jitter``, ``masked_ssim``, ``adfd``),
    testable without any video;
  * :class:`FaceTracker`: detect on the first frame, then re-fit the mesh in the previous
    frame's box, re-detect when that fails;
  * :func:`evaluate_video` (one pass over the frames) → :class:`VideoEvaluation`, with
    ``summary()``, ``to_dict()``, ``to_markdown_row()``;
  * :func:`compare` → rows for a table and a long-format DataFrame for one plot.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from ..analysis import face as fm
from ..contracts import SAME_PERSON_DISTANCE, Box, IdentityScores, PhoneSegment
from ..errors import InputError

ProgressFn = Callable[[str, float, str], None]

# -- thresholds (see docs/METRICS.md for why each value) ------------------------------------

# Soft same-person probability for ADFD's spatial term: 0.5 at the threshold, ~0.92 at 0.45.
IDENTITY_SOFTNESS = 0.06

CLOSED_GAP = 0.05  # inner-lip gap / mouth width at or below which the lips count as closed
OPEN_GAP = 0.12  # gap at or above which the mouth counts as open …
OPEN_ABOVE_PORTRAIT = 0.05  # … and at least this much more open than in the portrait
REST_ABOVE_PORTRAIT = 0.05  # in pauses: no more open than the portrait plus this
PHONE_TOLERANCE_FRAMES = 1  # a phone's frames are widened by this on each side (alignment slack)
MIN_OPEN_VOWEL_S = 0.05  # shorter vowels need not reach a full opening
MIN_PAUSE_S = 0.30  # a silence this long is a pause …
PAUSE_EDGE_S = 0.10  # … whose first/last 0.1 s may still be co-articulated

# Phones from the English recogniser; "acoustic" pseudo-phones (other languages, singing)
# only mark syllables, so checking lip closure against them would be meaningless.
TRUSTED_PHONE_METHODS = ("forced-alignment", "phone-decoder")
BILABIALS = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AO", "AW", "AY"})  # AH left out: pocketsphinx uses it for schwa

MAX_LAG_S = 0.6  # audio-visual offsets searched within ±0.6 s (±15 frames at 25 fps)
# ITU-R BT.1359 detectability thresholds: sound 45 ms before the picture, or 125 ms after it.
SYNC_WINDOW_S = (-0.125, 0.045)
HIGHPASS_WINDOW_S = 0.5  # mouth and envelope lose their slower-than-syllable trends first
LOCAL_SYNC_WINDOW_S = 2.0  # window of the per-frame lip-sync curve
ENVELOPE_RANGE_DB = 45.0  # the envelope maps [loudest − 45 dB, loudest] to [0, 1]

BLINK_START = 0.78  # eye opening below 78 % of the video's median opening starts a blink …
BLINK_END = 0.90  # … which ends once it is back above 90 %
MAX_BLINK_S = 0.5  # longer closures are eyes shut, not blinks

MIN_MOUTH_MOTION = 0.02  # lip-gap spread (5–95 %) below this: the mouth does not move

# Landmarks that move only with the head and have texture for optical flow: eye corners,
# nose tip, bridge and wings, the face's side edges (their depth gives yaw).
RIGID_LANDMARKS = (33, 133, 362, 263, 1, 6, 168, 98, 327, 234, 454)
# The head track blends optical flow (exact frame-to-frame motion) with the face mesh
# (no drift): p = 0.95·(p_prev + flow) + 0.05·mesh. The mesh fit alone shifts these points
# by up to ~3 % of the eye distance when only the mouth opens; at speech rates (~4 Hz)
# this blend passes ~5 % of that, while the flow carries the real head motion.
FLOW_WEIGHT = 0.95
MAX_FLOW_MESH_GAP = 0.15  # flow and mesh this far apart (× eye distance): the flow lost the point
JITTER_REF_PCT = 2.0  # ADFD's smoothness factor is exp(−jitter / 2 % of the eye-corner distance)

WORK_LONG_SIDE = 320  # background SSIM and flicker run on a grey copy this large
# The head (hair, ears, neck) around the face-mesh box, as fractions of the box's size.
HEAD_MARGIN = {"side": 0.5, "top": 0.6, "bottom": 0.5}
MIN_BACKGROUND_FRACTION = 0.05  # below this much background the background metrics are skipped


# -- pure metrics on per-frame arrays ------------------------------------------------------

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
    mouth = _fill_gaps(np.asarray(mouth, np.float64))
    env = np.asarray(envelope, np.float64)
    if mouth is None or min(len(mouth), len(env)) < 8:
        return None
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

    mouth = _fill_gaps(np.asarray(mouth, np.float64))
    n = min(len(envelope), len(mouth)) if mouth is not None else 0
    out = np.full(len(envelope), np.nan, np.float32)
    w = max(5, int(round(window_s * fps)) | 1)
    if n < w:
        return out
    env = np.asarray(envelope[:n], np.float64)
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


class HeadTracker:
    """Head-rigid points per frame (optical flow fused with the mesh) and the head pose.

    ``update(grey, landmarks)`` returns the fused points (k, 2) and their flow velocity
    since the previous frame (k, 2), each None/NaN where unknown. Pose is the rotation of
    the portrait's 3-D rigid points that best explains the fused 2-D points (orthographic
    camera), so (0, 0, 0) is the portrait's own pose.
    """

    def __init__(self, portrait_landmarks: np.ndarray) -> None:
        ref = np.asarray(portrait_landmarks, np.float64)[list(RIGID_LANDMARKS)]
        self._ref = ref - ref.mean(0)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # (grey, fused points)

    def reset(self) -> None:
        """Forget the previous frame (after a cut or a re-detection)."""
        self._prev = None

    def update(self, grey: np.ndarray, landmarks: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
        velocity = np.full((len(RIGID_LANDMARKS), 2), np.nan, np.float32)
        if landmarks is None:
            self._prev = None
            return None, velocity
        mesh = np.asarray(landmarks, np.float32)[list(RIGID_LANDMARKS), :2]
        fused = mesh
        if self._prev is not None:
            prev_grey, prev_pts = self._prev
            nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev_grey, grey, prev_pts.reshape(-1, 1, 2), None,
                                                      winSize=(21, 21), maxLevel=3)
            nxt = nxt.reshape(-1, 2)
            # A point the flow lost, or that wandered far from the mesh, restarts from the mesh.
            eye_distance = float(np.linalg.norm(mesh[3] - mesh[0])) + 1e-6
            ok = (status.ravel() == 1) & (np.linalg.norm(nxt - mesh, axis=1) < MAX_FLOW_MESH_GAP * eye_distance)
            velocity[ok] = nxt[ok] - prev_pts[ok]
            fused = np.where(ok[:, None], FLOW_WEIGHT * nxt + (1 - FLOW_WEIGHT) * mesh, mesh).astype(np.float32)
        self._prev = (grey, fused)
        return fused, velocity

    def pose(self, points: np.ndarray) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees relative to the portrait."""
        from scipy.spatial.transform import Rotation

        x = np.asarray(points, np.float64)
        x = x - x.mean(0)
        m = np.linalg.lstsq(self._ref, x, rcond=None)[0].T  # 2×3 scaled orthographic projection
        r1 = m[0] / (np.linalg.norm(m[0]) + 1e-12)
        r2 = m[1] - r1 * (r1 @ m[1])
        r2 /= np.linalg.norm(r2) + 1e-12
        pitch, yaw, roll = Rotation.from_matrix(np.stack([r1, r2, np.cross(r1, r2)])).as_euler("xyz", degrees=True)
        return float(yaw), float(pitch), float(roll)


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


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity (Wang et al. 2004; 11×11 Gaussian, σ = 1.5) of two grey images."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the pixels where ``mask`` is true."""
    return float(ssim_map(a, b)[mask].mean()) if mask.any() else float("nan")


def head_mask(shape: tuple[int, int], boxes: Iterable[Box | None], scale: float = 1.0) -> np.ndarray:
    """True on the head (face-mesh box widened for hair, ears and neck) of any given box."""
    mask = np.zeros(shape, bool)
    h, w = shape
    for box in boxes:
        if box is None:
            continue
        x0, y0, x1, y1 = (v * scale for v in box)
        bw, bh = x1 - x0, y1 - y0
        xa = int(max(0, math.floor(x0 - HEAD_MARGIN["side"] * bw)))
        xb = int(min(w, math.ceil(x1 + HEAD_MARGIN["side"] * bw)))
        ya = int(max(0, math.floor(y0 - HEAD_MARGIN["top"] * bh)))
        yb = int(min(h, math.ceil(y1 + HEAD_MARGIN["bottom"] * bh)))
        mask[ya:yb, xa:xb] = True
    return mask


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


def _fill_gaps(x: np.ndarray) -> np.ndarray | None:
    """Linear interpolation over NaNs (frames without a face); None if over half are missing."""
    ok = np.isfinite(x)
    if ok.sum() < max(2, len(x) / 2):
        return None
    if ok.all():
        return x
    idx = np.arange(len(x))
    return np.interp(idx, idx[ok], x[ok])


# -- face tracking -------------------------------------------------------------------------

def landmark_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> Box:
    """Box around the mesh, clipped to the frame (the same box FaceAnalysis uses)."""
    h, w = shape[:2]
    x0, y0 = np.floor(landmarks[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(landmarks[:, :2].max(0)).astype(int)
    return int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1))


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Face mesh per frame: re-fit in the previous frame's box, re-detect when that fails.

    A re-fit that lands somewhere else (box overlap below 0.3) also counts as a failure, so
    a cut to another shot re-detects instead of following a wrong face.
    """

    MIN_IOU = 0.3

    def __init__(self, analyzer: "fm.FaceAnalyzer") -> None:
        self.analyzer = analyzer
        self.detections = 0  # full detections run (the first frame and every re-detection)
        self.detected_last = False  # whether the last frame's face came from a fresh detection
        self._prev: Box | None = None

    def update(self, rgb: np.ndarray) -> tuple[np.ndarray | None, Box | None]:
        lm = None
        if self._prev is not None:
            lm = self.analyzer.mesh_in_box(rgb, self._prev)
            if lm is not None and box_iou(landmark_box(lm, rgb.shape), self._prev) < self.MIN_IOU:
                lm = None
        self.detected_last = lm is None
        if lm is None:
            lm = self._detect(rgb)
        self._prev = landmark_box(lm, rgb.shape) if lm is not None else None
        return lm, self._prev

    def _detect(self, rgb: np.ndarray) -> np.ndarray | None:
        self.detections += 1
        faces = self.analyzer.detect_faces(rgb)
        lm = self.analyzer.mesh_in_box(rgb, faces[0].box) if faces else None
        if lm is None:
            # Close-ups can defeat the detector while the mesh still fits the whole frame.
            h, w = rgb.shape[:2]
            lm = self.analyzer.mesh_in_box(rgb, (0, 0, w, h))
        # Re-fit in the mesh's own box until the box settles, as it does on tracked frames,
        # so a (re-)detection does not show up as a jump in the measurements.
        for _ in range(3):
            if lm is None:
                break
            box = landmark_box(lm, rgb.shape)
            refit = self.analyzer.mesh_in_box(rgb, box)
            if refit is None:
                break
            lm = refit
            if box_iou(landmark_box(lm, rgb.shape), box) > 0.98:
                break
        return lm


# -- the report ----------------------------------------------------------------------------

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
            lines.append(f"  {label.ljust(width)}  {_with_unit(s.get(key), spec, unit)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100.0 * x, 1)


def _with_unit(v: Any, spec: str, unit: str) -> str:
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


# -- evaluation ----------------------------------------------------------------------------

class _FrameMeasures:
    """Everything measured frame by frame, in one pass over the decoded video."""

    SERIES = ("mouth_gap", "eye_open", "yaw", "pitch", "roll", "ssim", "flicker")

    def __init__(self, analyzer: "fm.FaceAnalyzer", portrait_rgb: np.ndarray, portrait_face,
                 video_size: tuple[int, int], compare_background: bool) -> None:
        self.tracker = FaceTracker(analyzer)
        self.head = HeadTracker(portrait_face.landmarks)
        self.portrait_box = portrait_face.box
        self.scale = min(1.0, WORK_LONG_SIDE / max(video_size))
        self.work_size = (max(8, round(video_size[0] * self.scale)), max(8, round(video_size[1] * self.scale)))
        self.portrait_grey = self._small(cv2.cvtColor(portrait_rgb, cv2.COLOR_RGB2GRAY)) if compare_background else None
        self.found: list[bool] = []
        self.series: dict[str, list[float]] = {k: [] for k in self.SERIES}
        self.velocities: list[np.ndarray] = []
        self.eye_distances: list[float] = []
        self._history: list[tuple[np.ndarray, np.ndarray]] = []  # last two (small grey, background mask)
        self.face_s = self.background_s = 0.0

    def _small(self, grey: np.ndarray) -> np.ndarray:
        return cv2.resize(grey, self.work_size, interpolation=cv2.INTER_AREA) if self.scale < 1 else grey

    def add(self, frame: np.ndarray) -> Box | None:
        """Measure one frame; returns its face box (None when no face)."""
        t0 = time.perf_counter()
        lm, box = self.tracker.update(frame)
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if self.tracker.detected_last:
            self.head.reset()  # the face may have jumped: no flow across the gap
        points, velocity = self.head.update(grey, lm)
        self.velocities.append(velocity)
        self.found.append(lm is not None)
        if lm is not None:
            yaw, pitch, roll = self.head.pose(points)
            values = {"mouth_gap": fm.mouth_gap_ratio(lm), "eye_open": fm.eye_open_ratio(lm),
                      "yaw": yaw, "pitch": pitch, "roll": roll}
            self.eye_distances.append(float(np.linalg.norm(lm[fm.LEFT_EYE_OUTER, :2] - lm[fm.RIGHT_EYE_OUTER, :2])))
        else:
            values = dict.fromkeys(("mouth_gap", "eye_open", "yaw", "pitch", "roll"), np.nan)
        t1 = time.perf_counter()
        values["ssim"], values["flicker"] = self._background(self._small(grey), box)
        for k, v in values.items():
            self.series[k].append(v)
        self.face_s += t1 - t0
        self.background_s += time.perf_counter() - t1
        return box

    def _background(self, grey: np.ndarray, box: Box | None) -> tuple[float, float]:
        """SSIM against the portrait and flicker, outside the head here and in the portrait."""
        background = ~head_mask(grey.shape, [box, self.portrait_box], self.scale)
        ssim = flicker = np.nan
        if self.portrait_grey is not None and background.mean() >= MIN_BACKGROUND_FRACTION:
            ssim = masked_ssim(grey, self.portrait_grey, background)
        if len(self._history) == 2:
            (g2, m2), (g1, m1) = self._history
            both = background & m1 & m2
            if both.mean() >= MIN_BACKGROUND_FRACTION:
                second = grey.astype(np.float32) - 2 * g1.astype(np.float32) + g2.astype(np.float32)
                flicker = float(np.abs(second)[both].mean())
        self._history = (self._history + [(grey, background)])[-2:]
        return ssim, flicker


class VideoEvaluator:
    """Holds the face mesh and the identity model; ``evaluate`` may be called many times.

    Pass the pipeline's own models (``PortraitTalkPipeline().face_analyzer`` and
    ``.identity_scorer``) to share them; otherwise they load on first use.
    """

    def __init__(self, analyzer: "fm.FaceAnalyzer | None" = None, scorer: Any = None) -> None:
        self._analyzer = analyzer
        self._scorer = scorer

    @property
    def analyzer(self) -> "fm.FaceAnalyzer":
        if self._analyzer is None:
            self._analyzer = fm.FaceAnalyzer()
        return self._analyzer

    @property
    def scorer(self):
        if self._scorer is None:
            from ..scoring.identity import IdentityScorer
            self._scorer = IdentityScorer()
        return self._scorer

    def evaluate(self, video: str | Path, image: str | Path | bytes, audio: str | Path | None = None,
                 transcript: str | None = None, progress: ProgressFn | None = None) -> VideoEvaluation:
        from ..io.video import probe_video, read_frames
        from ..io.image import load_portrait

        report = progress or (lambda stage, frac, msg: None)
        timings: dict[str, float] = {}
        notes: list[str] = []
        t_all = time.perf_counter()
        video = Path(video)
        if not video.is_file():
            raise InputError(f"The video file '{video.name}' was not found; check the path.")
        try:
            info = probe_video(video)
        except ValueError:
            raise InputError(f"'{video.name}' is not a video PortraitTalk can read; "
                             "please use an MP4, MOV, WebM or AVI file.") from None
        if info.n_frames < 3 or info.fps <= 0:
            raise InputError(f"'{video.name}' has only {info.n_frames} frame(s), so it is a still image or a broken "
                             "video; please choose a video at least a fraction of a second long.")
        fps = info.fps

        report("portrait", 0.0, "Reading the portrait")
        t0 = time.perf_counter()
        # Capped to the video's long side: a video made at that size from this portrait
        # then has exactly the portrait's pixels outside the head.
        portrait = load_portrait(image, max_size=max(info.width, info.height))
        face = self.analyzer.analyze(portrait.rgb)
        reference = self.scorer.reference([portrait.rgb], [face.box])
        portrait_gap = fm.mouth_gap_ratio(face.landmarks)
        timings["portrait"] = time.perf_counter() - t0
        same_size = portrait.size == (info.width, info.height)
        if not same_size:
            notes.append(f"The video is {info.width}×{info.height} but the portrait is {portrait.size[0]}×"
                         f"{portrait.size[1]}, so the background was not compared with the portrait.")

        measures = _FrameMeasures(self.analyzer, portrait.rgb, face, (info.width, info.height), same_size)
        identity_worker = _IdentityWorker(self.scorer.stream(reference))
        expected = max(1, info.n_frames)
        try:
            for i, frame in enumerate(read_frames(video)):
                identity_worker.add(frame, measures.add(frame))
                if i % 10 == 0:
                    report("frames", 0.05 + 0.8 * min(1.0, (i + 1) / expected),
                           f"Measuring frame {i + 1} of {expected}")
        except BaseException:
            identity_worker.abandon()
            raise
        t0 = time.perf_counter()
        identity = identity_worker.finish()
        timings["face_tracking"] = measures.face_s
        timings["background"] = measures.background_s
        timings["identity_scoring"] = identity_worker.busy_s  # in a thread beside the frame loop
        timings["identity_wait_after_frames"] = time.perf_counter() - t0

        n = len(measures.found)
        if n == 0:
            raise InputError(f"No frames could be decoded from '{video.name}'; please check the file plays.")
        found = np.array(measures.found, bool)
        if not found.any():
            raise InputError(f"No face was found in any frame of '{video.name}'; "
                             "please use a video that shows the person's face.")
        if found.mean() < 0.9:
            notes.append(f"The face was found in only {100 * found.mean():.0f} % of the frames.")
        if measures.tracker.detections > 1:
            notes.append(f"The face was re-detected {measures.tracker.detections - 1} time(s) after tracking lost it.")
        curves = {k: np.array(v, np.float32) for k, v in measures.series.items()}
        curves["face_found"] = found.astype(np.float32)
        curves["identity_cosine"] = np.array([f.cosine for f in identity.frames], np.float32)
        curves["identity_distance"] = np.array([f.distance for f in identity.frames], np.float32)

        # Sound: its envelope for the offset, its phones for the phone-level checks.
        report("audio", 0.88, "Analysing the sound")
        t0 = time.perf_counter()
        av, checks, envelope = self._lip_sync(video, audio, transcript, fps, n, curves["mouth_gap"],
                                              portrait_gap, notes)
        timings["speech_analysis"] = time.perf_counter() - t0
        curves["speech_envelope"] = envelope
        curves["lip_sync_local"] = local_sync(curves["mouth_gap"], envelope, fps)

        jitter = landmark_jitter(np.stack(measures.velocities), float(np.median(measures.eye_distances)))
        dynamics = _dynamics(curves, fps, jitter, portrait_gap)
        background = _background(curves, same_size)
        score = adfd(curves["identity_distance"], found, av, jitter)
        timings["total"] = time.perf_counter() - t_all
        timings = {k: round(v, 3) for k, v in timings.items()}
        timings["realtime_factor"] = round(timings["total"] / max(n / fps, 1e-6), 3)
        report("done", 1.0, "Done")
        return VideoEvaluation(video=video.name, portrait=portrait.source_name, fps=fps, n_frames=n,
                               size=(info.width, info.height), identity=identity, curves=curves, av=av,
                               phones=checks, adfd=score, dynamics=dynamics, background=background,
                               timings_s=timings, notes=notes)

    def _lip_sync(self, video: Path, audio: str | Path | None, transcript: str | None, fps: float, n: int,
                  mouth_gap: np.ndarray, portrait_gap: float, notes: list[str]):
        from ..io.audio import load_audio

        if audio is not None:
            clip = load_audio(audio)
        else:
            try:
                clip = load_audio(video)
            except InputError:
                notes.append("The video has no sound and no audio file was given, so lip sync was not measured.")
                return None, None, np.zeros(n, np.float32)
        envelope = speech_envelope(clip.samples, clip.sample_rate, fps, n)
        if abs(clip.duration_s - n / fps) > 0.5:
            notes.append(f"The sound lasts {clip.duration_s:.1f} s but the video {n / fps:.1f} s; "
                         "both were compared from their start.")
        av = av_offset(mouth_gap, envelope, fps)
        if av is None:
            notes.append("The mouth does not move (or the sound is silent), so no audio-visual offset exists.")
        checks = None
        try:
            from ..analysis.speech import analyze_speech
            speech = analyze_speech(clip, fps, transcript)
            if speech.method in TRUSTED_PHONE_METHODS:
                checks = phone_checks(speech.phones, mouth_gap, fps, portrait_gap, speech.method)
            else:
                notes.append("The speech does not sound like English, so the phone-level lip checks were skipped.")
        except ImportError:
            notes.append("The speech recogniser is unavailable, so the phone-level checks were skipped.")
        return av, checks, envelope


class _IdentityWorker:
    """Scores frames in a background thread (the descriptor network releases the GIL), so
    identity runs beside face tracking; frames wait in a short queue."""

    def __init__(self, stream) -> None:
        import queue
        import threading

        self._stream = stream
        self._jobs: "queue.Queue" = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is not None:
                continue
            t0 = time.perf_counter()
            try:
                self._stream.add(*job)
            except BaseException as err:  # re-raised in the caller's thread by finish()
                self._error = err
            self.busy_s += time.perf_counter() - t0

    def add(self, frame: np.ndarray, box: Box | None) -> None:
        self._jobs.put((frame, box))

    def abandon(self) -> None:
        """Stop the thread without waiting for its result (the frame loop failed)."""
        self._error = self._error or RuntimeError("abandoned")
        self._jobs.put(None)

    def finish(self) -> IdentityScores:
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._stream.finish()


def _dynamics(curves: Mapping[str, np.ndarray], fps: float, jitter: float | None, portrait_gap: float) -> dict[str, Any]:
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
        "jitter_pct": _r(jitter, 3),
        # 5–95 % spread of the lip gap: how much the mouth moves at all.
        "mouth_motion": spread(gap),
        "portrait_mouth_gap": round(float(portrait_gap), 4),
    }


def _background(curves: Mapping[str, np.ndarray], compared: bool) -> dict[str, Any]:
    ssim = curves["ssim"][np.isfinite(curves["ssim"])]
    flick = curves["flicker"][np.isfinite(curves["flicker"])]
    return {
        "compared_with_portrait": bool(compared and ssim.size),
        "ssim_mean": _r(float(ssim.mean())) if ssim.size else None,
        "ssim_min": _r(float(ssim.min())) if ssim.size else None,
        "flicker": _r(float(flick.mean()), 3) if flick.size else None,
        "flicker_max": _r(float(flick.max()), 3) if flick.size else None,
    }


_DEFAULT: VideoEvaluator | None = None


def evaluate_video(video: str | Path, image: str | Path | bytes, audio: str | Path | None = None,
                   transcript: str | None = None, *, evaluator: VideoEvaluator | None = None,
                   progress: ProgressFn | None = None) -> VideoEvaluation:
    """Measure one video against the portrait it should show (see :class:`VideoEvaluation`).

    ``audio`` defaults to the video's own sound track; ``transcript`` (English) makes the
    phone-level checks use forced alignment. Models load once per process and are reused.
    """
    global _DEFAULT
    if evaluator is None:
        if _DEFAULT is None:
            _DEFAULT = VideoEvaluator()
        evaluator = _DEFAULT
    return evaluator.evaluate(video, image, audio, transcript, progress)


# -- comparison ----------------------------------------------------------------------------

# (summary key, label, unit, which way is better: "higher" | "lower" | "zero" | None)
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
COMPARE_HEADERS = ("Metric", "A", "B", "Better")


def compare(report_a: VideoEvaluation | Mapping[str, Any], report_b: VideoEvaluation | Mapping[str, Any],
            names: tuple[str, str] | None = None):
    """Two evaluations side by side: (rows for a table, long-format DataFrame for one plot).

    ``rows``: one ``[metric, value A, value B, better]`` list per line of COMPARE_ROWS
    (headers in COMPARE_HEADERS), where ``better`` is the better video's name, "same", or ""
    when the metric has no better direction or a value is missing.
    The DataFrame has columns ``video, metric, frame, time_s, value, series``: each video's
    per-frame identity similarity and local lip-sync correlation (frames without a value
    left out), ready for ``gr.LinePlot(df, x="time_s", y="value", color="series")``.
    Reports may be :class:`VideoEvaluation` objects or their ``to_dict()`` JSON.
    """
    import pandas as pd

    a, b = _as_report(report_a), _as_report(report_b)
    if names is None:
        names = (a["summary"].get("video") or "A", b["summary"].get("video") or "B")
        if names[0] == names[1]:
            names = (f"A: {names[0]}", f"B: {names[1]}")
    rows = []
    for key, label, unit, better, spec in COMPARE_ROWS:
        va, vb = a["summary"].get(key), b["summary"].get(key)
        rows.append([label, _with_unit(va, spec, unit), _with_unit(vb, spec, unit), _better(va, vb, better, names)])
    frames = []
    for name, rep in zip(names, (a, b)):
        fps = float(rep["video"]["fps"]) or 25.0
        for metric, key in (("identity (cosine)", "identity_cosine"), ("lip sync (local r)", "lip_sync_local")):
            values = np.array([np.nan if v is None else v for v in rep["curves"].get(key, [])], np.float64)
            idx = np.arange(len(values))
            frames.append(pd.DataFrame({"video": name, "metric": metric, "frame": idx, "time_s": idx / fps,
                                        "value": values, "series": f"{name} · {metric}"}))
    # Frames without a value (no sound in the window, no face) are left out: NaN is not JSON.
    curves = pd.concat(frames, ignore_index=True).dropna(subset=["value"]).reset_index(drop=True)
    return rows, curves


def _as_report(r: VideoEvaluation | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(r, VideoEvaluation):
        return r.to_dict()
    if not isinstance(r, Mapping) or "summary" not in r or "curves" not in r:
        raise InputError("A comparison needs two evaluation reports; please evaluate both videos first.")
    return r


def _better(va: Any, vb: Any, direction: str | None, names: tuple[str, str]) -> str:
    if direction is None or va is None or vb is None or isinstance(va, str):
        return ""
    if direction == "zero":
        va, vb = -abs(va), -abs(vb)
    elif direction == "lower":
        va, vb = -va, -vb
    if math.isclose(float(va), float(vb), rel_tol=1e-3, abs_tol=1e-9):
        return "same"
    return names[0] if va > vb else names[1]
