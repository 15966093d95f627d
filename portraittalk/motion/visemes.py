"""Phone → mouth-shape (viseme) targets on the MotionTrack mouth channels.

The shapes follow the classic animation mouth chart (Preston Blair's Disney-era
chart, whose A–H/X shapes Rhubarb Lip Sync also uses) refined towards the MPEG-4
viseme groups, expressed in the units of :class:`portraittalk.contracts.MotionTrack`:

=========================  =====  =====  ======  =====  =====  =====  ======  ===========================
phones                     jaw    close  wide    round  tuck   raise  tongue  shape (Blair / Rhubarb)
=========================  =====  =====  ======  =====  =====  =====  ======  ===========================
SIL (silence, fillers)     0      0      0       0      0      0      0       rest (X)
P B M                      0      1      0       0      0      0      0       closed lips (A)
F V                        0.12   0      0.10    0      1      0.35   0       lower lip under teeth (G)
TH DH                      0.18   0      0.10    0      0      0.10   0.8     tongue between teeth
L                          0.28   0      0.10    0      0      0.10   0.6     tongue up (H)
T D N                      0.15   0      0.20    0      0      0.15   0.15    teeth almost together (B)
S Z                        0.08   0      0.30    0      0      0.25   0       teeth together (B)
K G NG                     0.25   0      0.05    0      0      0.05   0       slightly open (B)
HH                         0.30   0      0       0      0      0      0       takes the next vowel (weak)
Y                          0.15   0      0.50    0      0      0.20   0       spread, nearly closed
SH ZH CH JH                0.15   0      -0.40   0.70   0      0.30   0       protruded, slightly open
W                          0.10   0      -0.90   1.00   0      0      0       puckered (F)
R                          0.15   0      -0.40   0.55   0      0.10   0       rounded (E)
UW                         0.20   0      -0.80   0.90   0      0      0       puckered (F)
UH                         0.25   0      -0.50   0.60   0      0      0       rounded (E/F)
OW                         0.32   0      -0.60   0.75   0      0      0       rounded open (E/F)
AO                         0.45   0      -0.30   0.50   0      0      0       open rounded (E)
ER                         0.22   0      -0.20   0.40   0      0.10   0       slightly rounded (E)
IY                         0.15   0      0.90    0      0      0.30   0       spread (B/C)
IH                         0.25   0      0.60    0      0      0.20   0       spread (C)
EY                         0.50   0      0.60    0      0      0.20   0       half-open spread (C)
EH                         0.62   0      0.40    0      0      0.20   0       open spread (C)
AE                         0.80   0      0.50    0      0      0.30   0       open (C/D)
AH                         0.70   0      0.10    0      0      0.10   0       open (C)
AA                         1.00   0      0       0      0      0.10   0       wide open (D)
AW AY OY (diphthongs)      first vowel → second vowel, see ``DIPHTHONGS``
=========================  =====  =====  ======  =====  =====  =====  ======  ===========================

Each phone also has a *dominance* (how strongly it imposes its shape on its
neighbours, Cohen & Massaro 1993): bilabials, labiodentals and rounded consonants
dominate the lips; vowels dominate the jaw; HH, T/D/N, K/G are weak so vowel
rounding and jaw spread through them, as in natural coarticulation.

Rounded vowels open the jaw less than the unrounded open ones (EH, AE, AH): rounding already
parts the lips (the rig pushes them out), and measured on rendered frames the rounded vowels
otherwise showed a wider lip gap than EH/AH, inverting the order of the mouth chart.
"""

from __future__ import annotations

MOUTH_CHANNELS: tuple[str, ...] = (
    "jaw_open", "lip_close", "mouth_wide", "lip_round", "lower_lip_tuck", "upper_lip_raise", "tongue",
)

SILENCE = "SIL"


def _shape(jaw=0.0, close=0.0, wide=0.0, round_=0.0, tuck=0.0, raise_=0.0, tongue=0.0) -> dict[str, float]:
    return {"jaw_open": jaw, "lip_close": close, "mouth_wide": wide, "lip_round": round_,
            "lower_lip_tuck": tuck, "upper_lip_raise": raise_, "tongue": tongue}


REST: dict[str, float] = _shape()

