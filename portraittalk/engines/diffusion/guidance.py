"""Multi-condition classifier-free guidance.

The conditions are added one at a time — identity, then audio, then text — and each step of the
chain gets its own guidance scale (the InstructPix2Pix two-condition scheme extended to three)::

    ε = ε(∅) + s_id·[ε(id) − ε(∅)] + s_audio·[ε(id, audio) − ε(id)] + s_text·[ε(id, audio, text) − ε(id, audio)]

Expanded, it is a weighted sum of four denoiser passes with weights
``1 − s_id``, ``s_id − s_audio``, ``s_audio − s_text`` and ``s_text``; passes whose weight is zero
are skipped, so equal scales cost two passes (ordinary CFG) and all scales at 1 cost one.
"Without identity" drops the identity tokens and the reference attention; "without audio" drops
the audio tokens; "without text" uses the negative prompt. The structure map is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GuidanceBranch:
    """One denoiser pass: which conditions it sees and its weight in the sum."""

    identity: bool
    audio: bool
    text: bool
    weight: float


def guidance_branches(
    identity_scale: float, audio_scale: float, text_scale: float, text_is_distinct: bool = True
) -> list[GuidanceBranch]:
    """Passes to run for the given scales (weights sum to 1). ``text_is_distinct`` is False when
    the prompt equals the negative prompt, which makes the text step a no-op."""
    if not text_is_distinct:
        text_scale = audio_scale
    chain = [
        GuidanceBranch(False, False, False, 1.0 - identity_scale),
        GuidanceBranch(True, False, False, identity_scale - audio_scale),
        GuidanceBranch(True, True, False, audio_scale - text_scale),
        GuidanceBranch(True, True, True, text_scale),
    ]
    if not text_is_distinct:
        merged = chain[2].weight + chain[3].weight
        chain = chain[:2] + [GuidanceBranch(True, True, False, merged)]
    return [b for b in chain if abs(b.weight) > 1e-9]
