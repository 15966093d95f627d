"""Voices for other languages: espeak-ng (robotic, GPL-3.0-or-later, behind :mod:`portraittalk.espeak`).

espeak-ng reports every phoneme with its place in the audio as it synthesises, so the phone
timing is exact by construction; each phoneme becomes the ARPAbet phone(s) of the nearest
mouth shape (:mod:`portraittalk.analysis.speech.ipa`), and the time between phonemes is silence.
"""

from __future__ import annotations

import numpy as np

from .. import espeak
from ..analysis.speech.ipa import to_arpabet
from ..contracts import PhoneSegment
from ..motion.visemes import SILENCE

RATE_WPM = 150  # a little slower than espeak's 175: easier to follow, and recognised better
PEAK = 0.89  # espeak's output peaks near full scale; −1 dBFS leaves the AAC encoder headroom
# Shorter gaps between phonemes (espeak's silent events inside a word, e.g. before a Russian
# palatalised r) stay with the phone before them rather than shutting the mouth.
MIN_PAUSE_S = 0.05


def speak(text: str, language: str) -> tuple[np.ndarray, int, list[PhoneSegment]]:
    """float32 samples, their rate and the phones tiling them."""
    synthesis = espeak.synthesize(text, language, RATE_WPM)
    samples = synthesis.samples
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > PEAK:
        samples = samples * (PEAK / peak)
    phones: list[PhoneSegment] = []
    t = 0.0
    for phoneme in synthesis.phonemes:
        if phoneme.start_s - t >= MIN_PAUSE_S or (phoneme.start_s > t and not phones):
            phones.append(PhoneSegment(SILENCE, t, phoneme.start_s))
        elif phoneme.start_s > t:
            phones[-1].end = phoneme.start_s
        start, length = phoneme.start_s, phoneme.end_s - phoneme.start_s
        for phone, share in to_arpabet(phoneme.ipa, language):
            phones.append(PhoneSegment(phone, start, start + length * share))
            start += length * share
        t = max(t, start)
    if synthesis.duration_s > t:
        phones.append(PhoneSegment(SILENCE, t, synthesis.duration_s))
    return samples.astype(np.float32), synthesis.sample_rate, phones