VISEME_TARGETS: dict[str, dict[str, float]] = {
    SILENCE: REST,
    # bilabials: lips pressed together
    "P": _shape(close=1.0), "B": _shape(close=1.0), "M": _shape(close=1.0),
    # labiodentals: lower lip under the upper teeth
    "F": _shape(jaw=0.12, wide=0.1, tuck=1.0, raise_=0.35), "V": _shape(jaw=0.12, wide=0.1, tuck=1.0, raise_=0.35),
    # dentals / laterals: tongue visible
    "TH": _shape(jaw=0.18, wide=0.1, raise_=0.1, tongue=0.8), "DH": _shape(jaw=0.18, wide=0.1, raise_=0.1, tongue=0.8),
    "L": _shape(jaw=0.28, wide=0.1, raise_=0.1, tongue=0.6),
    # alveolars, sibilants, velars: teeth (nearly) together
    "T": _shape(jaw=0.15, wide=0.2, raise_=0.15, tongue=0.15),
    "D": _shape(jaw=0.15, wide=0.2, raise_=0.15, tongue=0.15),
    "N": _shape(jaw=0.15, wide=0.2, raise_=0.15, tongue=0.15),
    "S": _shape(jaw=0.08, wide=0.3, raise_=0.25), "Z": _shape(jaw=0.08, wide=0.3, raise_=0.25),
    "K": _shape(jaw=0.25, wide=0.05, raise_=0.05), "G": _shape(jaw=0.25, wide=0.05, raise_=0.05),
    "NG": _shape(jaw=0.25, wide=0.05, raise_=0.05),
    "HH": _shape(jaw=0.30),
    "Y": _shape(jaw=0.15, wide=0.5, raise_=0.2),
    # post-alveolars: rounded, protruded, slightly open
    **{p: _shape(jaw=0.15, wide=-0.4, round_=0.7, raise_=0.3) for p in ("SH", "ZH", "CH", "JH")},
    # rounded
    "W": _shape(jaw=0.10, wide=-0.9, round_=1.0), "R": _shape(jaw=0.15, wide=-0.4, round_=0.55, raise_=0.1),
    "UW": _shape(jaw=0.20, wide=-0.8, round_=0.9), "UH": _shape(jaw=0.25, wide=-0.5, round_=0.6),
    "OW": _shape(jaw=0.32, wide=-0.6, round_=0.75), "AO": _shape(jaw=0.45, wide=-0.3, round_=0.5),
    "ER": _shape(jaw=0.22, wide=-0.2, round_=0.4, raise_=0.1),
    # spread
    "IY": _shape(jaw=0.15, wide=0.9, raise_=0.3), "IH": _shape(jaw=0.25, wide=0.6, raise_=0.2),
    "EY": _shape(jaw=0.50, wide=0.6, raise_=0.2), "EH": _shape(jaw=0.62, wide=0.4, raise_=0.2),
    # open
    "AE": _shape(jaw=0.80, wide=0.5, raise_=0.3), "AH": _shape(jaw=0.70, wide=0.1, raise_=0.1),
    "AA": _shape(jaw=1.00, raise_=0.1),
    # diphthongs: the single target is their average; motion.py splits them with DIPHTHONGS
    "AW": _shape(jaw=0.70, wide=-0.3, round_=0.4), "AY": _shape(jaw=0.65, wide=0.4, raise_=0.2),
    "OY": _shape(jaw=0.45, wide=0.2, round_=0.3, raise_=0.1),
}

# A diphthong glides from its first vowel to its second; the first holds longer.
DIPHTHONGS: dict[str, tuple[str, str, float]] = {
    "AW": ("AA", "UH", 0.55), "AY": ("AA", "IY", 0.55), "OY": ("AO", "IY", 0.55),
}

# Dominance (Cohen–Massaro weight) per phone: how strongly the phone holds its own shape
# against its neighbours. Lips of P/B/M/F/V/W are hard constraints; vowels own the jaw.
_DEFAULT_DOMINANCE = 0.6
DOMINANCE: dict[str, float] = {
    "P": 3.0, "B": 3.0, "M": 3.0, "F": 2.5, "V": 2.5, "W": 2.0, "UW": 1.3, "OW": 1.2,
    "SH": 1.5, "ZH": 1.5, "CH": 1.5, "JH": 1.5, "TH": 1.2, "DH": 1.2, "L": 0.8, "R": 1.0,
    "AA": 1.2, "AE": 1.2, "AH": 1.0, "AO": 1.1, "AW": 1.2, "AY": 1.2, "OY": 1.1, "EH": 1.0, "EY": 1.0,
    "IY": 1.0, "IH": 0.9, "UH": 1.0, "ER": 0.9,
    "HH": 0.15, "T": 0.4, "D": 0.4, "N": 0.4, "K": 0.3, "G": 0.3, "NG": 0.3, "S": 0.6, "Z": 0.6, "Y": 0.6,
    SILENCE: 1.0,
}

# Coarse viseme classes: used to compare two phone sequences by what the lips show.
VISEME_CLASSES: dict[str, str] = {
    **{p: "closed" for p in ("P", "B", "M")},
    **{p: "lip-teeth" for p in ("F", "V")},
    **{p: "tongue" for p in ("TH", "DH", "L")},
    **{p: "teeth" for p in ("T", "D", "N", "S", "Z", "K", "G", "NG", "HH", "Y")},
    **{p: "rounded" for p in ("SH", "ZH", "CH", "JH", "W", "R", "UW", "UH", "OW", "AO", "ER", "OY")},
    **{p: "spread" for p in ("IY", "IH", "EY", "EH")},
    **{p: "open" for p in ("AA", "AE", "AH", "AW", "AY")},
    SILENCE: "rest",
}

VOWELS: frozenset[str] = frozenset(
    {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})

ARPABET_PHONES: frozenset[str] = frozenset(p for p in VISEME_TARGETS if p != SILENCE)


def normalize_phone(label: str) -> str:
    """ARPAbet without stress digits; silence, noise and filler labels ("<sil>", "+NSN+", "SPN") → "SIL"."""
    p = label.strip().upper().rstrip("012")
    return p if p in ARPABET_PHONES else SILENCE


def viseme_target(phone: str) -> dict[str, float]:
    """Mouth-channel target of one phone (unknown labels are treated as silence)."""
    return dict(VISEME_TARGETS[normalize_phone(phone)])


def viseme_class(phone: str) -> str:
    """Coarse lip class of a phone: closed, lip-teeth, tongue, teeth, rounded, spread, open or rest."""
    return VISEME_CLASSES[normalize_phone(phone)]


def dominance(phone: str) -> float:
    return DOMINANCE.get(normalize_phone(phone), _DEFAULT_DOMINANCE)
