"""Timed words of any language → timed ARPAbet phones, through espeak-ng.

Whisper's word boundaries are off by 75–95 ms, too coarse for lips. So espeak-ng speaks the
words itself (at the speaker's rate), and its sound is aligned to the recording by dynamic
time warping of MFCCs, each synthetic word held within ±``BAND_S`` of the span Whisper gave
it (the aeneas approach). espeak's phoneme events then carry their times across the warp.
On the LibriVox references this put 19 of 20 P/B/M closures on the closure (plain scaling
of espeak's durations into the word spans: 13 of 20) and matched 60–70 % of the viseme frames
(30–49 %). Closures then move onto the energy dip nearest them when one lies within
``SNAP_S``: a closed mouth is silent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import lru_cache

import numpy as np

from ...contracts import PhoneSegment, WordSegment
from ...espeak import Synthesis, synthesize
from ...motion.visemes import SILENCE
from .features import HOP_S, SAMPLE_RATE
from .ipa import WEAK_CLOSURES, to_arpabet

BAND_S = 0.25  # a synthetic word may land this far outside Whisper's span for it
PAD_S = 0.3  # near-silence around the synthesis, for the recording's pauses to match
SNAP_S = 0.04  # a closure moves at most this far onto an energy dip …
SNAP_DEPTH_DB = 3.0  # … at least this deep
MIN_PHONE_S = 0.01
CHUNK_PAUSE_S = 0.3  # words further apart are fitted separately …
CHUNK_S = 15.0  # … and so are stretches longer than this
CLOSURES = frozenset({"P", "B", "M"})


def fit_phonemes(samples: np.ndarray, words: Sequence[WordSegment], language: str,
                 db: np.ndarray | None = None) -> list[PhoneSegment]:
    """ARPAbet phones of ``words`` (text as espeak reads it in ``language``), timed on the
    16 kHz ``samples``; ``db`` (the level per 10 ms hop) enables snapping closures."""
    duration = len(samples) / SAMPLE_RATE
    phones: list[PhoneSegment] = []
    weak: set[int] = set()  # Spanish β: lips nearly closed, never snapped shut
    for chunk in _chunks([w for w in words if w.text.strip()]):
        # each stretch of speech between pauses is warped on its own: memory and time stay
        # linear in the clip's length
        t0 = max(chunk[0].start - BAND_S - 0.1, phones[-1].end if phones else 0.0, 0.0)
        t1 = min(chunk[-1].end + BAND_S + 0.1, duration)
        window = samples[int(t0 * SAMPLE_RATE):int(t1 * SAMPLE_RATE)]
        if len(window) < SAMPLE_RATE // 20:
            continue
        local = [WordSegment(w.text, w.start - t0, w.end - t0) for w in chunk]
        for phone, is_weak in _fit_chunk(window, local, language):
            start = max(phone.start + t0, phones[-1].end if phones else 0.0)
            if is_weak:
                weak.add(len(phones))
            phones.append(PhoneSegment(phone.phone, start, max(phone.end + t0, start + MIN_PHONE_S)))
    if db is not None:
        snap_closures(phones, db, weak)
    return [p for p in phones if p.phone != SILENCE]


def _chunks(words: list[WordSegment]) -> list[list[WordSegment]]:
    """Runs of words split at pauses (≥ CHUNK_PAUSE_S) and kept under CHUNK_S."""
    chunks: list[list[WordSegment]] = []
    for w in words:
        if chunks and w.start - chunks[-1][-1].end < CHUNK_PAUSE_S and w.end - chunks[-1][0].start < CHUNK_S:
            chunks[-1].append(w)
        else:
            chunks.append([w])
    return chunks


def _fit_chunk(samples: np.ndarray, words: list[WordSegment], language: str) -> list[tuple[PhoneSegment, bool]]:
    """Timed phones of one stretch of speech, each with whether it is a weak closure."""
    spoken = sum(max(w.end - w.start, 0.05) for w in words)
    # the warp allows the recording to run at ½–2× the synthesis: speak at about its pace
    rate = int(np.clip(60.0 * len(words) / max(spoken, 0.3), 90, 400))
    synth = synthesize(" ".join(w.text.replace(" ", "") for w in words), language, rate, keep_audio=True,
                       steady=True)  # the same fit for the same recording, whatever was said before
    if not synth.phonemes or not len(synth.samples):
        return []
    to_real = _warp(samples, synth, words)
    out: list[tuple[PhoneSegment, bool]] = []
    last = 0.0
    for p in synth.phonemes:
        start = max(to_real(p.start_s), last)
        end = max(to_real(p.end_s), start + MIN_PHONE_S)
        t = start
        for phone, share in to_arpabet(p.ipa, language):
            out.append((PhoneSegment(phone, t, t + (end - start) * share), p.ipa in WEAK_CLOSURES))
            t = out[-1][0].end
        last = end
    return out


def _warp(samples: np.ndarray, synth: Synthesis, words: Sequence[WordSegment]) -> Callable[[float], float]:
    """synthesis time → recording time, from a DTW banded around Whisper's word spans."""
    pad = int(PAD_S * synth.sample_rate)
    noise = np.random.default_rng(0).normal(0.0, 1e-4, pad)  # like a real recording's room tone
    fake = np.concatenate([noise, synth.samples.astype(np.float64), noise])
    real_feats, fake_feats = mfcc(samples, SAMPLE_RATE), mfcc(fake, synth.sample_rate)
    norms = np.linalg.norm(real_feats, axis=1)[:, None] * np.linalg.norm(fake_feats, axis=1)[None, :]
    cost = 1.0 - (real_feats @ fake_feats.T) / (norms + 1e-8)
    n, m = cost.shape
    t_real = np.arange(n) * HOP_S
    spans: dict[int, list[float]] = {}
    for p in synth.phonemes:
        span = spans.setdefault(p.word, [p.start_s, p.end_s])
        span[0], span[1] = min(span[0], p.start_s), max(span[1], p.end_s)
    for k, (a, b) in spans.items():
        cols = slice(int((a + PAD_S) / HOP_S), min(int(np.ceil((b + PAD_S) / HOP_S)), m - 1) + 1)
        outside = (t_real < words[k].start - BAND_S) | (t_real > words[k].end + BAND_S)
        cost[outside, cols] += 10.0
    path = dtw_path(cost)

    def to_real(t: float) -> float:
        j = int(round((t + PAD_S) / HOP_S))
        return min(int(np.searchsorted(path, j, side="left")), n - 1) * HOP_S
    return to_real


