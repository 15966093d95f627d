"""The recogniser boundary: 16 kHz samples (and a transcript, a language, when given) → timed
phones and words.

1. **A transcript, in English** (or no language known): pocketsphinx force-aligns it
   (method ``forced-alignment``); Whisper is not needed.
2. **Whisper** (:mod:`.whisper`) hears the words, their times and the language. Its words are
   trusted when the no-speech probability of every window is at most ``MAX_NO_SPEECH``, the
   mean token log-probability at least ``MIN_AVG_LOGPROB`` and, when the language was
   detected, its probability at least ``MIN_LANGUAGE_PROBABILITY``. On the development
   samples speech measures ≤ 0.14 / ≥ −0.61 / ≥ 0.94 and the song 0.58 / −0.87 / 0.84:
   singing, music and mumbling stay with the acoustic mouth shapes.
3. **Words → phones:** English words are force-aligned by pocketsphinx (words CMUdict lacks
   are spelt by espeak-ng); other languages are fitted by :mod:`.fit` (method ``espeak-dtw``),
   Japanese after :mod:`.japanese` turns kanji into kana. A transcript in another language
   keeps its own words on the recognised timing (:mod:`.words`).
4. Otherwise the method is ``acoustic``: the caller makes pseudo-phones from the sound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ...contracts import PhoneSegment, WordSegment
from ...errors import InputError, PortraitTalkError
from . import whisper
from .fit import fit_phonemes
from .ipa import to_arpabet
from .sphinx import Alignment, forced_alignment
from .words import retime_words

log = logging.getLogger(__name__)

# Whisper's own rule, tightened: a window it thinks may hold no speech is still trusted when the
# words it read there are confident (a recording cut off mid-word scores 0.55 "no speech" at -0.22).
MAX_NO_SPEECH = 0.5
MIN_AVG_LOGPROB = -0.75
CONFIDENT_LOGPROB = -0.4
MIN_LANGUAGE_PROBABILITY = 0.5
ACOUSTIC_NOTE = "the mouth follows the sound of the voice instead"


@dataclass
class Recognition:
    phones: list[PhoneSegment]  # empty for "acoustic"
    method: str  # "forced-alignment" | "espeak-dtw" | "acoustic"
    language: str = "unknown"
    language_probability: float = 0.0
    words: list[WordSegment] = field(default_factory=list)
    words_from: str = ""  # "transcript" | "recognition" | ""
    text: str = ""  # what Whisper heard
    voiced_spans: list[tuple[float, float]] = field(default_factory=list)  # where a voice was heard
    warnings: list[str] = field(default_factory=list)


def recognize(samples: np.ndarray, db: np.ndarray, transcript: str | None = None, language: str | None = None,
              model: str | None = None) -> Recognition:
    """Timed phones and words of a 16 kHz clip; method "acoustic" (no phones) when the words can't be read.
    ``db`` is the clip's level per 10 ms hop (closures are snapped onto its dips)."""
    pcm = (samples * 32767.0).astype("<i2").tobytes()
    transcript = (transcript or "").strip()
    language = (language or "").strip().lower().replace("_", "-").split("-")[0] or None  # "pt-BR" → "pt"
    english_first = bool(transcript) and language in (None, "en")
    problem = ""
    if english_first:
        aligned, problem = forced_alignment(pcm, transcript)
        if aligned is not None:
            return _aligned(aligned, "transcript", "en", 1.0)
    try:
        heard = whisper.transcribe(samples, language, model)
    except InputError:
        raise
    except PortraitTalkError as err:
        log.warning("speech recogniser unavailable: %s", err)
        lead = f"{problem}, and the speech recogniser is unavailable" if problem else str(err).rstrip(".")
        return Recognition([], "acoustic", warnings=[f"{lead}; {ACOUSTIC_NOTE}."])
    said = [WordSegment(w.text, w.start, w.end) for w in heard.words]
    lang = language or heard.language
    # a transcript pocketsphinx could not align is only worth a word when the speech is English
    note = [f"{problem}; the mouth follows the recognised words instead."] if problem and lang == "en" else []
    base = Recognition([], "acoustic", text=heard.text, warnings=note)
    if transcript and not (english_first and lang == "en"):
        words = retime_words(transcript, said)
        if not words:
            base.warnings.append(f"No speech was recognised to time the transcript by; {ACOUSTIC_NOTE}.")
            return base
        return _spoken(samples, db, pcm, words, "transcript", lang, heard.language_probability, base)
    if not trusted(heard, language is not None):
        log.info("recognised words not trusted (no speech %.2f, log-prob %.2f, %s %.2f)",
                 heard.no_speech_probability, heard.avg_logprob, heard.language, heard.language_probability)
        return base
    return _spoken(samples, db, pcm, said, "recognition", lang, heard.language_probability, base)


def trusted(heard: whisper.Transcription, language_given: bool) -> bool:
    return (bool(heard.words)
            and (heard.no_speech_probability <= MAX_NO_SPEECH or heard.avg_logprob >= CONFIDENT_LOGPROB)
            and heard.avg_logprob >= MIN_AVG_LOGPROB
            and (language_given or heard.language_probability >= MIN_LANGUAGE_PROBABILITY))


def _spoken(samples: np.ndarray, db: np.ndarray, pcm: bytes, words: list[WordSegment], source: str, language: str,
            probability: float, base: Recognition) -> Recognition:
    """Phones of words known to be said in ``language``; ``base`` (acoustic) when none come out."""
    # where words are said: the voice over a music bed (untrusted words' times are not used)
    base.language, base.language_probability = language, probability
    base.voiced_spans = [(w.start, w.end) for w in words]
    if language == "en":
        aligned, problem = forced_alignment(pcm, " ".join(w.text for w in words), english_spelling)
        if aligned is not None:
            result = _aligned(aligned, source, language, probability)
            result.text, result.voiced_spans, result.warnings = base.text, base.voiced_spans, base.warnings
            return result
        log.info("recognised English not aligned (%s): fitting espeak phonemes", problem)
    try:
        if language == "ja":
            from .japanese import kana_words
            phones = fit_phonemes(samples, kana_words(words), language, db)
        else:
            phones = fit_phonemes(samples, words, language, db)
    except PortraitTalkError as err:  # no espeak voice for it, or espeak itself missing
        base.warnings.append(f"{str(err).rstrip('.')}; {ACOUSTIC_NOTE}.")
        return base
    if not phones:
        return base
    return Recognition(phones, "espeak-dtw", language, probability, words, source, base.text, base.voiced_spans,
                       base.warnings)


def _aligned(aligned: Alignment, source: str, language: str, probability: float) -> Recognition:
    return Recognition(aligned.phones, "forced-alignment", language, probability, aligned.words, source,
                       voiced_spans=[(p.start, p.end) for p in aligned.phones if p.phone != "SIL"])


def english_spelling(word: str) -> str | None:
    """ARPAbet for an English word CMUdict lacks (a name, a number), as espeak-ng reads it."""
    from ...espeak import phonemes

    try:
        arpabet = [a for p in phonemes(word, "en") for a, _ in to_arpabet(p.ipa, "en") if a != "SIL"]
    except PortraitTalkError:
        return None
    return " ".join(arpabet) or None
