"""The diffusion engine behind the pipeline's engine interface: face crops in, full frames out.

Both modes work on a square crop around the face and paste it back into a full frame:

* model mode (PortraitTalk weights configured): the model renders the crop, driven by the audio
  and by structure maps drawn from the warp rig's landmarks (the motion track drives it too);
* refine mode (no weights): the warp engine's frames are refined crop by crop with public base
  weights, at a strength set by the prompt strength.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from ...contracts import AudioClip, FaceAnalysis, MotionTrack, Portrait
from ...settings import RenderSettings
from ..base import Engine, EngineFrame
from ..warp.engine import WarpEngine
from ..warp.renderer import WarpRenderer
from .data import crop_square, face_crop_box, to_crop_coords
from .engine import DiffusionEngine
from .loading import configured_weights
from .structure import structure_map_from_landmarks

REFINE_CROP = 512  # face-crop side for refine mode (Stable Diffusion 1.5's native size)
CROP_SCALE = 1.6  # crop side / the face mesh's extent

CropBox = tuple[float, float, float, float]  # x0, y0, x1, y1, square, may leave the frame


def diffusion_engine(settings: RenderSettings, warp: WarpEngine) -> Engine:
    """Model mode when weights are configured, else refine mode over the ``warp`` engine's frames."""
    if configured_weights(settings.weights) is None:
        return RefineEngine(settings, warp)
    return ModelEngine(settings)


class ModelEngine:
    """PortraitTalk weights render the face crop."""

    def __init__(self, settings: RenderSettings) -> None:
        self.s = settings

    def frames(self, portrait: Portrait, face: FaceAnalysis, track: MotionTrack,
               audio: AudioClip) -> Iterator[EngineFrame]:
        s = self.s
        engine = DiffusionEngine.from_config(s.weights, s.device)  # clear error when unavailable
        box = face_crop_box(face.landmarks[:, :2], CROP_SCALE)
        size = engine.resolution()
        reference = crop_square(portrait.rgb, box, size)
        rig = WarpRenderer(portrait.rgb, face)
        maps, boxes = [], []
        for i in range(track.n_frames):
            landmarks, face_box = rig.posed_mesh(track.frame(i))
            maps.append(structure_map_from_landmarks(to_crop_coords(landmarks, box, size), size))
            boxes.append(face_box)
        crops = engine.render([reference], audio.samples, track.fps, track.n_frames, prompt=s.prompt,
                              structure_maps=np.stack(maps), audio_scale=s.audio_strength,
                              identity_scale=s.identity_strength, text_scale=s.prompt_strength,
                              steps=int(s.diffusion_steps), guidance=float(s.guidance_scale), seed=s.seed)
        for crop, face_box in zip(crops, boxes):
            yield EngineFrame(paste_crop(portrait.rgb, crop, box), face_box)


class RefineEngine:
    """The warp engine's face crops through AnimateDiff video-to-video with an IP-Adapter
    (identity) and the prompt.

    The warp frames are rendered twice (once for the crops, once to paste into): that is
    cheaper than keeping every full frame in memory.
    """

    def __init__(self, settings: RenderSettings, warp: WarpEngine) -> None:
        self.s = settings
        self.warp = warp

    def frames(self, portrait: Portrait, face: FaceAnalysis, track: MotionTrack,
               audio: AudioClip) -> Iterator[EngineFrame]:
        s = self.s
        engine = DiffusionEngine.for_refine(s.device)  # clear error without a GPU
        box = face_crop_box(face.landmarks[:, :2], CROP_SCALE)
        crops = np.stack([crop_square(f.rgb, box, REFINE_CROP) for f in self.warp.frames(portrait, face, track, audio)])
        refined = engine.refine(crops, [crop_square(portrait.rgb, box, REFINE_CROP)], prompt=s.prompt,
                                strength=float(np.clip(0.35 * s.prompt_strength, 0.05, 0.8)),
                                steps=int(s.diffusion_steps), guidance=float(s.guidance_scale),
                                identity_scale=float(np.clip(0.6 * s.identity_strength, 0, 1.2)), seed=s.seed)
        for f, crop in zip(self.warp.frames(portrait, face, track, audio), refined):
            yield EngineFrame(paste_crop(f.rgb, crop, box), f.box)


def paste_crop(frame: np.ndarray, crop: np.ndarray, box: CropBox) -> np.ndarray:
    """Put a square face crop back where it came from, with a soft elliptical edge."""
    x0, y0, x1, y1 = box
    side = x1 - x0
    s = crop.shape[0] / side
    h, w = frame.shape[:2]
    inv = np.array([[1 / s, 0, x0], [0, 1 / s, y0]], np.float64)
    warped = cv2.warpAffine(crop, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - (x0 + x1) / 2) / (side * 0.46)) ** 2 + ((yy - (y0 + y1) / 2) / (side * 0.48)) ** 2)
    alpha = np.clip((1.0 - r) / 0.12, 0, 1)[..., None]
    return (frame * (1 - alpha) + warped * alpha + 0.5).astype(np.uint8)
