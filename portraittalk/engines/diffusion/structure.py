"""Structure input: face / mouth region maps and a landmark sketch, through a light encoder.

The maps come from a face mesh (mediapipe's 478-point topology), e.g. the CPU engine's motion
track drawn per frame, or the training videos' detected landmarks. Channels:

    0  face region   filled convex hull of the face oval
    1  mouth region  filled convex hull of the lips (includes the opening), slightly dilated
    2  contours      lips, eyes, brows and face-oval lines

The encoder is diffusers' ``ControlNetConditioningEmbedding`` (small strided convolutions down to
the latent resolution, zero-initialised output). Its output is concatenated to the noisy latents,
and the UNet's ``conv_in`` is widened for the extra channels; this is mathematically the pose
guider of "Animate Anyone" (a feature added after ``conv_in``) while keeping stock UNet classes.
Because the encoder's last layer starts at zero, a widened pretrained UNet starts out unchanged.
The same maps give the face/mouth weights of the training reconstruction loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

if TYPE_CHECKING:
    from diffusers.models import UNet2DConditionModel

STRUCTURE_CHANNELS = ("face", "mouth", "contours")


# diffusers' ModelMixin and ConfigMixin declare ``config_name`` as str and None; ModelMixin's wins.
class StructureEncoder(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """``(N, C, H, W)`` structure maps in [0, 1] → ``(N, out_channels, H/f, W/f)`` latent-grid features."""

    @register_to_config
    def __init__(
        self,
        conditioning_channels: int = len(STRUCTURE_CHANNELS),
        out_channels: int = 4,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ) -> None:
        super().__init__()
        self.embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=out_channels,
            conditioning_channels=conditioning_channels,
            block_out_channels=tuple(block_out_channels),
        )

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.embedding(maps.to(self.dtype))


def widen_conv_in(unet: UNet2DConditionModel, extra_channels: int) -> None:
    """Give ``unet.conv_in`` ``extra_channels`` more inputs; the existing ones keep their weights."""
    old = unet.conv_in
    # torch types a Conv2d's kernel_size, stride and padding attributes as tuples of any length, its arguments as pairs.
    new = nn.Conv2d(
        old.in_channels + extra_channels, old.out_channels, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
        bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight[:, : old.in_channels].copy_(old.weight)
        if new.bias is not None and old.bias is not None:  # both or neither
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)


@lru_cache(maxsize=1)
def _topology() -> dict[str, np.ndarray]:
    from mediapipe.python.solutions import face_mesh_connections as c

    def points(edges: Iterable[tuple[int, int]]) -> np.ndarray:
        return np.array(sorted({i for e in edges for i in e}), dtype=np.int64)

    return {
        "oval": points(c.FACEMESH_FACE_OVAL),
        "lips": points(c.FACEMESH_LIPS),
        "contours": np.array(sorted(c.FACEMESH_CONTOURS), dtype=np.int64),
    }


def structure_map_from_landmarks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``(478, ≥2)`` face-mesh points in pixels of a ``size``×``size`` crop → ``(size, size, 3)`` float32."""
    import cv2

    pts = np.asarray(landmarks, dtype=np.float32)[:, :2]
    topo = _topology()
    out = np.zeros((3, size, size), dtype=np.uint8)
    shift = 4  # sub-pixel precision for OpenCV drawing
    scale = float(1 << shift)

    face = cv2.convexHull(np.round(pts[topo["oval"]] * scale).astype(np.int32))
    cv2.fillConvexPoly(out[0], face, (255,), lineType=cv2.LINE_AA, shift=shift)

    lips = cv2.convexHull(np.round(pts[topo["lips"]] * scale).astype(np.int32))
    cv2.fillConvexPoly(out[1], lips, (255,), lineType=cv2.LINE_AA, shift=shift)
    grow = max(1, int(round(size * 0.02)))
    out[1] = cv2.dilate(out[1], cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))

    thickness = max(1, int(math.ceil(size / 256)))
    for a, b in topo["contours"]:
        pa = tuple(int(v) for v in np.round(pts[a] * scale))
        pb = tuple(int(v) for v in np.round(pts[b] * scale))
        cv2.line(out[2], pa, pb, (255,), thickness, lineType=cv2.LINE_AA, shift=shift)
    return (out.transpose(1, 2, 0).astype(np.float32) / 255.0)


def loss_weights(structure: torch.Tensor, face_weight: float, mouth_weight: float) -> torch.Tensor:
    """Per-pixel reconstruction weights ``1 + w_face·face + w_mouth·mouth`` from ``(..., 3, H, W)`` maps."""
    return 1.0 + face_weight * structure[..., 0:1, :, :] + mouth_weight * structure[..., 1:2, :, :]


def to_latent_grid(maps: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average ``(N, C, H, W)`` maps down to the latent grid."""
    return F.avg_pool2d(maps, kernel_size=factor) if factor > 1 else maps
