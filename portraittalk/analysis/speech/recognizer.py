"""The recogniser boundary: 16 kHz PCM (and a transcript, when given) → timed phones.

:func:`analyze_speech` needs no more of a recogniser than a :class:`Recognition`: ARPAbet
phones, how they were found, where it heard voice and how much of the sound it could not
split into phones. pocketsphinx (:mod:`.sphinx`) is the one backend today; another recogniser
plugs in here by returning the same record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ...contracts import PhoneSegment
from ...motion.visemes import SILENCE, normalize_phone
from .sphinx import decode_phone_labels, forced_alignment, noise_token_ratio

log = logging.getLogger(__name__)


@dataclass
class Recognition:
    phones: list[PhoneSegment]
    method: str  # "forced-alignment" | "phone-decoder"
    voiced_spans: list[tuple[float, float]]  # seconds where the recogniser heard voice
    noise_ratio: float = 0.0  # share of the decoded time labelled as noise rather than phones
    warnings: list[str] = field(default_factory=list)  # e.g. why a transcript could not be used


def recognize(pcm: bytes, transcript: str | None) -> Recognition:
    """Forced alignment of the transcript when there is one and it fits; otherwise the phone decoder."""
    warnings: list[str] = []
    if transcript is not None and transcript.strip():
        phones, problem = forced_alignment(pcm, transcript)
        if phones is not None:
            return Recognition(phones, "forced-alignment", [(p.start, p.end) for p in phones if p.phone != SILENCE])
        warnings.append(problem)
    try:
        raw = decode_phone_labels(pcm)
    except RuntimeError as err:  # a decoder failure must not end the video
        log.warning("phone decoder failed: %s", err)
        raw = []
    # "+SPN+" is the model's spoken-noise token: voice it can't split into phones (song, mumble)
    voiced_spans = [(a, b) for label, a, b in raw if normalize_phone(label) != SILENCE or label == "+SPN+"]
    return Recognition([PhoneSegment(normalize_phone(label), a, b) for label, a, b in raw], "phone-decoder",
                       voiced_spans, noise_token_ratio(raw), warnings)
