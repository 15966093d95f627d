"""Speech whose phones are known: no recogniser, the given phones and the sound's own prosody.

A typed sentence is synthesised together with the timing of every phone it was made of
(:mod:`portraittalk.voices`); those phones drive the mouth as they are, and voice activity is
where they sound. Energy, voicing and pitch come from the audio as for any recording.
"""

from __future__ import annotations

import numpy as np

from ...contracts import AudioClip, PhoneSegment, SpeechAnalysis
from ...motion.visemes import SILENCE
from . import _tidy
from .features import HOP_S, acoustic_features, frame_features, speech_activity


def analyze_given_phones(clip: AudioClip, fps: float, phones: list[PhoneSegment], language: str,
                         method: str = "synthesis") -> SpeechAnalysis:
    """The SpeechAnalysis of ``clip`` (16 kHz, as load_audio gives it) with ``phones`` as its phones."""
    samples = np.asarray(clip.samples, np.float32)
    duration = len(samples) / clip.sample_rate
    n_frames = max(1, int(round(duration * fps)))
    feats = acoustic_features(samples)
    centres = np.arange(feats.n) * HOP_S
    active = np.zeros(feats.n, bool)
    for p in phones:
        if p.phone != SILENCE:
            active[(centres >= p.start) & (centres < p.end)] = True
    grid = frame_features(feats, speech_activity(active, HOP_S), n_frames, fps)
    # Tidied to the decoded clip, which may be a few samples longer or shorter than the synthesiser's count.
    return SpeechAnalysis(phones=_tidy(phones, duration), method=method, language=language,
                          speech_ratio=float(grid["speech"].mean()), fps=float(fps), energy=grid["energy"],
                          voicing=grid["voicing"], pitch=grid["pitch"], speech=grid["speech"])
