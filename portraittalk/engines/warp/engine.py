"""The warp engine behind the pipeline's engine interface: warped portrait frames, with a look."""

from __future__ import annotations

from collections.abc import Iterator

from ...contracts import AudioClip, FaceAnalysis, MotionTrack, Portrait
from ..base import EngineFrame
from .looks import StyleFilter
from .renderer import WarpRenderer


class WarpEngine:
    """Frames of the animated portrait; ``style`` (a look from the prompt) is applied to each."""

    def __init__(self, style: str | None = None, style_strength: float = 0.0) -> None:
        self.style = style
        self.style_strength = style_strength

    def frames(self, portrait: Portrait, face: FaceAnalysis, track: MotionTrack,
               audio: AudioClip) -> Iterator[EngineFrame]:
        look = None
        if self.style:
            x0, y0, x1, y1 = face.box
            look = StyleFilter(self.style, self.style_strength, face_size=max(x1 - x0, y1 - y0))
        # Painterly looks are too slow per frame: the styled portrait is warped instead, and
        # only the repainted mouth is restyled per frame.
        base = look.apply(portrait.rgb) if look is not None and not look.per_pixel else portrait.rgb
        renderer = WarpRenderer(base, face)
        for i in range(track.n_frames):
            f = renderer.render(track.frame(i))
            rgb = f.rgb
            if look is not None:
                rgb = look.apply(rgb) if look.per_pixel else look.restyle_mouth(rgb, f.landmarks)
            yield EngineFrame(rgb, f.box, f.landmarks)
