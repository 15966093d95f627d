"""The content hash that lets ``--resume`` skip a job whose outputs are already complete."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict

from .. import __version__
from ..settings import RenderSettings
from .jobs import SETTING_TYPES


def job_key(portrait: bytes, audio: bytes, references: Sequence[bytes], settings: RenderSettings) -> str:
    """SHA-256 of everything a video depends on: the input bytes, every setting (transcript and
    prompt included) and the package version. File names and places are left out on purpose:
    moving the inputs does not redo a finished job."""
    digest = hashlib.sha256()
    # A float setting hashes the same whether it was given as 12 or 12.0.
    values = {k: float(v) if SETTING_TYPES[k] is float else v for k, v in asdict(settings).items()}
    header = json.dumps({"version": __version__, "settings": values}, sort_keys=True)
    for part in (header.encode(), portrait, audio, *references):
        # Each part's length goes first, so no two different inputs can hash the same stream.
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()
