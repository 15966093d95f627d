"""Assemble a fresh (untrained) PortraitTalk pipeline around pretrained base components.

Real training starts from public weights — a Stable Diffusion 1.5-style VAE, text encoder and
UNet, a CLIP image encoder, a wav2vec2 speech encoder and optionally an AnimateDiff motion
adapter — and adds the new parts at their neutral initialisation:

* reference UNet: a copy of the base UNet;
* denoiser: another copy with ``conv_in`` widened for the structure features;
* identity / audio key-value projections: copies of the text projections (IP-Adapter init);
* structure encoder: zero output; motion modules (if fresh): zero output;
* identity encoder and audio projection: default initialisation.

So the assembled pipeline behaves like the base model plus conditions that start at zero effect.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, TypedDict, cast

from .animate import add_motion_modules
from .attention import ConditionAttentionAdapter
from .audio import AudioProjection
from .identity import IdentityEncoder
from .pipeline import PortraitTalkPipeline, Scheduler
from .structure import STRUCTURE_CHANNELS, StructureEncoder, widen_conv_in

if TYPE_CHECKING:
    import transformers
    from diffusers.models import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel


class IdentityOptions(TypedDict, total=False):
    """:class:`IdentityEncoder` sizes a caller may set."""

    face_embed_dim: int
    num_face_tokens: int
    num_image_tokens: int
    hidden_dim: int
    fusion: str


class AudioOptions(TypedDict, total=False):
    """:class:`AudioProjection` sizes a caller may set."""

    context_frames: int
    intermediate_dim: int
    num_tokens: int


def assemble_pipeline(
    *,
    vae: AutoencoderKL,
    text_encoder: transformers.CLIPTextModel,
    tokenizer: transformers.CLIPTokenizer,
    image_encoder: transformers.CLIPVisionModelWithProjection,
    audio_encoder: transformers.Wav2Vec2Model,
    audio_feature_extractor: transformers.Wav2Vec2FeatureExtractor,
    unet: UNet2DConditionModel,
    scheduler: Scheduler,
    motion_adapter: MotionAdapter | None = None,
    resolution: int = 512,
    clip_length: int = 16,
    motion_frames: int = 4,
    identity: IdentityOptions | None = None,
    audio: AudioOptions | None = None,
    structure_channels: int = 4,
    structure_block_out_channels: tuple[int, ...] | None = None,
) -> PortraitTalkPipeline:
    """A pipeline from a spatial base ``unet`` (a ``UNet2DConditionModel``); with ``motion_adapter``
    the denoiser gets its motion modules right away, otherwise it stays spatial (stage 1).

    ``identity`` / ``audio``: sizes of the identity encoder and the audio projection where they
    differ from those classes' defaults (their other sizes follow the base components)."""
    vae_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)
    if structure_block_out_channels is None:
        widths = (16, 32, 96, 256, 512, 1024)
        structure_block_out_channels = widths[: int(math.log2(vae_factor)) + 1]
    if 2 ** (len(structure_block_out_channels) - 1) != vae_factor:
        raise ValueError("structure_block_out_channels must downsample by exactly the VAE factor")
    cross_dim = int(unet.config["cross_attention_dim"])

    reference_unet = copy.deepcopy(unet)
    spatial = copy.deepcopy(unet)
    widen_conv_in(spatial, structure_channels)
    denoiser: UNet2DConditionModel | UNetMotionModel = (
        spatial if motion_adapter is None else add_motion_modules(spatial, motion_adapter)
    )

    return PortraitTalkPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        audio_encoder=audio_encoder,
        audio_feature_extractor=audio_feature_extractor,
        identity_encoder=IdentityEncoder(
            image_embed_dim=int(image_encoder.config.projection_dim), cross_attention_dim=cross_dim, **(identity or {})
        ),
        reference_unet=reference_unet,
        unet=denoiser,
        audio_projection=AudioProjection(
            feature_dim=int(audio_encoder.config.hidden_size),
            num_feature_layers=int(audio_encoder.config.num_hidden_layers),
            cross_attention_dim=cross_dim,
            **(audio or {}),
        ),
        structure_encoder=StructureEncoder(
            conditioning_channels=len(STRUCTURE_CHANNELS),
            out_channels=structure_channels,
            block_out_channels=tuple(structure_block_out_channels),
        ),
        condition_adapter=ConditionAttentionAdapter.for_unet(denoiser),
        scheduler=scheduler,
        resolution=resolution,
        clip_length=clip_length,
        motion_frames=motion_frames,
    )


def assemble_from_hub(
    base_model: str,
    image_encoder: str,
    audio_encoder: str,
    motion_adapter: str | None = None,
    image_encoder_subfolder: str | None = None,
    **kwargs: Any,
) -> PortraitTalkPipeline:
    """:func:`assemble_pipeline` from public Hub ids (safetensors only), e.g.
    ``stable-diffusion-v1-5/stable-diffusion-v1-5``, ``h94/IP-Adapter`` (subfolder
    ``models/image_encoder``), ``facebook/wav2vec2-base-960h``,
    ``guoyww/animatediff-motion-adapter-v1-5-2``."""
    # Not ``from diffusers import …``: to a type checker those names are diffusers' placeholder classes.
    from diffusers.models import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from transformers import (
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionModelWithProjection,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    base_scheduler = DDIMScheduler.from_pretrained(base_model, subfolder="scheduler")
    # diffusers types a scheduler's timesteps as int and IntTensor; it takes the tensors it makes (see Scheduler).
    scheduler = cast(Scheduler, DDIMScheduler.from_config(
        base_scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing"
    ))
    return assemble_pipeline(
        vae=AutoencoderKL.from_pretrained(base_model, subfolder="vae", use_safetensors=True),
        text_encoder=CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", use_safetensors=True),
        tokenizer=CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(
            image_encoder, subfolder=image_encoder_subfolder or "", use_safetensors=True
        ),
        audio_encoder=Wav2Vec2Model.from_pretrained(audio_encoder, use_safetensors=True),
        audio_feature_extractor=Wav2Vec2FeatureExtractor.from_pretrained(audio_encoder),
        unet=UNet2DConditionModel.from_pretrained(base_model, subfolder="unet", use_safetensors=True),
        scheduler=scheduler,
        motion_adapter=MotionAdapter.from_pretrained(motion_adapter, use_safetensors=True) if motion_adapter else None,
        **kwargs,
    )
