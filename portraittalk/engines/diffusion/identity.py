"""IdentityNet: who the person is (identity tokens) and what they look like (reference attention).

Two complementary paths, both computed once per video:

* **Identity tokens** — a face-recognition embedding and a CLIP image embedding of each reference
  portrait are projected to a few cross-attention tokens each (the IP-Adapter "FaceID" and
  "image prompt" projections: MLP / linear + LayerNorm). The tokens enter the denoiser through
  their own key/value projections (decoupled cross-attention). The face embedding is the 128-d
  dlib descriptor from the project's identity scorer — the space the output is scored in; any
  other recogniser (e.g. a 512-d ArcFace) works by setting ``face_embed_dim``.
* **Reference attention** — a reference UNet (a copy of the spatial UNet) runs on the clean
  reference latents at timestep 0; its self-attention inputs are shared with the denoiser, which
  attends over them in every frame (as in "Animate Anyone"), carrying fine appearance (hair,
  skin, clothing, background) into the video.

Multi-reference: per-reference tokens are averaged (``fusion="mean"``, any number of references)
or concatenated (``fusion="concat"``, a fixed number); reference-attention features of all
references are concatenated along the token axis, so the denoiser can pick details from any view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .attention import STATE_KWARG, ReferenceCapture

if TYPE_CHECKING:
    from diffusers.models import UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    from ...scoring.identity import IdentityScorer

# CLIP's published pixel statistics (the image encoders we load were trained with them).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# diffusers' ModelMixin and ConfigMixin declare ``config_name`` as str and None; ModelMixin's wins.
class IdentityEncoder(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Face-recognition + image embeddings of the references → identity tokens ``(B, T, D)``."""

    @register_to_config
    def __init__(
        self,
        face_embed_dim: int = 128,
        image_embed_dim: int = 1024,
        cross_attention_dim: int = 768,
        num_face_tokens: int = 4,
        num_image_tokens: int = 4,
        hidden_dim: int = 1024,
        fusion: str = "mean",
    ) -> None:
        super().__init__()
        if fusion not in ("mean", "concat"):
            raise ValueError(f"fusion must be 'mean' or 'concat', not {fusion!r}")
        self.face_proj = nn.Sequential(
            nn.Linear(face_embed_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, num_face_tokens * cross_attention_dim)
        )
        self.face_norm = nn.LayerNorm(cross_attention_dim)
        self.image_proj = nn.Linear(image_embed_dim, num_image_tokens * cross_attention_dim)
        self.image_norm = nn.LayerNorm(cross_attention_dim)

    @property
    def tokens_per_reference(self) -> int:
        return self.config["num_face_tokens"] + self.config["num_image_tokens"]

    def per_reference_tokens(self, face_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """``(B, R, Df)``, ``(B, R, Di)`` → ``(B, R, T, D)``. A zero face embedding means "no face found"."""
        d = self.config["cross_attention_dim"]
        face = F.normalize(face_embeds.to(self.dtype), dim=-1, eps=1e-6)
        face_tokens = self.face_norm(self.face_proj(face).unflatten(-1, (self.config["num_face_tokens"], d)))
        image_tokens = self.image_norm(
            self.image_proj(image_embeds.to(self.dtype)).unflatten(-1, (self.config["num_image_tokens"], d))
        )
        return torch.cat([face_tokens, image_tokens], dim=-2)

    def fuse(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, R, T, D)`` → ``(B, T, D)`` (mean) or ``(B, R·T, D)`` (concat)."""
        if self.config["fusion"] == "mean":
            return tokens.mean(dim=1)
        return tokens.flatten(1, 2)

    def forward(self, face_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.per_reference_tokens(face_embeds, image_embeds))


@dataclass
class IdentityConditioning:
    """Everything the denoiser needs about the person, for a batch of ``B`` videos."""

    tokens: torch.Tensor  # (B, T, D) fused identity tokens
    reference_features: dict[str, torch.Tensor]  # layer → (B, R·M, C) reference-attention tokens


class IdentityNet(nn.Module):
    """Image encoder + identity projection + reference UNet, run together on the references."""

    def __init__(self, image_encoder: CLIPVisionModelWithProjection, identity_encoder: IdentityEncoder,
                 reference_unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.identity_encoder = identity_encoder
        self.reference_unet = reference_unet

    def clip_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] → the image encoder's normalised input."""
        # transformers types a vision config's image_size as an int or a pair; CLIP's is one int.
        size = cast(int, self.image_encoder.config.image_size)
        x = (pixels.float() + 1.0) / 2.0
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.image_encoder.dtype)

    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(pixel_values=self.clip_pixels(pixels)).image_embeds

    def forward(
        self, reference_pixels: torch.Tensor, reference_latents: torch.Tensor, face_embeds: torch.Tensor
    ) -> IdentityConditioning:
        """``(B, R, 3, H, W)`` pixels in [-1, 1], ``(B, R, C, h, w)`` scaled latents, ``(B, R, Df)``."""
        b, r = reference_pixels.shape[:2]
        image = self.image_embeds(reference_pixels.flatten(0, 1)).view(b, r, -1)
        per_reference = self.identity_encoder.per_reference_tokens(face_embeds, image)
        capture = ReferenceCapture()
        unet = self.reference_unet
        timestep = torch.zeros(b * r, device=reference_latents.device, dtype=torch.long)
        unet(
            reference_latents.flatten(0, 1).to(unet.dtype),
            timestep,
            encoder_hidden_states=per_reference.flatten(0, 1).to(unet.dtype),
            cross_attention_kwargs={STATE_KWARG: capture},
            return_dict=False,
        )
        features = {k: v.reshape(b, r * v.shape[1], v.shape[2]) for k, v in capture.features.items()}
        return IdentityConditioning(tokens=self.identity_encoder.fuse(per_reference), reference_features=features)


class FaceEmbedder:
    """128-d dlib face descriptor of the face in an RGB image, from the project's identity scorer.

    Using :class:`portraittalk.scoring.identity.IdentityScorer` keeps the identity tokens in the same
    descriptor space the output is scored in. References are face crops, so when the detector
    misses (profile, heavy makeup, painting) the face is taken to fill the crop's central box
    (the crop convention: the face is about 1/1.6 of the side, centred).
    """

    def __init__(self, scorer: IdentityScorer | None = None, crop_scale: float = 1.6) -> None:
        if scorer is None:
            from ...scoring.identity import IdentityScorer

            scorer = IdentityScorer()
        self.scorer = scorer
        self.crop_scale = crop_scale

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
        descriptor = self.scorer.descriptor(rgb)
        if descriptor is None:
            h, w = rgb.shape[:2]
            side = min(h, w) / self.crop_scale
            x0, y0 = (w - side) / 2, (h - side) / 2
            box = (int(round(x0)), int(round(y0)), int(round(x0 + side)), int(round(y0 + side)))
            descriptor = self.scorer.descriptor(rgb, box)
        return np.asarray(descriptor, dtype=np.float32)
