"""IPA phonemes (as espeak-ng 1.52 emits them) → the ARPAbet phones the mouth shapes are defined on.

Each phoneme goes to the ARPAbet phone whose *mouth shape* is nearest (lip closure, lip-teeth
contact, rounding, jaw opening), not the one that sounds nearest: German and French uvular r
become G (lips neutral), not English R (lips rounded); front rounded vowels become UW/UH.
Compound phonemes (Mandarin finals, en-us r-coloured vowels, affricates without an ARPAbet
phone) become a short sequence whose weights split the duration. The table covers every
symbol espeak emitted for es, fr, de, en-us, cmn and ja on a coverage text.
"""

from __future__ import annotations

import unicodedata

Weighted = tuple[tuple[str, float], ...]

# value: "PHONE" or tuple of (PHONE, weight) pairs (weights sum to 1)
IPA_TO_ARPA: dict[str, str | Weighted] = {
    # ---------------- bilabial (lips closed) ----------------
    "p": "P", "ph": "P", "b": "B", "m": "M",
    "β": "B",    # es intervocalic b/v: lips nearly closed (weak closure, see WEAK_CLOSURES)
    "ɸ": "F",    # ja ふ: bilabial fricative, lips narrowed (no teeth); F is the usual romanisation
    "pf": (("P", 0.4), ("F", 0.6)),   # de Pfeffer
    # ---------------- labiodental ----------------
    "f": "F", "v": "V",
    # ---------------- dental ----------------
    "θ": "TH", "ð": "DH",
    # ---------------- alveolar stops / nasals / laterals ----------------
    "t": "T", "th": "T", "d": "D", "n": "N", "n̩": "N", "l": "L",
    "ɾ": "D",    # tap (es pero, en-us butter, de) – tongue tip, lips neutral
    "ɽ": "L",    # ja r (flap, often heard as l)
    "ʔ": "SIL",  # glottal stop (en-us button): mouth holds, no articulation
    "ts": (("T", 0.4), ("S", 0.6)), "tsh": (("T", 0.4), ("S", 0.6)),
    # ---------------- sibilants ----------------
    "s": "S", "z": "Z",
    "ʃ": "SH", "ʒ": "ZH",
    "ɕ": "SH",   # cmn x, ja し (spread lips, but SH is nearest phone)
    "s.": "SH",  # cmn sh (espeak writes retroflex ʂ as 's.')
    "ʐ": "R",    # cmn r (ɻ-like approximant)
    # ---------------- affricates ----------------
    "tʃ": "CH", "dʒ": "JH",
    "tɕ": "CH", "tɕh": "CH", "dʑ": "JH",     # cmn j / q, ja じ
    "ts.": "JH", "ts.h": "CH",               # cmn zh / ch
    # ---------------- dorsal / glottal ----------------
    "k": "K", "kh": "K", "ɡ": "G", "g": "G", "ɣ": "G", "ŋ": "NG", "ɴ": "NG",
    "x": "HH", "χ": "HH", "h": "HH", "ç": "HH",
    "ʁ": "G",    # fr/de uvular r: dorsal, unrounded lips -> velar shape (not English R, which is lip-rounded)
    # ---------------- approximants ----------------
    "ɹ": "R", "r": "R",   # r = trill (es perro; de overrides to G below)
    "j": "Y", "ʝ": "Y", "ʲ": "Y",
    "w": "W", "ɥ": "W",
    "ɲ": (("N", 0.6), ("Y", 0.4)), "ʎ": (("L", 0.6), ("Y", 0.4)),
    # ---------------- vowels: close front ----------------
    "i": "IY", "iː": "IY", "ɪ": "IH", "ᵻ": "IH", "i̪": "IH",
    "i.": "ER",  # cmn apical vowel after zh/ch/sh/r (r-coloured)
    "y": "UW", "yː": "UW", "ʏ": "UH",   # front rounded: lips as for UW / UH
    # ---------------- mid front ----------------
    "e": "EY", "eː": "EY", "e̞": "EY", "ɛ": "EH", "ɛː": "EH", "æ": "AE",
    "ø": "OW", "øː": "OW",              # close-mid rounded -> rounded mid lips
    "œ": "AO",                          # open-mid rounded
    # ---------------- central ----------------
    "ə": "AH", "ɐ": "AH", "ʌ": "AH", "ɜ": "AH",   # de '-er' is vocalic [ɐ]
    "ɜː": "ER", "ɚ": "ER", "ɝ": "ER", "ər": "ER",
    "o-": "AH",  # cmn e [ɤ]: unrounded mid back
    # ---------------- open ----------------
    "a": "AA", "ä": "AA", "ɑ": "AA", "ɑː": "AA", "ɒ": "AA",
    # ---------------- back rounded ----------------
    "ɔ": "AO", "ɔː": "AO", "o": "OW", "oː": "OW", "o̞": "OW",
    "ʊ": "UH", "u": "UW", "uː": "UW",
    "ɯᵝ": "UH",  # ja う: compressed, weakly rounded
    "ɯ": "UH",
    # ---------------- nasal vowels (fr, ja) ----------------
    "ɑ̃": "AA", "ɔ̃": "OW", "ɛ̃": "EH", "œ̃": "EH",
    "ũ": "N",    # ja moraic ん realised as nasal vowel: neutral mouth
    # ---------------- diphthongs ----------------
    "aɪ": "AY", "ai": "AY", "aʊ": "AW", "ɑu": "AW", "au": "AW",
    "eɪ": "EY", "ei": "EY", "ɔɪ": "OY", "ɔø": "OY", "ɔʏ": "OY",
    "oʊ": "OW", "əʊ": "OW", "ou": "OW",
    "eə": (("EH", 0.6), ("AH", 0.4)), "iə": (("IH", 0.6), ("AH", 0.4)), "ʊə": (("UH", 0.6), ("AH", 0.4)),
    "əl": (("AH", 0.4), ("L", 0.6)),
    # en-us r-coloured vowels (single espeak phonemes)
    "ɑːɹ": (("AA", 0.6), ("R", 0.4)), "ɔːɹ": (("AO", 0.6), ("R", 0.4)), "ɛɹ": (("EH", 0.6), ("R", 0.4)),
    "ɪɹ": (("IH", 0.6), ("R", 0.4)), "ʊɹ": (("UH", 0.6), ("R", 0.4)), "ɜːɹ": "ER", "əɹ": "ER",
    # cmn compound finals (glide + vowel [+ glide])
    "ia": (("Y", 0.3), ("AA", 0.7)), "iɑ": (("Y", 0.3), ("AA", 0.7)), "iɛ": (("Y", 0.3), ("EH", 0.7)),
    "iou": (("Y", 0.25), ("OW", 0.75)), "ua": (("W", 0.3), ("AA", 0.7)), "uo": (("W", 0.3), ("AO", 0.7)),
    "uə": (("W", 0.3), ("AH", 0.7)), "uei": (("W", 0.3), ("EY", 0.7)),
    "yæ": (("W", 0.3), ("AE", 0.7)), "yə": (("W", 0.3), ("AH", 0.7)), "yɛ": (("W", 0.3), ("EH", 0.7)),
    "onɡ": (("UH", 0.6), ("NG", 0.4)), "ong": (("UH", 0.6), ("NG", 0.4)),
    # pauses
    "_": "SIL", "": "SIL", " ": "SIL",
}