def dtw_path(cost: np.ndarray) -> np.ndarray:
    """For each row (recording frame) the column (synthesis frame) of the cheapest monotonic path,
    the synthesis advancing 0, 1 or 2 frames per recording frame. Vectorised per row, as the
    general-purpose DTWs (librosa's) compile with numba on first use, ~10 s."""
    n, m = cost.shape
    total = np.full((n, m), np.inf)
    step = np.zeros((n, m), np.int8)
    total[0, 0] = cost[0, 0]
    total[0, 1:3] = cost[0, 1:3] + 1e3 * np.arange(1, min(3, m))  # start at the start
    for i in range(1, n):
        prev = total[i - 1]
        options = np.vstack((prev, np.concatenate(([np.inf], prev[:-1])), np.concatenate(([np.inf] * 2, prev[:-2]))))
        best = np.argmin(options, axis=0)
        total[i] = cost[i] + options[best, np.arange(m)]
        step[i] = best
    j = m - 1 if np.isfinite(total[-1, -1]) else int(np.argmin(total[-1]))
    path = np.empty(n, np.int64)
    for i in range(n - 1, -1, -1):
        path[i] = j
        j = max(j - int(step[i, j]), 0)
    return path


@lru_cache(maxsize=4)
def _mel_dct(rate: int, n_fft: int, n_mels: int = 40, n_mfcc: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Mel filterbank (80 Hz – 7.6 kHz) and DCT-II matrix for :func:`mfcc`."""
    mel_points = np.linspace(2595 * np.log10(1 + 80 / 700), 2595 * np.log10(1 + 7600 / 700), n_mels + 2)
    hz = 700 * (10 ** (mel_points / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    bank = np.array([np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
                     for lo, mid, hi in zip(hz, hz[1:], hz[2:])])
    k = np.arange(n_mels)
    dct = np.cos(np.pi / n_mels * (k[None, :] + 0.5) * np.arange(n_mfcc)[:, None])
    return bank, dct


def mfcc(audio: np.ndarray, rate: int) -> np.ndarray:
    """(frames, 12) MFCCs without c0 (loudness), mean/variance-normalised, at 10 ms hops
    (frame k centred at k × 10 ms) from 25 ms Hamming windows."""
    x = np.asarray(audio, np.float64)
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    hop, win = int(round(HOP_S * rate)), int(round(0.025 * rate))
    n_fft = 1 << (win - 1).bit_length()
    padded = np.pad(x, (win // 2, win // 2 + hop))
    count = max(1, (len(padded) - win) // hop + 1)
    frames = padded[np.arange(win)[None, :] + hop * np.arange(count)[:, None]] * np.hamming(win)
    bank, dct = _mel_dct(rate, n_fft)
    cepstra = (np.log(np.abs(np.fft.rfft(frames, n_fft)) ** 2 @ bank.T + 1e-10) @ dct.T)[:, 1:]
    return (cepstra - cepstra.mean(0)) / (cepstra.std(0) + 1e-8)


def snap_closures(phones: list[PhoneSegment], db: np.ndarray, skip: Collection[int] = ()) -> None:
    """Move each P/B/M but those in ``skip`` (in place) so its centre sits on the deepest level dip
    within ±SNAP_S, when that dip is ≥ SNAP_DEPTH_DB under the level around it; neighbours give or take the time."""
    for k, p in enumerate(phones):
        if p.phone not in CLOSURES or k in skip:
            continue
        before = phones[k - 1] if k > 0 else None
        after = phones[k + 1] if k + 1 < len(phones) else None
        half, centre = (p.end - p.start) / 2, (p.start + p.end) / 2
        lo = max(centre - SNAP_S, (before.start + MIN_PHONE_S + half) if before else 0.0)
        hi = min(centre + SNAP_S, (after.end - MIN_PHONE_S - half) if after else len(db) * HOP_S)
        a, b = int(round(lo / HOP_S)), min(int(round(hi / HOP_S)), len(db) - 1)
        if b <= a:
            continue
        dip = a + int(np.argmin(db[a:b + 1]))
        around = min(db[max(dip - 8, 0):dip + 1].max(), db[dip:dip + 9].max())
        shift = dip * HOP_S - centre
        if around - db[dip] < SNAP_DEPTH_DB or abs(shift) < HOP_S:
            continue
        p.start, p.end = p.start + shift, p.end + shift
        if before is not None:
            before.end = p.start
        if after is not None:
            after.start = p.end
