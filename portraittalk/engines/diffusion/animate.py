"""AnimateNet: the video denoiser.

A diffusers ``UNetMotionModel`` — the spatial Stable-Diffusion-style UNet with AnimateDiff motion
modules (temporal transformers over the frame axis) after every spatial block — with three extra
inputs:

* audio tokens per frame (windowed wav2vec2 features → :class:`~.audio.AudioProjection`), attended
  through the decoupled cross-attention's audio key/value projections;
* identity tokens and reference-attention features from :class:`~.identity.IdentityNet`;
* a structure map per frame (:class:`~.structure.StructureEncoder`), concatenated to the latents.

Stage-1 checkpoints hold the spatial ``UNet2DConditionModel`` only (frames are then denoised
independently); :func:`add_motion_modules` turns it into the motion UNet for stage 2.
"""

from __future__ import annotations

from typing import Any

import torch

# Not ``from diffusers import …``: to a type checker those names are diffusers' placeholder classes.
from diffusers.models import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from torch import nn

from .attention import STATE_KWARG, ConditionAttentionAdapter, DenoiserConditions, install_denoiser_processors
from .audio import AudioProjection
from .structure import StructureEncoder


class AnimateNet(nn.Module):
    def __init__(
        self,
        unet: UNetMotionModel | UNet2DConditionModel,
        structure_encoder: StructureEncoder,
        audio_projection: AudioProjection,
        condition_adapter: ConditionAttentionAdapter,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.structure_encoder = structure_encoder
        self.audio_projection = audio_projection
        self.condition_adapter = condition_adapter
        install_denoiser_processors(unet, condition_adapter)

    @property
    def has_motion_modules(self) -> bool:
        return isinstance(self.unet, UNetMotionModel)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config["in_channels"]) - int(self.structure_encoder.config["out_channels"])

    def encode_structure(self, maps: torch.Tensor | None, latents: torch.Tensor) -> torch.Tensor:
        """``(B, F, C, H, W)`` maps (or None) → ``(B, k, F, h, w)`` features on the latent grid."""
        b, _, f, h, w = latents.shape
        k = int(self.structure_encoder.config["out_channels"])
        if maps is None:
            return latents.new_zeros(b, k, f, h, w)
        feats = self.structure_encoder(maps.flatten(0, 1))
        return feats.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4).to(latents.dtype)

    def encode_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, F, window, layers, dim)`` → ``(B, F, tokens, D)``."""
        return self.audio_projection(windows)

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeds: torch.Tensor,
        identity_tokens: torch.Tensor | None,
        reference_features: dict[str, torch.Tensor] | None,
        audio_tokens: torch.Tensor | None,
        structure_features: torch.Tensor,
        identity_scale: torch.Tensor,
        audio_scale: torch.Tensor,
        reference_keep: torch.Tensor,
        reference_index: torch.Tensor,
        text_scale: float = 1.0,
    ) -> torch.Tensor:
        """Noise (or v) prediction ``(B, C, F, h, w)`` for latents ``(B, C, F, h, w)``.

        ``identity_tokens`` / ``reference_features`` have one row per identity; ``reference_index``
        ``(B,)`` says which row each sample uses. Scales and ``reference_keep`` are per sample.
        """
        b, _, f = latents.shape[:3]
        dtype = self.unet.dtype
        per_frame = lambda x: x.repeat_interleave(f, dim=0)  # noqa: E731  (B, …) → (B·F, …)
        index = per_frame(reference_index)
        state = DenoiserConditions(
            identity_tokens=None if identity_tokens is None else identity_tokens.index_select(0, index).to(dtype),
            audio_tokens=None if audio_tokens is None else audio_tokens.flatten(0, 1).to(dtype),
            identity_scale=per_frame(identity_scale),
            audio_scale=per_frame(audio_scale),
            text_scale=text_scale,
            reference_features=reference_features,
            reference_index=index,
            reference_keep=per_frame(reference_keep),
        )
        sample = torch.cat([latents, structure_features], dim=1).to(dtype)
        context = per_frame(text_embeds).to(dtype)
        kwargs = {STATE_KWARG: state}
        timesteps = torch.as_tensor(timesteps, device=latents.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(b)
        if self.has_motion_modules:
            return self.unet(sample, timesteps, context, cross_attention_kwargs=kwargs, return_dict=False)[0]
        flat = sample.permute(0, 2, 1, 3, 4).flatten(0, 1)
        out = self.unet(flat, per_frame(timesteps), context, cross_attention_kwargs=kwargs, return_dict=False)[0]
        return out.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)


def zero_motion_outputs(adapter_or_unet: nn.Module) -> None:
    """Zero the output projection of every temporal transformer (AnimateDiff's initialisation).

    A fresh motion module then passes its input through unchanged, so adding motion modules to a
    trained spatial UNet does not change its per-frame output before stage 2 starts.
    """
    for name, module in adapter_or_unet.named_modules():
        if "motion_modules" in name and name.endswith("proj_out") and isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def motion_adapter_for(unet: UNet2DConditionModel, **overrides: Any) -> MotionAdapter:
    """A fresh, zero-output motion adapter shaped for ``unet``."""
    config: dict[str, Any] = dict(
        block_out_channels=tuple(unet.config["block_out_channels"]),
        motion_layers_per_block=unet.config["layers_per_block"],
        motion_num_attention_heads=8,
        motion_norm_num_groups=unet.config["norm_num_groups"],
        motion_max_seq_length=32,
        use_motion_mid_block=True,
    )
    config.update(overrides)
    adapter = MotionAdapter(**config)
    zero_motion_outputs(adapter)
    return adapter


def add_motion_modules(unet: UNet2DConditionModel, motion_adapter: MotionAdapter | None = None) -> UNetMotionModel:
    """The motion UNet built from a spatial UNet and a motion adapter (a fresh one if None)."""
    adapter = motion_adapter if motion_adapter is not None else motion_adapter_for(unet)
    motion = UNetMotionModel.from_unet2d(unet, adapter)
    if motion.dtype != unet.dtype or motion.device != unet.device:
        motion = motion.to(device=unet.device, dtype=unet.dtype)
    return motion


def motion_parameters(unet: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in unet.named_parameters() if "motion_modules" in n]


def spatial_parameters(unet: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in unet.named_parameters() if "motion_modules" not in n]
