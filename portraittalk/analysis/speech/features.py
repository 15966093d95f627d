"""Acoustic features of a clip at 10 ms hops (level, YIN pitch and voicing, brightness,
voice activity) and their pooling onto the video frame grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
HOP = 160  # 10 ms: the decoder's frame rate as well, so phone times and features share a grid
HOP_S = HOP / SAMPLE_RATE

# --- loudness / activity constants -------------------------------------------------------------
ENERGY_RANGE_DB = 35.0  # energy 0 is this far below the loud frames (or just above the noise floor)
LOUD_PERCENTILE = 95.0  # "loud frames" of the clip
NOISE_PERCENTILE = 10.0
SILENT_CLIP_DBFS = -60.0  # loud frames quieter than this: nothing audible at all
DIGITAL_SILENCE_DBFS = -110.0  # … and below this, not even a faint signal (zeros, dither)
# Speech has quiet gaps between words (≥ 23 dB under the loud frames on the samples); a music bed
# has not (8.5 dB on the song).
MIN_SPEECH_DYNAMICS_DB = 15.0
PAUSE_HANGOVER_S = 0.15  # gaps shorter than this are not pauses
MIN_SPEECH_BURST_S = 0.06  # shorter activity is a click, not speech

# --- pitch -------------------------------------------------------------------------------------
F0_MIN, F0_MAX = 60.0, 700.0  # speaking and singing voices
YIN_FRAME = 640  # 40 ms: two periods of the lowest F0, short enough for gliding pitch
YIN_THRESHOLD = 0.15
MAX_PITCH_SEMITONES = 15.0  # from the clip's median F0: beyond is a tracking error, not intonation


# ------------------------------------------------------------------------------------------------
# acoustic features at 100 Hz
# ------------------------------------------------------------------------------------------------
@dataclass
class AcousticFeatures:
    """Per 10 ms hop (hop k is centred at k * 10 ms)."""

    db: np.ndarray  # RMS level, dBFS
    energy: np.ndarray  # 0…1 between floor_db and loud_db
    loud: np.ndarray  # bool, level above the clip's activity threshold
    f0: np.ndarray  # Hz, 0 when unvoiced
    voicing: np.ndarray  # 0…1
    brightness: np.ndarray  # log2 of (1–3.5 kHz energy / 0.2–1 kHz energy): high for spread vowels
    loud_db: float  # level of the clip's loud frames
    noise_db: float  # level of its quiet frames
    floor_db: float  # energy 0

    @property
    def n(self) -> int:
        return len(self.db)

    @property
    def audible(self) -> bool:
        return self.loud_db > SILENT_CLIP_DBFS

    @property
    def continuous(self) -> bool:
        """True when the sound never drops between words: a music bed or steady noise."""
        return self.loud_db - self.noise_db < MIN_SPEECH_DYNAMICS_DB


def acoustic_features(samples: np.ndarray) -> AcousticFeatures:
    """Loudness, YIN pitch/voicing and spectral brightness at 10 ms hops."""
    y = samples if len(samples) >= YIN_FRAME else np.pad(samples, (0, YIN_FRAME - len(samples)))
    n_hops = len(samples) // HOP + 1

    rms = _blockwise(lambda f: np.sqrt(np.mean(np.square(f, dtype=np.float64), axis=1)),
                     centred_frames(y, 400))[:n_hops]
    db = 20.0 * np.log10(np.maximum(rms, 1e-6))
    loud_db = float(np.percentile(db, LOUD_PERCENTILE))
    noise_db = float(np.percentile(db, NOISE_PERCENTILE))
    # Energy 0 sits ENERGY_RANGE_DB under the loud frames but never inside the noise, so quiet
    # recordings (−30 dBFS) and noisy ones both span 0…1.
    floor_db = min(max(loud_db - ENERGY_RANGE_DB, noise_db + 3.0), loud_db - 12.0)
    energy = np.clip((db - floor_db) / (loud_db - floor_db), 0.0, 1.0)
    loud = db > noise_db + max(6.0, 0.3 * (loud_db - noise_db))

    f0, aperiodicity = yin_pitch(y, SAMPLE_RATE)
    f0, aperiodicity = f0[:n_hops], aperiodicity[:n_hops]
    # YIN's own confidence d': on the LibriVox references vowels/sonorants have a median of 0.12,
    # voiceless consonants 0.56 and pauses 0.47. Steady sounds at the noise level (hum, tones)
    # are not voice.
    voicing = np.clip((0.45 - aperiodicity) / 0.25, 0.0, 1.0) * (db > noise_db + 3.0)
    f0 = np.where(voicing > 0.5, f0, 0.0)

    freqs = np.fft.rfftfreq(512, 1.0 / SAMPLE_RATE)
    bands = ((freqs >= 200) & (freqs < 1000), (freqs >= 1000) & (freqs < 3500))

    def band_energy(f: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(f * np.hanning(512), axis=1)) ** 2
        return np.stack([spec[:, band].sum(axis=1) for band in bands], axis=1)

    low, high = _blockwise(band_energy, centred_frames(y, 512))[:n_hops].T
    brightness = np.log2((high + 1e-10) / (low + 1e-10))
    return AcousticFeatures(db=db.astype(np.float32), energy=energy.astype(np.float32), loud=loud,
                            f0=f0.astype(np.float32), voicing=voicing.astype(np.float32),
                            brightness=brightness.astype(np.float32), loud_db=loud_db, noise_db=noise_db,
                            floor_db=floor_db)


def voice_activity(feats: AcousticFeatures, voiced_spans: list[tuple[float, float]]) -> np.ndarray:
    """Raw per-hop activity: the level in ordinary recordings; over a music bed, the spans where the
    recogniser heard words, or the voiced hops when it heard none (a song's voice)."""
    if not feats.continuous:
        return feats.loud.copy()
    if not voiced_spans:
        return feats.voicing > 0.5
    out = np.zeros(feats.n, bool)
    for a, b in voiced_spans:
        out[int(round(a / HOP_S)):int(round(b / HOP_S))] = True
    return out


# Per-hop analyses run on blocks of this many hops (2.5 s): their FFT buffers take a few kB per
# hop, so analysing the whole clip at once would need memory in proportion to its length (and
# a render analyses the next window of speech while it draws frames: ~15 MB at this size).
BLOCK_HOPS = 250


def _blockwise(fn, frames: np.ndarray) -> np.ndarray:
    """``fn`` (frames → per-frame rows) over consecutive blocks of ``frames``, joined."""
    return np.concatenate([fn(frames[i:i + BLOCK_HOPS]) for i in range(0, len(frames), BLOCK_HOPS)], axis=0)


def centred_frames(y: np.ndarray, length: int) -> np.ndarray:
    """(n_hops, length) windows of ``y`` centred on k × HOP (zero-padded at the ends), as a view."""
    padded = np.pad(y, (length // 2, length - length // 2))
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::HOP]


def yin_pitch(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """YIN (de Cheveigné & Kawahara 2002): F0 and aperiodicity d' per 10 ms hop, centred frames.

    Plain numpy rather than librosa.yin: librosa returns only F0, while the cumulative-mean-
    normalised difference at the chosen lag is YIN's own voicing confidence, so F0 and voicing
    come from one pass; and importing librosa costs ~5 s of CPU per process (numba), more than
    analysing a 20 s clip.
    """
    f0, aperiodicity = _blockwise(lambda f: np.stack(_yin_frames(f.T, sr), axis=1), centred_frames(y, YIN_FRAME)).T
    return f0, aperiodicity


def _yin_frames(frames: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """YIN on (L, n) frames."""
    min_p, max_p = int(sr // F0_MAX), int(np.ceil(sr / F0_MIN))
    n_fft = 1 << int(np.ceil(np.log2(2 * YIN_FRAME)))  # zero-padded: linear, not circular, correlation
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=0)) ** 2
    acf = np.fft.irfft(power, n=n_fft, axis=0)[: max_p + 1]  # (max_p+1, n)
    sq = np.cumsum(np.square(frames, dtype=np.float64), axis=0)
    total = sq[-1]
    lags = np.arange(1, max_p + 1)
    # d(τ) = Σ_head x² + Σ_tail x² − 2 r(τ) over the overlapping part of the frame
    head = sq[YIN_FRAME - 1 - lags]  # Σ_{j < L−τ} x_j²
    tail = total - sq[lags - 1]  # Σ_{j ≥ τ} x_j²
    pair_energy = head + tail
    diff = np.maximum(pair_energy - 2.0 * acf[1:], 0.0)
    cmnd = diff * lags[:, None] / np.maximum(np.cumsum(diff, axis=0), 1e-12)
    cand = cmnd[min_p - 1:]  # lags min_p … max_p
    is_trough = np.zeros_like(cand, dtype=bool)
    is_trough[1:-1] = (cand[1:-1] <= cand[:-2]) & (cand[1:-1] <= cand[2:])
    below = is_trough & (cand < YIN_THRESHOLD)
    idx = np.where(below.any(axis=0), below.argmax(axis=0), cand.argmin(axis=0))
    cols = np.arange(cand.shape[1])
    # parabolic refinement of the chosen lag
    i0 = np.clip(idx, 1, cand.shape[0] - 2)
    a, b, c = cand[i0 - 1, cols], cand[i0, cols], cand[i0 + 1, cols]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    shift = np.clip(shift, -1, 1) * (idx == i0)
    lag = idx + min_p + shift
    f0 = sr / lag
    aperiodicity = cand[idx, cols]
    return f0.astype(np.float32), aperiodicity.astype(np.float32)


def speech_activity(active: np.ndarray, hop_s: float) -> np.ndarray:
    """Activity with hangover: gaps < PAUSE_HANGOVER_S are filled, bursts < MIN_SPEECH_BURST_S dropped."""
    out = active.astype(bool).copy()
    for value, max_len in ((False, PAUSE_HANGOVER_S), (True, MIN_SPEECH_BURST_S)):
        for start, end in runs(out, value):
            interior = start > 0 and end < len(out)  # leading/trailing silence stays a pause
            if (end - start) * hop_s < max_len and (interior or value):
                out[start:end] = not value
    return out


def runs(mask: np.ndarray, value: bool) -> list[tuple[int, int]]:
    """(start, end) index pairs of the runs of ``value`` in ``mask``."""
    m = np.concatenate([[False], mask == value, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


# ------------------------------------------------------------------------------------------------
# 100 Hz → video frame grid
# ------------------------------------------------------------------------------------------------
def _hop_to_frame_index(n_hops: int, n_frames: int, fps: float) -> np.ndarray:
    return np.minimum((np.arange(n_hops) * HOP_S * fps).astype(np.int64), n_frames - 1)


def pool_to_frames(values: np.ndarray, n_frames: int, fps: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean of the hops whose centres fall in each frame's display interval; empty frames interpolate."""
    idx = _hop_to_frame_index(len(values), n_frames, fps)
    w = np.ones(len(values)) if weights is None else weights.astype(np.float64)
    num = np.bincount(idx, weights=values * w, minlength=n_frames)
    den = np.bincount(idx, weights=w, minlength=n_frames)
    out = np.full(n_frames, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    if not ok.any():
        return np.zeros(n_frames, np.float32)
    if not ok.all():  # fps above 100 Hz, or weights zero in a frame
        out = np.interp(np.arange(n_frames), np.flatnonzero(ok), out[ok])
    return out.astype(np.float32)


def frame_features(feats: AcousticFeatures, activity: np.ndarray, n_frames: int, fps: float) -> dict[str, np.ndarray]:
    """Energy, voicing, pitch and speech per video frame."""
    power = 10.0 ** (feats.db / 10.0)
    frame_db = 10.0 * np.log10(np.maximum(pool_to_frames(power, n_frames, fps), 1e-12))
    energy = np.clip((frame_db - feats.floor_db) / (feats.loud_db - feats.floor_db), 0, 1).astype(np.float32)
    voicing = pool_to_frames(feats.voicing, n_frames, fps)

    voiced = feats.f0 > 0
    pitch = np.zeros(n_frames, np.float32)
    if voiced.sum() >= 3:
        semis = np.zeros_like(feats.f0)
        semis[voiced] = 12.0 * np.log2(feats.f0[voiced] / np.median(feats.f0[voiced]))
        # YIN's octave and sub-harmonic slips land far from the speaker's range: drop them
        voiced &= np.abs(semis) <= MAX_PITCH_SEMITONES
        semis[~voiced] = 0.0
        has = pool_to_frames(voiced.astype(np.float32), n_frames, fps)
        mean_semis = pool_to_frames(semis, n_frames, fps, weights=voiced.astype(np.float32) + 1e-9)
        pitch = np.where(has >= 0.5, mean_semis, 0.0).astype(np.float32)

    frame_activity = pool_to_frames(activity.astype(np.float32), n_frames, fps)
    speech = speech_activity(frame_activity >= 0.5, 1.0 / fps).astype(np.float32)
    return {"energy": energy, "voicing": voicing, "pitch": pitch, "speech": speech}


