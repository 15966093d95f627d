"""The parsed prompt (:class:`PromptControls`) and how recognised phrases become its control values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bank import LABEL_GROUP, UNSUPPORTED_REASON

# Expression patterns at full amount (1.0) on the rig's channels. The rig's zero is the
# portrait's own expression, so these are offsets from it. eye_squint becomes a constant
# partial lid closure (the blink channel); eye_wide lifts the upper lids (the eye_wide channel).
EXPRESSION_PATTERNS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 1.0, "brow_raise": 0.15, "eye_squint": 0.25},
    "sad": {"smile": -0.9, "brow_raise": -0.1, "eye_squint": 0.4},
    "surprised": {"brow_raise": 1.0, "eye_wide": 0.8},
    "angry": {"brow_raise": -1.0, "smile": -0.5, "eye_squint": 0.5},
    "thoughtful": {"brow_raise": -0.4, "smile": -0.15, "eye_squint": 0.25},
    "worried": {"brow_raise": 0.6, "smile": -0.4, "eye_wide": 0.2},
    "squint": {"eye_squint": 0.8},
    "eyes_wide": {"eye_wide": 1.0, "brow_raise": 0.3},
}
EXPRESSION_CHANNELS = ("smile", "brow_raise", "eye_squint", "eye_wide")
CHANNEL_RANGE = {"smile": (-1.0, 1.0), "brow_raise": (-1.0, 1.0), "eye_squint": (0.0, 1.0), "eye_wide": (0.0, 1.0)}
DEFAULT_AMOUNT = 0.6  # expression amount of a plain mention ("smiling") at prompt strength 1

# Head-motion multipliers of a plain mention; intensity k raises them to the power k.
HEAD_MOTION_FACTOR = {"still": 0.1, "calm": 0.4, "lively": 1.8, "thoughtful": 0.7}
BLINK_FACTOR = {"blink_often": 2.0, "blink_rarely": 0.35}


@dataclass
class IgnoredPhrase:
    phrase: str
    reason: str

    def __str__(self) -> str:
        return f'"{self.phrase}" ({self.reason})'


@dataclass
class SpanMatch:
    """One recognised phrase of the prompt."""

    text: str  # the words matched (modifiers taken out)
    label: str  # a key of BANK
    score: float  # cosine similarity to the closest bank phrase (1.0 = exact)
    closest: str  # that bank phrase
    negated: bool = False
    intensity: float = 1.0


@dataclass
class PromptControls:
    """What the warp engine will do with a prompt; every field defaults to "no change"."""

    text: str = ""
    strength: float = 1.0
    # Offsets on the MotionTrack expression channels (constant over the clip):
    # smile, brow_raise in −1…1; eye_squint, eye_wide in 0…1 (lid closure / extra opening).
    expression: dict[str, float] = field(default_factory=dict)
    head_motion_scale: float = 1.0  # multiplies the head-motion amplitude
    nod: float = 0.0  # 0…1 extra pitch oscillation ("nodding")
    shake: float = 0.0  # 0…1 extra yaw oscillation ("shaking the head")
    look_around: float = 0.0  # −1 (gaze held on the camera) … 0 (default) … 1 (looking around a lot)
    blink_rate_scale: float = 1.0  # multiplies the blink rate; 0 = never blink
    style: str | None = None  # one of style.available_styles(), or None
    style_strength: float = 0.0  # 0…1 blend of the look over the frame
    understood: list[str] = field(default_factory=list)  # human phrases, e.g. "smile 0.6"
    ignored: list[IgnoredPhrase] = field(default_factory=list)
    matches: list[SpanMatch] = field(default_factory=list)
    used_text_model: bool = False

    def summary(self) -> str:
        """One line for the user, e.g. `smile 0.6 · sepia · head motion low ×0.40 · ignored: "a hat" (…)`."""
        parts = list(self.understood)
        if self.ignored:
            parts.append("ignored: " + ", ".join(str(i) for i in self.ignored))
        return " · ".join(parts) if parts else "no prompt"

    def to_dict(self) -> dict[str, Any]:
        """For SCORES.json."""
        return {
            "text": self.text,
            "strength": self.strength,
            "summary": self.summary(),
            "expression": {k: round(v, 3) for k, v in self.expression.items()},
            "head_motion_scale": round(self.head_motion_scale, 3),
            "nod": round(self.nod, 3),
            "shake": round(self.shake, 3),
            "look_around": round(self.look_around, 3),
            "blink_rate_scale": round(self.blink_rate_scale, 3),
            "style": self.style,
            "style_strength": round(self.style_strength, 3),
            "understood": list(self.understood),
            "ignored": [{"phrase": i.phrase, "reason": i.reason} for i in self.ignored],
            "matches": [{"text": m.text, "label": m.label, "similarity": round(m.score, 3),
                         "closest_example": m.closest, "negated": m.negated,
                         "intensity": round(m.intensity, 3)} for m in self.matches],
            "text_model": "all-MiniLM-L6-v2" if self.used_text_model else None,
        }


def _amount(m: SpanMatch, strength: float) -> float:
    return float(np.clip(DEFAULT_AMOUNT * m.intensity * strength, 0.0, 1.0))


def _merge_mentions(matches: list[SpanMatch]) -> list[SpanMatch]:
    """One effective mention per label: a later yes/no decides; among yeses the strongest counts."""
    merged: dict[str, SpanMatch] = {}
    for m in matches:
        prev = merged.get(m.label)
        if prev is None or m.negated or prev.negated or m.intensity > prev.intensity:
            merged[m.label] = m
    return list(merged.values())


def combine(out: PromptControls) -> None:
    """Turn the matched phrases into control values and the human summary."""
    s = out.strength
    expr: dict[str, float] = {}
    expr_items: list[str] = []
    motion_items: list[str] = []
    style_items: list[str] = []
    head_factors: list[float] = []
    look, blink = 0.0, 1.0
    head_mentioned = blink_mentioned = False
    styles: list[SpanMatch] = []
    for m in out.matches:
        if LABEL_GROUP[m.label] == "unsupported":
            out.ignored.append(IgnoredPhrase(m.text, UNSUPPORTED_REASON[m.label]))
    for m in _merge_mentions([m for m in out.matches if LABEL_GROUP[m.label] != "unsupported"]):
        group, k = LABEL_GROUP[m.label], m.intensity * s
        if group == "expression":
            name = "smile" if m.label == "happy" else m.label.replace("_", " ")
            if m.label == "neutral" or m.negated:
                # The rig's zero is the portrait's own face: "not smiling" adds no smile.
                for ch in EXPRESSION_PATTERNS[m.label] or EXPRESSION_CHANNELS:
                    expr.setdefault(ch, 0.0)
                expr_items.append(("not neutral" if m.label == "neutral" else f"no {name}") if m.negated
                                  else "neutral")
                continue
            a = _amount(m, s)
            for ch, v in EXPRESSION_PATTERNS[m.label].items():
                expr[ch] = expr.get(ch, 0.0) + v * a
            expr_items.append(f"{name} {a:.1f}")
            if m.label == "thoughtful":  # a thinker holds still and looks away now and then
                head_factors.append(HEAD_MOTION_FACTOR["thoughtful"] ** min(k, 2.0))
                look += 0.4 * a
        elif group == "motion":
            if m.label in HEAD_MOTION_FACTOR:
                head_mentioned = True
                if not m.negated:
                    head_factors.append(HEAD_MOTION_FACTOR[m.label] ** min(k, 2.0))
            elif m.label in ("nod", "shake"):
                value = 0.0 if m.negated else float(np.clip(0.6 * k, 0.0, 1.0))
                setattr(out, m.label, value)
                name = "nodding" if m.label == "nod" else "head shaking"
                motion_items.append(f"no {name}" if m.negated else f"{name} {value:.1f}")
            elif m.label == "look_around":
                look += -0.7 if m.negated else 0.6 * k
                motion_items.append("steady gaze" if m.negated else f"looking around {min(1.0, 0.6 * k):.1f}")
            elif m.label == "eye_contact":
                look += 0.5 if m.negated else -0.8 * min(k, 1.25)
                motion_items.append("looking away" if m.negated else "steady gaze")
        elif group == "blink":
            blink_mentioned = True
            if m.label == "blink_never" or (m.label == "blink_often" and m.negated):
                blink = 0.0
            elif not m.negated:  # "not rarely blinking" / "not unblinking" leave blinking as it is
                blink *= BLINK_FACTOR[m.label] ** min(k, 2.0)
        elif group == "style":
            if m.negated:
                style_items.append(f"no {m.label}")
            else:
                styles.append(m)

    for ch, v in expr.items():
        lo, hi = CHANNEL_RANGE[ch]
        expr[ch] = round(float(np.clip(v, lo, hi)), 4)
    out.expression = expr
    # "calm and still" is as still as "still", not stiller: the strongest damping and the
    # strongest boost count (a contradictory "calm but lively" partly cancels).
    head_factor = min([1.0] + head_factors) * max([1.0] + head_factors)
    out.head_motion_scale = round(float(np.clip(head_factor, 0.0, 3.0)), 4)
    out.look_around = round(float(np.clip(look, -1.0, 1.0)), 4)
    out.blink_rate_scale = round(float(np.clip(blink, 0.0, 4.0)), 4)
    hm = out.head_motion_scale
    if head_mentioned or hm != 1.0:
        level = "still" if hm < 0.2 else "low" if hm < 0.8 else "high" if hm > 1.2 else "normal"
        motion_items.insert(0, f"head motion {level} ×{hm:.2f}")
    if blink_mentioned:
        b = out.blink_rate_scale
        motion_items.append("no blinking" if b == 0 else f"blink rate ×{b:.2f}")

    # One look at a time: the strongest mention wins (the first on a tie); the rest are reported.
    if styles:
        win = max(styles, key=lambda m: (m.intensity, -styles.index(m)))
        out.style = win.label
        out.style_strength = round(float(np.clip(win.intensity * s, 0.0, 1.0)), 4)
        style_items.insert(0, out.style if out.style_strength >= 0.995 else f"{out.style} {out.style_strength:.1f}")
        for m in styles:
            if m is not win:
                out.ignored.append(IgnoredPhrase(m.text, f"one look at a time; {win.label} is used"))
    out.understood = expr_items + style_items + motion_items
    unique: dict[tuple[str, str], IgnoredPhrase] = {}
    for item in out.ignored:
        unique.setdefault((item.phrase, item.reason), item)
    out.ignored = list(unique.values())
