"""What the pipeline asks of an engine: full video frames from the analysed inputs and the motion track."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..contracts import AudioClip, Box, FaceAnalysis, MotionTrack, Portrait


@dataclass(frozen=True)
class EngineFrame:
    """One finished video frame and where the face is in it (for identity scoring)."""

    rgb: np.ndarray  # (H, W, 3) uint8, the portrait's size
    box: Box  # face box, full-frame pixels
    mesh: np.ndarray | None = None  # (478, 2) where the face mesh is, when the engine knows it exactly


class Engine(Protocol):
    def frames(self, portrait: Portrait, face: FaceAnalysis, track: MotionTrack,
               audio: AudioClip) -> Iterator[EngineFrame]:
        """``track.n_frames`` frames, one at a time, in order (the caller streams them to the encoder)."""
        ...
