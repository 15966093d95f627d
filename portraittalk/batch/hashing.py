"""The content hash that lets ``--resume`` skip a job whose outputs are already complete."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict

from .. import __version__
from ..settings import RenderSettings


def job_key(portrait: bytes, audio: bytes, references: Sequence[bytes], settings: RenderSettings) -> str:
    """SHA-256 of everything a video depends on: the input bytes, every setting (transcript and
    prompt included) and the package version. File names and places are left out on purpose:
    moving the inputs does not redo a finished job."""
    digest = hashlib.sha256()
    header = json.dumps({"version": __version__, "settings": asdict(settings)}, sort_keys=True)
    for part in (header.encode(), portrait, audio, *references):
        # Each part's length goes first, so no two different inputs can hash the same stream.
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()
