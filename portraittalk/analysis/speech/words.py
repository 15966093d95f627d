"""The words of a transcript, timed from the words Whisper recognised in the same recording.

Both texts are reduced to their letters and digits and lined up character by character
(difflib); each recognised character carries an even share of its word's time span. A
transcript character that matches takes that time; the others are interpolated between the
matched ones, so a corrected word lands where the misheard one was said.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from ...contracts import WordSegment

# Written without spaces between words: tokens are single characters.
UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f]")


def tokens(text: str) -> list[str]:
    """The text's words: whitespace-separated, and each CJK / kana / Thai character on its own."""
    out: list[str] = []
    for chunk in text.split():
        out += [t for t in re.split(f"({UNSPACED.pattern})", chunk) if t and any(c.isalnum() for c in t)]
    return out


def join_words(words: Sequence[str]) -> str:
    """Words as written: spaced, except between characters of unspaced scripts (Japanese, Chinese, Thai)."""
    text = ""
    for w in words:
        glued = text and UNSPACED.match(text[-1]) and UNSPACED.match(w[0])
        text += w if not text or glued else " " + w
    return text


def _letters(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def retime_words(text: str, recognized: Sequence[WordSegment]) -> list[WordSegment]:
    """The transcript's words, each spanning the time of the recognised speech it lines up with."""
    words = tokens(text)
    heard = [w for w in recognized if _letters(w.text)]
    if not words or not heard:
        return []
    starts: list[float] = []
    ends: list[float] = []
    for w in heard:
        n = len(_letters(w.text))
        edges = np.linspace(w.start, w.end, n + 1)
        starts += edges[:-1].tolist()
        ends += edges[1:].tolist()
    heard_letters = "".join(_letters(w.text) for w in heard)
    given = [_letters(w) for w in words]
    given_letters = "".join(given)
    # anchors: (index of a transcript character, time it starts); the ends pin the whole span
    at, times = [0.0], [heard[0].start]
    matcher = difflib.SequenceMatcher(None, given_letters, heard_letters, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            at.append(block.a + k + 0.5)
            times.append(0.5 * (starts[block.b + k] + ends[block.b + k]))
    at.append(float(len(given_letters)))
    times.append(heard[-1].end)
    forwards = np.maximum.accumulate(np.asarray(times))  # keep time running forwards
    out, pos = [], 0
    for word, letters in zip(words, given):
        a, b = np.interp([pos, pos + len(letters)], at, forwards)
        out.append(WordSegment(word, round(float(a), 3), round(float(max(b, a + 0.02)), 3)))
        pos += len(letters)
    return out
