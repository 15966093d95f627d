"""SpeechAnalysis → MotionTrack: coarticulated mouth shapes plus blinks, head motion and gaze.

Mouth (channels of ``visemes.MOUTH_CHANNELS``), computed on a 10 ms grid, then pooled to
video frames (frame *i* is on screen from ``i / fps`` to ``(i + 1) / fps``):

1. Every phone becomes a viseme target (diphthongs glide between two targets), shifted
   ``ANTICIPATION_S`` earlier because the lips move before the sound is heard.
2. Targets are blended with Cohen–Massaro-style dominance functions: a phone's weight is
   its dominance inside its interval and decays exponentially outside it, faster on the
   carry-over side than on the anticipatory side. Each mouth channel is the
   dominance-weighted mean of the targets, so shapes flow into each other without steps,
   and weak consonants (HH, T, K…) take their neighbours' rounding and jaw.
3. Lip contacts are hard constraints: P/B/M add a closure envelope (lip_close = 1 over the
   phone, 30/40 ms ramps) and F/V a lower-lip-tuck envelope; when pooling to video frames
   these two channels take the *maximum* over the frame, so a 30 ms closure is never lost
   between frames. Other channels take the mean.
4. The jaw follows loudness: viseme jaw × (0.45 + 0.55 × syllable loudness), blended with
   an acoustic jaw (energy × voicing envelope): 20 % in phone modes, 55 % when
   ``method == "acoustic"`` (non-English, singing), whose pseudo-phones put closures and
   near-closures at the energy dips between syllables. While a phone is spoken the jaw stays
   at least ``SPEECH_JAW_FLOOR`` open, so consonants part the lips visibly (Rhubarb's "B").
5. Pauses (speech == 0 for ≥ ``PAUSE_S``) gate every mouth channel to rest within
   ``PAUSE_FADE_S``; the gate reopens ``PAUSE_FADE_S`` before the speech resumes.

Life: blinks every 2–6 s / blink_rate (fast close, slower open, now and then a double
blink); head yaw/pitch/roll from slow drift, voice pitch (head_pitch rises with the
voice), loud syllable onsets (small downward nods, small turns) and a breathing sway in
silence, all low-passed (Gaussian, σ = 80 ms) and soft-bounded to ±4°, then scaled by
head_motion and clipped to ±5°; gaze saccades (a jump within ~40 ms, hold 0.8–3 s, half
of them back to the camera). Gaze and a small prosodic brow raise scale with head_motion
too, so head_motion = 0 gives a still head and a steady gaze (blinks stay). A seeded
``numpy.random.Generator`` makes every track reproducible; the mouth depends on the
audio only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from ..contracts import MotionTrack, SpeechAnalysis
from ..errors import InputError
from .visemes import DIPHTHONGS, MOUTH_CHANNELS, SILENCE, dominance, normalize_phone, viseme_target

GRID_S = 0.01  # mouth shapes are blended at 100 Hz before pooling to the video frame rate
ANTICIPATION_S = 0.04
ANTICIPATORY_DECAY_S = 0.07  # how far a phone's shape reaches into the phones before it
CARRYOVER_DECAY_S = 0.045  # … and after it
CLOSURE_RAMP_IN_S, CLOSURE_RAMP_OUT_S = 0.03, 0.04
# Lip contact (closure, lower-lip tuck) is all-or-nothing: it spreads to neighbours over half the
# distance of jaw and lip shape, so lips don't drift shut long before a P/B/M.
CONTACT_REACH = 0.5
# While a phone is spoken the lips stay at least this far apart (teeth-together consonants part
# the lips too); smaller jaw openings are lost in the rendered lips, which then look sealed.
SPEECH_JAW_FLOOR = 0.18
_CONTACT_CHANNELS = ("lip_close", "lower_lip_tuck")
PAUSE_S = 0.3
PAUSE_FADE_S = 0.1
MAX_HEAD_DEG = 4.0  # soft bound of the generated pose at head_motion = 1
MAX_POSE_DEG = 5.0  # hard bound after scaling (MotionTrack: "small (±5)")
EXPRESSION_RAMP_S = 0.5
EXPRESSION_KEYS = ("smile", "brow_raise")

# Channels whose targets a lip-neutral consonant hardly constrains (so vowel rounding spreads
# across it, as in "spoon"), and the share of the consonant's dominance it keeps on them.
_LIP_SHAPE_CHANNELS = ("mouth_wide", "lip_round")
_LIP_NEUTRAL = frozenset({"T", "D", "N", "K", "G", "NG", "HH", "S", "Z", "Y", "L", "TH", "DH"})
_LIP_NEUTRAL_SHARE = 0.3
# Tongue-tip consonants need a nearly closed jaw (S above all), so on the jaw they hold their own
# against the vowels even though they leave the lips free; velars and HH much less.
_JAW_DOMINANCE = {"S": 1.4, "Z": 1.4, "SH": 1.2, "ZH": 1.2, "CH": 1.2, "JH": 1.2, "T": 1.0, "D": 1.0, "N": 0.9,
                  "TH": 1.0, "DH": 1.0, "L": 0.7, "K": 0.6, "G": 0.6, "NG": 0.6, "Y": 0.8, "HH": 0.15}


def build_motion_track(
    speech: SpeechAnalysis,
    n_frames: int,
    fps: float,
    seed: int = 0,
    audio_strength: float = 1.0,
    head_motion: float = 1.0,
    blink_rate: float = 1.0,
    expression: dict[str, float] | None = None,
) -> MotionTrack:
    """Per-frame face controls for ``n_frames`` video frames at ``fps``."""
    n_frames, fps = _check_grid(n_frames, fps)
    audio_strength = _check_amount("lip-sync strength", audio_strength, 0.0, 2.0)
    head_motion = _check_amount("head motion", head_motion, 0.0, 2.0)
    blink_rate = _check_amount("blink rate", blink_rate, 0.0, 5.0)
    offsets = _check_expression(expression)
    rng = np.random.default_rng(seed)

    feats = _features_on_grid(speech, n_frames, fps)
    track = MotionTrack.still(n_frames, fps)

    mouth = mouth_shapes(speech, feats, n_frames, fps)
    gate = pause_gate(feats.speech, fps)
    for ch in MOUTH_CHANNELS:
        lo = -1.0 if ch == "mouth_wide" else 0.0
        setattr(track, ch, np.clip(mouth[ch] * gate * audio_strength, lo, 1.0).astype(np.float32))

    track.blink = blinks(n_frames, fps, blink_rate, rng)
    yaw, pitch, roll, brow = head_and_brows(feats, fps, rng)
    # The portrait's own pose is the neutral one: motion is centred on it over the clip and
    # eases in from it, so the first frame is the photo and the head never settles off-axis.
    ease = np.clip((np.arange(n_frames) / fps) / 0.5, 0.0, 1.0)
    ease = ease * ease * (3 - 2 * ease)
    yaw, pitch, roll = ((x - x.mean()) * ease for x in (yaw, pitch, roll))
    track.head_yaw = np.clip(yaw * head_motion, -MAX_POSE_DEG, MAX_POSE_DEG).astype(np.float32)
    track.head_pitch = np.clip(pitch * head_motion, -MAX_POSE_DEG, MAX_POSE_DEG).astype(np.float32)
    track.head_roll = np.clip(roll * head_motion, -MAX_POSE_DEG, MAX_POSE_DEG).astype(np.float32)
    gx, gy = gaze(n_frames, fps, rng)
    track.gaze_x = (gx * min(head_motion, 1.0)).astype(np.float32)
    track.gaze_y = (gy * min(head_motion, 1.0)).astype(np.float32)

    ramp = np.clip((np.arange(n_frames) / fps) / EXPRESSION_RAMP_S, 0.0, 1.0)
    # a pucker (OO, W) pulls the corners in: the smile yields to rounding, lip contact is untouched
    track.smile = np.clip(offsets["smile"] * ramp * (1.0 - 0.6 * track.lip_round), -1, 1).astype(np.float32)
    track.brow_raise = np.clip(offsets["brow_raise"] * ramp + brow * head_motion, -1, 1).astype(np.float32)
    return track


def expected_mouth_opening(track: MotionTrack) -> np.ndarray:
    """Per-frame expected lip gap 0…1: jaw_open × (1 − lip_close) × (1 − 0.6 × lower_lip_tuck)."""
    gap = track.jaw_open * (1.0 - track.lip_close) * (1.0 - 0.6 * track.lower_lip_tuck)
    return np.clip(gap, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------------
def _check_grid(n_frames: int, fps: float) -> tuple[int, float]:
    if not np.isfinite(fps) or fps <= 0:
        raise InputError("The frame rate must be a positive number such as 25; please choose another frame rate.")
    if int(n_frames) < 1:
        raise InputError("The video needs at least one frame; please use a longer audio clip.")
    return int(n_frames), float(fps)


def _check_amount(name: str, value: float, lo: float, hi: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < lo or value > hi:
        raise InputError(f"The {name} must be between {lo:g} and {hi:g}; please choose a value in that range.")
    return value


def _check_expression(expression: dict[str, float] | None) -> dict[str, float]:
    offsets = {k: 0.0 for k in EXPRESSION_KEYS}
    for key, value in (expression or {}).items():
        if key not in offsets:
            raise InputError(f"The expression '{key}' is not supported; please use smile or brow_raise.")
        offsets[key] = _check_amount(key.replace("_", " "), value, -1.0, 1.0)
    return offsets


# ------------------------------------------------------------------------------------------------
# speech features on the video grid
# ------------------------------------------------------------------------------------------------
@dataclass
class GridFeatures:
    """The speech analysis on the video's frame grid, each (n_frames,) float64."""

    energy: np.ndarray
    voicing: np.ndarray
    pitch: np.ndarray
    speech: np.ndarray  # 0/1 voice activity


