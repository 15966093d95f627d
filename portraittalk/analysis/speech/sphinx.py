"""pocketsphinx forced alignment of English words (word pass, then a phone/state pass): exact
phone times for a transcript or for the words Whisper recognised. It uses the en-US acoustic
model and CMUdict shipped in the wheel and loads once per process (~0.5 s)."""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...contracts import PhoneSegment, WordSegment
from ...motion.visemes import normalize_phone
from .features import HOP_S

log = logging.getLogger(__name__)

_decoder_lock = threading.Lock()  # pocketsphinx decoders are not thread-safe

# Forced alignment: mean acoustic score per 10 ms frame of the aligned states (pocketsphinx
# scores are relative to the best senone of each frame). Right transcripts score −10…−19 on
# the samples, another sentence's transcript −58…−65.
MIN_ALIGNMENT_SCORE = -35.0


@functools.lru_cache(maxsize=1)
def _align_decoder():
    from pocketsphinx import Decoder

    # bestpath off: its lattice pass can leave a phone one frame long, which the state pass cannot align
    return Decoder(lm=None, bestpath=False, loglevel="FATAL")


def _decode(decoder, pcm: bytes, fresh: bool) -> None:
    # A new clip starts a fresh stream: the decoder otherwise carries its feature normalisation
    # over from the previous clip, and the same clip aligned after another comes out slightly
    # different. The second pass over the same clip keeps what the first one learnt of it.
    if fresh:
        decoder.start_stream()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def transcript_words(transcript: str, lookup, add_word=None) -> tuple[list[str], list[str]]:
    """Dictionary words of a transcript and the tokens the dictionary lacks.

    Lower-cases, drops punctuation, keeps apostrophes ("don't") and abbreviations the
    dictionary knows ("mr."), adds possessives of known words ("dashwood's") through
    ``add_word`` when given, and splits hyphenated words it doesn't know.
    """
    words, missing = [], []
    for raw in re.split(r"\s+", transcript.lower().replace("\u2019", "'")):
        token = re.sub(r"[^\w'.\-]", "", raw).strip("'-_")
        if not token:
            continue
        if lookup(token) is not None:
            words.append(token)
            continue
        if add_word is not None and _add_possessive(token, lookup, add_word):
            words.append(token)
            continue
        for part in re.split(r"[.\-]+", token):
            part = part.strip("'")
            if not part:
                continue
            if lookup(part) is not None:
                words.append(part)
            else:
                missing.append(part)
    return words, missing


def _add_possessive(token: str, lookup, add_word) -> bool:
    """"x's" of a dictionary word x: x's pronunciation + the English plural/possessive ending."""
    if not token.endswith("'s") or len(token) < 3:
        return False
    base = lookup(token[:-2])
    if base is None:
        return False
    last = base.split()[-1]
    if last in ("S", "Z", "SH", "ZH", "CH", "JH"):
        ending = "IH Z"
    else:
        ending = "S" if last in ("P", "T", "K", "F", "TH") else "Z"
    try:
        add_word(token, f"{base} {ending}", True)
    except RuntimeError:
        return False
    return True


@dataclass
class Alignment:
    phones: list[PhoneSegment]
    words: list[WordSegment]  # the text's own words (punctuation and case kept), on the aligned times


def forced_alignment(pcm: bytes, text: str, pronounce: Callable[[str], str | None] | None = None
                     ) -> tuple[Alignment | None, str]:
    """Phone and word times of ``text`` in 16 kHz 16-bit PCM; (None, why not) when it can't be
    aligned. ``pronounce`` spells words CMUdict lacks (ARPAbet, space-separated); without it
    such words make the alignment fail."""
    tokens = text.split()
    with _decoder_lock:
        dec = _align_decoder()
        words: list[str] = []
        origin: list[int] = []  # the token each dictionary word comes from
        missing: list[str] = []
        for k, token in enumerate(tokens):
            found, lacking = transcript_words(token, dec.lookup_word, dec.add_word)
            for word in lacking:
                spelling = pronounce(word) if pronounce is not None else None
                if spelling:
                    dec.add_word(word, spelling, True)
                    found.append(word)
                else:
                    missing.append(word)
            words += found
            origin += [k] * len(found)
        if missing:
            return None, f"Some words of the transcript are not in the English dictionary " \
                         f"({', '.join(dict.fromkeys(missing[:5]))})"
        if not words:
            return None, "The transcript contains no words that can be aligned"
        try:
            dec.set_align_text(" ".join(words))
            _decode(dec, pcm, fresh=True)
            if dec.hyp() is None:
                raise RuntimeError("no alignment path")
            dec.set_alignment()
            _decode(dec, pcm, fresh=False)
            alignment = dec.get_alignment()
            entries = [(p.name, p.start, p.duration) for p in alignment.phones()] if alignment else []
            spans = [(w.name, w.start, w.duration) for w in alignment.words()] if alignment else []
            states = [(st.score, st.duration) for st in alignment.states()] if alignment else []
        except RuntimeError as err:
            log.info("forced alignment failed: %s", err)
            entries, spans, states = [], [], []
    frames = sum(d for _, d in states)
    score = sum(sc for sc, _ in states) / frames if frames else -np.inf
    if not entries or score < MIN_ALIGNMENT_SCORE:
        log.info("forced alignment rejected (score per frame %.1f)", score)
        return None, "The transcript does not seem to match the audio"
    phones = [PhoneSegment(normalize_phone(n), s * HOP_S, (s + d) * HOP_S) for n, s, d in entries]
    timed = [(s * HOP_S, (s + d) * HOP_S) for name, s, d in spans if not name.startswith(("<", "["))]
    return Alignment(phones, _token_spans(tokens, origin, timed)), ""


def _token_spans(tokens: list[str], origin: list[int], timed: list[tuple[float, float]]) -> list[WordSegment]:
    """Each token of the text over the aligned span of the dictionary words made from it."""
    spans: dict[int, tuple[float, float]] = {}
    for k, (start, end) in zip(origin, timed):
        spans[k] = (spans[k][0], end) if k in spans else (start, end)
    return [WordSegment(tokens[k], round(a, 3), round(b, 3)) for k, (a, b) in sorted(spans.items())]