# per-language overrides (same IPA, different mouth)
LANG_OVERRIDES: dict[str, dict[str, str | Weighted]] = {
    "de": {"r": "G", "ɾ": "G"},    # de r is uvular (espeak writes both r and ɾ); vocalised -er comes out as ɜ
    "fr": {"r": "G", "ə": "AH"},
    "ja": {"ɾ": "L"},
}

# Bilabial, but usually not a full closure (Spanish intervocalic b/v): never snapped shut.
WEAK_CLOSURES = frozenset({"β"})
_STRIP = "ˈˌː-ˑ̆"


def _lookup(ipa: str, language: str | None) -> str | Weighted | None:
    if language:
        for key in (language, language.split("-")[0]):
            if ipa in LANG_OVERRIDES.get(key, {}):
                return LANG_OVERRIDES[key][ipa]
    return IPA_TO_ARPA.get(ipa)


def to_arpabet(ipa: str, language: str | None = None) -> list[tuple[str, float]]:
    """One espeak phoneme → [(ARPAbet phone, share of its duration), …]; [] for a non-sound."""
    s = unicodedata.normalize("NFC", ipa.strip().strip("ˈˌ"))
    if s.startswith("("):  # a language-switch marker such as "(en)"
        return []
    bare = "".join(c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c) and c not in _STRIP)
    for candidate in (s, s.replace("-", "").rstrip("."), s.rstrip("ː"), bare, s[:1]):
        value = _lookup(candidate, language)
        if value is not None:
            return [(value, 1.0)] if isinstance(value, str) else list(value)
    return [("AH", 1.0)]  # an unknown vowel-like sound: a neutral half-open mouth