def _features_on_grid(speech: SpeechAnalysis, n_frames: int, fps: float) -> GridFeatures:
    """The analysis arrays, resampled by time when the video grid differs from the analysis grid."""
    t_out = (np.arange(n_frames) + 0.5) / fps

    def on_grid(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        if len(a) == n_frames and math.isclose(speech.fps, fps):
            return a.copy()
        if len(a) == 0:
            return np.zeros(n_frames)
        return np.interp(t_out, (np.arange(len(a)) + 0.5) / speech.fps, a)

    return GridFeatures(energy=on_grid(speech.energy), voicing=on_grid(speech.voicing), pitch=on_grid(speech.pitch),
                        speech=(on_grid(speech.speech) >= 0.5).astype(np.float64))


# ------------------------------------------------------------------------------------------------
# mouth
# ------------------------------------------------------------------------------------------------
def _expand_phones(speech: SpeechAnalysis) -> list[tuple[str, float, float]]:
    """(phone, start, end) shifted by the anticipation, diphthongs split into their two vowels."""
    out = []
    for p in speech.phones:
        phone = normalize_phone(p.phone)
        a, b = p.start - ANTICIPATION_S, p.end - ANTICIPATION_S
        if b <= a:
            continue
        if phone in DIPHTHONGS:
            first, second, share = DIPHTHONGS[phone]
            mid = a + share * (b - a)
            out += [(first, a, mid), (second, mid, b)]
        else:
            out.append((phone, a, b))
    return out


def _phone_dominance(phone: str, channel: str, duration: float) -> float:
    if phone == SILENCE:
        # a stop gap the decoder calls silence is weak; a real pause holds the mouth at rest
        return float(np.interp(duration, [0.05, 0.3], [0.3, 1.5]))
    if channel == "jaw_open" and phone in _JAW_DOMINANCE:
        return _JAW_DOMINANCE[phone]
    d = dominance(phone)
    if channel in _LIP_SHAPE_CHANNELS and phone in _LIP_NEUTRAL:
        d *= _LIP_NEUTRAL_SHARE
    return d


def _blend_targets(segments: list[tuple[str, float, float]], t: np.ndarray) -> dict[str, np.ndarray]:
    """Dominance-weighted mean of the viseme targets at times ``t``."""
    num = {ch: np.zeros(len(t)) for ch in MOUTH_CHANNELS}
    den = {ch: np.full(len(t), 1e-6) for ch in MOUTH_CHANNELS}  # empty stretches fall to rest
    reach = 8 * ANTICIPATORY_DECAY_S
    for phone, a, b in segments:
        lo, hi = np.searchsorted(t, a - reach), np.searchsorted(t, b + reach)
        if hi <= lo:
            continue
        tt = t[lo:hi]
        dist_before = np.clip(a - tt, 0, None) / ANTICIPATORY_DECAY_S
        dist_after = np.clip(tt - b, 0, None) / CARRYOVER_DECAY_S
        shape = np.exp(-(dist_before + dist_after))
        contact_shape = shape ** (1.0 / CONTACT_REACH)
        target = viseme_target(phone)
        for ch in MOUTH_CHANNELS:
            w = _phone_dominance(phone, ch, b - a) * (contact_shape if ch in _CONTACT_CHANNELS else shape)
            num[ch][lo:hi] += w * target[ch]
            den[ch][lo:hi] += w
    return {ch: num[ch] / den[ch] for ch in MOUTH_CHANNELS}


def _contact_envelope(segments: list[tuple[str, float, float]], phones: tuple[str, ...], t: np.ndarray) -> np.ndarray:
    """1 over each listed phone, linear ramps before/after: the lips must get there however short it is."""
    env = np.zeros(len(t))
    for phone, a, b in segments:
        if phone not in phones:
            continue
        rise = np.clip((t - (a - CLOSURE_RAMP_IN_S)) / CLOSURE_RAMP_IN_S, 0, 1)
        fall = np.clip(((b + CLOSURE_RAMP_OUT_S) - t) / CLOSURE_RAMP_OUT_S, 0, 1)
        env = np.maximum(env, np.minimum(rise, fall))
    return env


def mouth_shapes(speech: SpeechAnalysis, feats: GridFeatures, n_frames: int,
                 fps: float) -> dict[str, np.ndarray]:
    """Mouth channels per video frame, before the pause gate and audio_strength."""
    duration = n_frames / fps
    t = np.arange(0.0, duration, GRID_S)
    segments = _expand_phones(speech)
    fine = _blend_targets(segments, t)

    # loudness on the fine grid: a syllable's loudness (its loudest nearby frame) scales its opening
    t_frames = (np.arange(n_frames) + 0.5) / fps
    # the shapes lead the sound by ANTICIPATION_S, so they scale with the loudness that follows
    energy = np.interp(t + ANTICIPATION_S, t_frames, feats.energy * feats.speech)
    voicing = np.interp(t + ANTICIPATION_S, t_frames, feats.voicing)
    syllable_loudness = maximum_filter1d(energy, size=max(1, int(round(0.12 / GRID_S))))
    acoustic_jaw = gaussian_filter1d(energy * (0.35 + 0.65 * voicing), 2.0)
    acoustic_share = 0.55 if speech.method == "acoustic" else 0.2
    jaw = fine["jaw_open"] * (0.45 + 0.55 * syllable_loudness)
    jaw = (1 - acoustic_share) * jaw + acoustic_share * np.clip(1.1 * acoustic_jaw, 0, 1)
    # voice activity counts too: words the recogniser missed still part the lips
    spoken = np.interp(t + ANTICIPATION_S, t_frames, feats.speech)
    for phone, a, b in segments:
        if phone != SILENCE:
            spoken[(t >= a) & (t < b)] = 1.0
    jaw = np.maximum(jaw, SPEECH_JAW_FLOOR * gaussian_filter1d(spoken, 2.0))

    closure = _contact_envelope(segments, ("P", "B", "M"), t)
    tuck = _contact_envelope(segments, ("F", "V"), t)
    fine["lip_close"] = np.maximum(fine["lip_close"], closure)
    fine["lower_lip_tuck"] = np.maximum(fine["lower_lip_tuck"], 0.9 * tuck)
    # the jaw shuts too: pressed lips over a dropped jaw look parted on the rendered frames
    fine["jaw_open"] = jaw * (1 - closure)
    fine["tongue"] = fine["tongue"] * (1 - closure)

    out = {}
    idx = np.minimum((t * fps + 1e-9).astype(np.int64), n_frames - 1)
    for ch in MOUTH_CHANNELS:
        if ch in ("lip_close", "lower_lip_tuck"):
            pooled = np.zeros(n_frames)
            np.maximum.at(pooled, idx, fine[ch])
        else:
            sums = np.bincount(idx, weights=fine[ch], minlength=n_frames)
            counts = np.bincount(idx, minlength=n_frames)
            pooled = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        if np.isnan(pooled).any():  # frame rates above 100 Hz: interpolate empty frames
            ok = ~np.isnan(pooled)
            pooled = np.interp(np.arange(n_frames), np.flatnonzero(ok), pooled[ok]) if ok.any() else np.zeros(n_frames)
        out[ch] = pooled
    return out


def pause_gate(speech: np.ndarray, fps: float) -> np.ndarray:
    """1 while speaking; 0 inside pauses ≥ PAUSE_S, reached PAUSE_FADE_S after the pause starts."""
    n = len(speech)
    gate = np.ones(n)
    fade = max(1, int(math.ceil(PAUSE_FADE_S * fps)))
    silent = speech < 0.5
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        if (b - a) / fps < PAUSE_S:
            continue
        g = np.zeros(b - a)
        k = np.arange(b - a)
        if a > 0:  # closing after speech: 1 → 0 over `fade` frames
            g = np.maximum(g, 1.0 - (k + 1) / fade)
        if b < n:  # opening before speech resumes
            g = np.maximum(g, 1.0 - (b - a - k) / fade)
        gate[a:b] = np.clip(g, 0.0, 1.0)
    return gate


# ------------------------------------------------------------------------------------------------
# life: blinks, head, gaze
# ------------------------------------------------------------------------------------------------
BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.05, 0.02, 0.09


def blinks(n_frames: int, fps: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Blink channel: one blink every 2–6 s / rate, fast close, short hold, slower open (≈ 0.15 s)."""
    intervals = rng.uniform(2.0, 6.0, size=4096)  # drawn up front so the stream doesn't depend on length
    doubles = rng.uniform(size=4096) < 0.1
    out = np.zeros(n_frames)
    if rate <= 0:
        return out.astype(np.float32)
    duration = n_frames / fps
    t = np.arange(n_frames) / fps
    when = rng.uniform(0.6, 2.5) / rate
    k = 0
    while when < duration and k < len(intervals):
        # centre the closed hold on a frame so every blink fully closes the eyes at least once
        peak = round(when * fps) / fps
        starts = [peak, peak + 0.3] if doubles[k] else [peak]
        for p in starts:
            out = np.maximum(out, _blink_shape(t - p))
        when += intervals[k] / rate
        k += 1
    return out.astype(np.float32)


def _blink_shape(dt: np.ndarray) -> np.ndarray:
    """dt = time from the fully-closed moment; closing before it, holding, then opening."""
    closing = np.clip(1.0 + dt / BLINK_CLOSE_S, 0, 1) ** 1.5
    opening = np.clip(1.0 - (dt - BLINK_HOLD_S) / BLINK_OPEN_S, 0, 1) ** 0.8
    return np.where(dt < 0, closing, np.where(dt <= BLINK_HOLD_S, 1.0, opening))


def smooth_noise(n: int, fps: float, period_s: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std random drift with features about ``period_s`` long."""
    pad = int(3 * period_s * fps)
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma=max(period_s * fps / 2.5, 0.5))[pad:pad + n]
    std = float(np.std(x))
    return x / std if std > 1e-9 else x


def _soft_bound(x: np.ndarray, limit: float) -> np.ndarray:
    return limit * np.tanh(x / limit)


def head_and_brows(feats: GridFeatures, fps: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Head yaw/pitch/roll in degrees (before head_motion) and a small prosodic brow raise."""
    n = len(feats.energy)
    t = np.arange(n) / fps
    speaking = gaussian_filter1d(feats.speech, sigma=0.3 * fps)
    energy = gaussian_filter1d(feats.energy * feats.speech, sigma=0.12 * fps)

    # pitch contour in semitones, unvoiced gaps bridged, low-passed: intonation, not jitter
    pitch = feats.pitch
    voiced = (feats.voicing >= 0.5) & (feats.speech > 0)
    if voiced.sum() >= 2:
        contour = np.interp(np.arange(n), np.flatnonzero(voiced), pitch[voiced])
    else:
        contour = np.zeros(n)
    contour = gaussian_filter1d(contour, sigma=0.15 * fps) * speaking

    # loud syllable onsets are the beats of speech: a small nod down on each
    onset = np.clip(np.gradient(energy) * fps, 0, None)
    onset = gaussian_filter1d(onset, sigma=0.06 * fps)
    onset = onset / (np.percentile(onset, 99) + 1e-6) if onset.any() else onset

    drift_yaw = smooth_noise(n, fps, 3.0, rng)
    drift_pitch = smooth_noise(n, fps, 3.5, rng)
    drift_roll = smooth_noise(n, fps, 4.0, rng)
    turn_side = smooth_noise(n, fps, 2.0, rng)  # which way loud phrases turn the head
    breath_period = rng.uniform(3.5, 5.0)
    breath_phase = rng.uniform(0, 2 * np.pi)
    breathing = np.sin(2 * np.pi * t / breath_period + breath_phase)

    yaw = 1.2 * drift_yaw + 1.5 * energy * np.tanh(2 * turn_side)
    pitch_deg = 0.6 * drift_pitch + 0.3 * contour - 1.0 * onset + 0.4 * breathing * (1 - speaking)
    roll = 0.5 * drift_roll + 0.6 * energy * np.tanh(2 * turn_side) * 0.5

    smooth = 0.08 * fps  # a low-pass at roughly 2 Hz: no frame-to-frame jitter
    yaw, pitch_deg, roll = (_soft_bound(gaussian_filter1d(x, sigma=max(smooth, 0.5)), MAX_HEAD_DEG)
                            for x in (yaw, pitch_deg, roll))
    brow = np.clip(0.05 * contour, 0, 0.25)  # brows rise a little with the voice
    return yaw, pitch_deg, roll, brow


def gaze(n_frames: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Saccades: hold a fixation 0.8–3 s, jump within ~40 ms; half of the jumps return to the camera."""
    holds = rng.uniform(0.8, 3.0, size=2048)
    home = rng.uniform(size=2048) < 0.5
    xs = rng.uniform(-0.3, 0.3, size=2048)
    ys = rng.uniform(-0.15, 0.15, size=2048)
    gx, gy = np.zeros(n_frames), np.zeros(n_frames)
    jump = max(1, int(round(0.04 * fps)))
    cur_x = cur_y = 0.0
    frame = int(round(holds[0] * fps))
    k = 1
    while frame < n_frames and k < len(holds):
        new_x, new_y = (0.0, 0.0) if home[k] else (xs[k], ys[k])
        for j in range(jump):
            if frame + j < n_frames:
                f = (j + 1) / jump
                gx[frame + j] = cur_x + f * (new_x - cur_x)
                gy[frame + j] = cur_y + f * (new_y - cur_y)
        nxt = min(n_frames, frame + jump + int(round(holds[k] * fps)))
        gx[frame + jump:nxt], gy[frame + jump:nxt] = new_x, new_y
        cur_x, cur_y = new_x, new_y
        frame, k = nxt, k + 1
    return gx, gy
