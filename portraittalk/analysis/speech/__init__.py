"""Speech analysis: what is said (words, phones) and how it sounds (prosody), on the video frame grid.

``analyze_speech(clip, fps, transcript, language)`` returns a :class:`SpeechAnalysis`:

* **words and phones** (:mod:`.recognizer`) — Whisper hears the words, their times and the
  language; English words (a transcript's, or the recognised ones) are force-aligned by
  pocketsphinx, other languages' are read by espeak-ng and fitted onto the recording. When
  nothing readable is said (singing, music, mumbling; or the recogniser is unavailable) the
  method is ``"acoustic"`` and the phones are *pseudo-phones* built from the sound itself:
  one vowel per syllable nucleus, chosen by spectral shape (bright → EY, dark → OW, otherwise
  AA/AH by loudness), "N" around them and "P" in deep energy dips between syllables, SIL in
  pauses. They drive the same viseme machinery, so the MotionTrack needs no extra input.
* **per-frame features** (10 ms analysis hops pooled onto the video grid):
  ``energy`` (RMS dB scaled 0…1 between a floor and the clip's loud frames),
  ``voicing`` (from YIN's aperiodicity), ``pitch`` (semitones from the clip's median F0,
  0 when unvoiced), ``speech`` (voice activity; pauses < 0.15 s are filled).

Frame grid: ``n_frames = max(1, round(duration_s * fps))``; video frame *i* is on screen
from ``i / fps`` to ``(i + 1) / fps`` and every feature of frame *i* pools the analysis
hops whose centres fall in that interval (power mean for energy, mean of the voiced hops
for pitch, majority for speech).

Every time is relative to the clip's first sample, so a window of a long recording (an
``AudioClip`` holding only that stretch) is analysed the same way as a whole clip.

Modules: :mod:`.features` (level, pitch, voice activity, frame grid), :mod:`.recognizer`
(the decision), :mod:`.whisper` (the recogniser), :mod:`.sphinx` (English forced alignment),
:mod:`.fit` with :mod:`.ipa` (espeak-ng phonemes on the recording), :mod:`.japanese` (kana),
:mod:`.words` (a transcript on recognised times) and :mod:`.acoustic` (pseudo-phones).
"""

from __future__ import annotations

import numpy as np

from ...contracts import AudioClip, PhoneSegment, SpeechAnalysis
from ...errors import InputError
from ...motion.visemes import SILENCE
from .acoustic import acoustic_pseudo_phones
from .features import (
    DIGITAL_SILENCE_DBFS,
    HOP_S,
    SAMPLE_RATE,
    AcousticFeatures,
    acoustic_features,
    frame_features,
    speech_activity,
    voice_activity,
)
from .recognizer import recognize

NO_SPEECH_WARNING = "The audio contains no speech; the video shows an idle face."


def analyze_speech(clip: AudioClip, fps: float, transcript: str | None = None, language: str | None = None,
                   asr_model: str | None = None) -> SpeechAnalysis:
    """Words, phones (forced alignment, espeak-ng fitted or acoustic pseudo-phones) and per-frame prosody.
    ``language`` (Whisper's code, e.g. "es") skips language detection; ``asr_model`` names
    another recogniser model (see :mod:`.whisper`)."""
    if not np.isfinite(fps) or fps <= 0:
        raise InputError("The frame rate must be a positive number such as 25; please choose another frame rate.")
    samples = _analysis_samples(clip)
    duration = len(samples) / SAMPLE_RATE
    n_frames = max(1, int(round(duration * fps)))

    feats = acoustic_features(samples)
    if not feats.audible:
        return _no_speech(feats, duration, n_frames, fps)

    found = recognize(samples, feats.db, transcript, language, asr_model)
    activity = speech_activity(voice_activity(feats, found.voiced_spans), HOP_S)
    phones = found.phones if found.method != "acoustic" else acoustic_pseudo_phones(feats, activity)
    if not _enough_speech(activity, feats, phones):
        return _no_speech(feats, duration, n_frames, fps, found.warnings)

    grid = frame_features(feats, activity, n_frames, fps)
    return SpeechAnalysis(
        phones=_tidy(phones, duration), method=found.method, language=found.language,
        speech_ratio=float(grid["speech"].mean()), fps=float(fps), energy=grid["energy"], voicing=grid["voicing"],
        pitch=grid["pitch"], speech=grid["speech"], warnings=found.warnings, words=found.words,
        words_from=found.words_from, text=found.text, language_probability=round(found.language_probability, 3),
    )


def _no_speech(feats: AcousticFeatures, duration: float, n_frames: int, fps: float,
               notes: list[str] | None = None) -> SpeechAnalysis:
    grid = frame_features(feats, np.zeros(feats.n, bool), n_frames, fps)
    warning = NO_SPEECH_WARNING
    if not feats.audible and feats.loud_db > DIGITAL_SILENCE_DBFS:  # a signal, far too quiet: say what to do
        warning = (f"The recording is very quiet (its loudest parts are about {feats.loud_db:.0f} dBFS), so no "
                   "speech was found and the video shows an idle face; raise its level and try again.")
    return SpeechAnalysis(
        phones=[PhoneSegment(SILENCE, 0.0, round(duration, 3))], method="acoustic", language="unknown",
        speech_ratio=0.0, fps=float(fps), energy=grid["energy"], voicing=grid["voicing"], pitch=grid["pitch"],
        speech=grid["speech"], warnings=[*(notes or []), warning],
    )


def _analysis_samples(clip: AudioClip) -> np.ndarray:
    y = np.asarray(clip.samples, dtype=np.float32)
    if y.ndim > 1:  # defensive: the loader promises mono
        y = y.mean(axis=tuple(range(1, y.ndim))) if y.shape[0] > y.shape[-1] else y.mean(axis=0)
    y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    if clip.sample_rate != SAMPLE_RATE and len(y):
        from math import gcd

        from scipy.signal import resample_poly  # rare path: the loader already delivers 16 kHz

        g = gcd(SAMPLE_RATE, int(clip.sample_rate))
        y = resample_poly(y, SAMPLE_RATE // g, int(clip.sample_rate) // g).astype(np.float32)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def _enough_speech(activity: np.ndarray, feats: AcousticFeatures, phones: list[PhoneSegment]) -> bool:
    """Speech = some voiced activity and some phones; hum, tones, hiss and room tone have not both."""
    voiced_active = float((activity & (feats.voicing > 0.5)).sum() * HOP_S)
    phone_time = sum(p.end - p.start for p in phones if p.phone != SILENCE)
    return voiced_active >= 0.1 and phone_time >= 0.2


def _tidy(phones: list[PhoneSegment], duration: float) -> list[PhoneSegment]:
    """Merge neighbouring silences, clip to the clip and fill gaps with SIL so phones tile [0, duration]."""
    out: list[PhoneSegment] = []
    t = 0.0
    for p in sorted(phones, key=lambda p: p.start):
        start, end = max(p.start, t), min(p.end, duration)
        if end <= start + 1e-6:
            continue
        if start > t + 1e-6:
            out.append(PhoneSegment(SILENCE, t, start))
        out.append(PhoneSegment(p.phone, start, end))
        t = end
    if t < duration - 1e-6 or not out:
        out.append(PhoneSegment(SILENCE, t, max(duration, t)))
    merged: list[PhoneSegment] = []
    for p in out:
        if merged and p.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1] = PhoneSegment(SILENCE, merged[-1].start, p.end)
        else:
            merged.append(p)
    return [PhoneSegment(p.phone, round(p.start, 3), round(p.end, 3)) for p in merged]
