"""Speech whose phones are known: no recogniser, the given phones and the sound's own prosody.

A typed sentence is synthesised together with the timing of every phone it was made of
(:mod:`portraittalk.voices`); those phones drive the mouth as they are, and voice activity is
where they sound. Energy, voicing and pitch come from the audio as for any recording.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ...contracts import AudioClip, PhoneSegment, SpeechAnalysis, WordSegment
from ...motion.visemes import SILENCE
from . import _tidy
from .features import HOP_S, acoustic_features, frame_features, speech_activity
from .words import tokens


def analyze_given_phones(clip: AudioClip, fps: float, phones: list[PhoneSegment], language: str,
                         method: str = "synthesis", text: str = "") -> SpeechAnalysis:
    """The SpeechAnalysis of ``clip`` (16 kHz, as load_audio gives it) with ``phones`` as its phones
    and ``text``'s words, timed over them, as its words."""
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
                          voicing=grid["voicing"], pitch=grid["pitch"], speech=grid["speech"],
                          words=words_over_phones(text, phones), words_from="transcript" if text else "", text=text)


def words_over_phones(text: str, phones: list[PhoneSegment]) -> list[WordSegment]:
    """The text's words timed over its phones: the voices time phones, not words.

    When the text's phrases (ended by punctuation) match the pauses in the phones one to one,
    each phrase's words share its stretch of speech; else all words share all speech. Either
    way words are spread in proportion to their letters, and pauses are skipped."""
    words = tokens(text)
    chunks: list[list[tuple[float, float]]] = [[]]
    for p in phones:
        if p.phone == SILENCE and chunks[-1]:
            chunks.append([])
        elif p.phone != SILENCE and p.end > p.start:
            chunks[-1].append((p.start, p.end))
    chunks = [c for c in chunks if c]
    if not words or not chunks:
        return []
    phrases: list[list[str]] = [[]]
    for w in words:
        phrases[-1].append(w)
        if w[-1] in PHRASE_END:
            phrases.append([])
    phrases = [p for p in phrases if p]
    if len(phrases) != len(chunks):
        phrases, chunks = [words], [[span for c in chunks for span in c]]
    return [word for phrase, spans in zip(phrases, chunks) for word in _spread(phrase, spans)]


PHRASE_END = tuple(",.;:!?、。，！？；：")


def _spread(words: list[str], spans: list[tuple[float, float]]) -> list[WordSegment]:
    sounding = np.cumsum([0.0] + [b - a for a, b in spans])
    at = np.cumsum([0.0] + [len(w) + 1.0 for w in words])
    at *= sounding[-1] / at[-1]  # each word's edges in sounding time

    def clock(t: float, side: Literal["left", "right"]) -> float:  # sounding time → time in the clip ("left": a span's end)
        i = int(np.clip(np.searchsorted(sounding, t, side=side) - 1, 0, len(spans) - 1))
        return spans[i][0] + (t - sounding[i])

    return [WordSegment(w, round(clock(at[i], "right"), 3), round(clock(at[i + 1], "left"), 3))
            for i, w in enumerate(words)]
