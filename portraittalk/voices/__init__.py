"""Speech from typed text: the voices, and ``synthesize_speech(text, voice)``.

The sound comes with the phones it was made of, timed by the synthesiser itself, so a typed
sentence needs no recogniser and gives the most exact lip sync PortraitTalk makes.

* ``heart``: American English, female, natural (hibari-tts, Apache-2.0; :mod:`.english`).
* one robotic espeak-ng voice per language of :data:`portraittalk.espeak.LANGUAGES`
  (GPL-3.0-or-later; :mod:`.espeak_voices`), named by its language code: ``es``, ``ja`` …

Text a voice cannot read ends in one sentence (:class:`~portraittalk.errors.InputError`).
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contracts import PhoneSegment
from ..errors import InputError
from ..espeak import LANGUAGES
from ..motion.visemes import SILENCE

if TYPE_CHECKING:
    from .english import EnglishVoice

MAX_CHARS = 5000  # about 5 minutes of speech; the English voice reads it in a few seconds


@dataclass(frozen=True)
class Voice:
    name: str  # what --voice and the API take
    label: str  # what the page shows
    language: str  # ISO 639-1 code (with region where espeak needs one)
    engine: str  # "hibari" | "espeak-ng"


DEFAULT_VOICE = "heart"
VOICES: dict[str, Voice] = {
    DEFAULT_VOICE: Voice(DEFAULT_VOICE, "Heart · American English, female, natural", "en", "hibari"),
    **{code: Voice(code, f"{name} · robotic", code, "espeak-ng") for code, name in LANGUAGES.items()},
}


@dataclass(frozen=True, eq=False)
class SynthesizedSpeech:
    """Speech made from text: the sound and the phones it was made of (they tile the sound)."""

    text: str
    voice: str
    samples: np.ndarray  # (N,) float32 mono in [-1, 1]
    sample_rate: int
    phones: list[PhoneSegment]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def check_duration(self, limit_s: float) -> None:
        """InputError when the speech is longer than ``limit_s``."""
        if self.duration_s > limit_s:
            raise InputError(f"The text makes {self.duration_s:.0f} s of speech but the limit is {limit_s:g} s; "
                             "please shorten it.")

    def write_wav(self, path: str | Path) -> Path:
        from ..io.audio import write_wav
        return write_wav(path, self.samples, self.sample_rate)


def check_text(text: str | None, voice: str) -> Voice:
    """The voice, when it can read ``text``; otherwise an InputError saying what to change."""
    if voice not in VOICES:
        raise InputError(f"There is no voice '{voice}'; choose one of: {', '.join(VOICES)}.")
    if text is None or not text.strip():
        raise InputError("There is no text to say; please type a sentence.")
    if len(text) > MAX_CHARS:
        raise InputError(f"The text is too long ({len(text)} characters); the limit is {MAX_CHARS}, please shorten it.")
    letters = [c for c in text if unicodedata.category(c)[0] == "L"]
    if not letters and not any(unicodedata.category(c) == "Nd" for c in text):
        raise InputError("The text has no letters or digits to say, only symbols; please type words.")
    chosen = VOICES[voice]
    latin = sum("LATIN" in unicodedata.name(c, "") for c in letters)
    if chosen.language == "en" and latin * 2 < len(letters):
        raise InputError(f"The voice '{voice}' reads English only; for text in another script choose the voice "
                         "of its language (for example ru for Russian or ja for Japanese).")
    if chosen.language == "ja" and any(unicodedata.name(c, "").startswith("CJK") for c in letters):
        raise InputError("Japanese text must be written in hiragana or katakana: the Japanese voice cannot "
                         "read kanji.")
    return chosen


@functools.lru_cache(maxsize=4)  # the page checks the text before the render reads it
def synthesize_speech(text: str, voice: str = DEFAULT_VOICE) -> SynthesizedSpeech:
    """``text`` read by ``voice``, with its phones; InputError for text the voice cannot read."""
    chosen = check_text(text, voice)
    if chosen.engine == "hibari":
        samples, phones = _english_voice().speak(text)
        rate = _english_voice().sample_rate
    else:
        from .espeak_voices import speak
        samples, rate, phones = speak(text, chosen.language)
    if not any(p.phone != SILENCE for p in phones) or not samples.size:
        raise InputError("The text gave no speech; please type words in the voice's language.")
    return SynthesizedSpeech(text, voice, samples, rate, phones)


@functools.lru_cache(maxsize=1)
def _english_voice() -> EnglishVoice:
    from .english import EnglishVoice
    return EnglishVoice()
