"""Refine mode: diffusion polish over the warp engine's frames, for Spaces without PortraitTalk weights.

diffusers' ``AnimateDiffVideoToVideoPipeline`` re-noises the input frames to ``strength`` and
denoises them with a Stable Diffusion 1.5 UNet plus AnimateDiff motion modules, so texture, teeth
and skin are re-synthesised while the warp engine's motion and lip shapes are kept (low strength
keeps more of the input). An IP-Adapter (the face variant by default) conditions every frame on
the reference portrait(s), holding the identity; the text prompt steers style.

Long videos use diffusers' FreeNoise (sliding temporal windows with weighted averaging inside the
motion modules), so there are no window seams inside a segment. To bound memory, videos longer
than ``segment_frames`` are refined in overlapping segments whose shared frames are cross-faded;
all segments start from the same input frames and seed, and at refine strengths the output is
anchored to the input, so the blend is invisible. Public base weights are named by Hub id
(overridable through the environment variables below); everything is read as safetensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ...errors import InputError
from .pipeline import Scheduler, window_plan

# Refine mode's defaults (the engine's ``refine`` passes only what its caller sets).
STRENGTH, STEPS = 0.35, 20

if TYPE_CHECKING:
    from diffusers.models import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from diffusers.pipelines.animatediff.pipeline_animatediff_video2video import AnimateDiffVideoToVideoPipeline
    from transformers import CLIPImageProcessorPil, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection


@dataclass(frozen=True)
class RefineWeights:
    """Hub ids of the public weights refine mode uses (each overridable by an environment variable)."""

    base_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    motion_adapter: str = "guoyww/animatediff-motion-adapter-v1-5-2"
    ip_adapter_repo: str = "h94/IP-Adapter"
    ip_adapter_subfolder: str = "models"
    ip_adapter_weight: str = "ip-adapter-plus-face_sd15.safetensors"
    image_encoder_subfolder: str = "models/image_encoder"

    @classmethod
    def from_env(cls) -> "RefineWeights":
        d = cls()
        env = os.environ.get
        return cls(
            base_model=env("PORTRAITTALK_REFINE_BASE", d.base_model),
            motion_adapter=env("PORTRAITTALK_REFINE_MOTION", d.motion_adapter),
            ip_adapter_repo=env("PORTRAITTALK_REFINE_IP_ADAPTER", d.ip_adapter_repo),
            ip_adapter_subfolder=env("PORTRAITTALK_REFINE_IP_SUBFOLDER", d.ip_adapter_subfolder),
            ip_adapter_weight=env("PORTRAITTALK_REFINE_IP_WEIGHT", d.ip_adapter_weight),
            image_encoder_subfolder=env("PORTRAITTALK_REFINE_IMAGE_ENCODER", d.image_encoder_subfolder),
        )


def _round_size(width: int, height: int, multiple: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    w = max(multiple, int(width * scale) // multiple * multiple)
    h = max(multiple, int(height * scale) // multiple * multiple)
    return w, h


class PortraitRefiner:
    """Wraps an ``AnimateDiffVideoToVideoPipeline`` that has an IP-Adapter loaded."""

    def __init__(self, pipe: AnimateDiffVideoToVideoPipeline) -> None:
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls, weights: RefineWeights | None = None, torch_dtype: torch.dtype | None = None, device: str | None = None
    ) -> "PortraitRefiner":
        # Not ``from diffusers import …``: to a type checker those names are diffusers' placeholder classes.
        from diffusers.models import MotionAdapter
        from diffusers.pipelines.animatediff.pipeline_animatediff_video2video import AnimateDiffVideoToVideoPipeline
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler
        from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

        w = weights or RefineWeights.from_env()
        adapter = MotionAdapter.from_pretrained(w.motion_adapter, torch_dtype=torch_dtype, use_safetensors=True)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            w.ip_adapter_repo, subfolder=w.image_encoder_subfolder, dtype=torch_dtype, use_safetensors=True
        )
        pipe = AnimateDiffVideoToVideoPipeline.from_pretrained(
            w.base_model, motion_adapter=adapter, image_encoder=image_encoder,
            feature_extractor=CLIPImageProcessorPil(), torch_dtype=torch_dtype, use_safetensors=True,
        )
        pipe.scheduler = DDIMScheduler.from_config(
            pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", beta_schedule="linear", steps_offset=1
        )
        pipe.load_ip_adapter(w.ip_adapter_repo, subfolder=w.ip_adapter_subfolder, weight_name=w.ip_adapter_weight)
        if device:
            pipe.to(device)
        return cls(pipe)

    @classmethod
    def from_components(
        cls, *, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel, motion_adapter: MotionAdapter, scheduler: Scheduler,
        image_encoder: CLIPVisionModelWithProjection, feature_extractor: CLIPImageProcessorPil,
        ip_adapter_state_dict: dict[str, dict[str, torch.Tensor]],
    ) -> "PortraitRefiner":
        """Build from given components and an IP-Adapter state dict (tests, custom bases)."""
        from diffusers.pipelines.animatediff.pipeline_animatediff_video2video import AnimateDiffVideoToVideoPipeline

        # diffusers annotates these with its placeholder scheduler classes and transformers' former image
        # processor, and load_ip_adapter with a flat state dict; it takes these (the IP-Adapter's nested one).
        pipe = AnimateDiffVideoToVideoPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, motion_adapter=motion_adapter,
            scheduler=scheduler, feature_extractor=feature_extractor, image_encoder=image_encoder,  # type: ignore[arg-type]
        )
        pipe.load_ip_adapter(ip_adapter_state_dict, subfolder="", weight_name="")  # type: ignore[arg-type]
        return cls(pipe)

    def _refine_segment(self, video: list[Image.Image], window: int, stride: int, seed: int,
                        settings: dict[str, Any]) -> np.ndarray:
        pipe = self.pipe
        if len(video) > window:
            pipe.enable_free_noise(context_length=window, context_stride=stride)
        elif getattr(pipe, "free_noise_enabled", False):
            pipe.disable_free_noise()
        generator = torch.Generator("cpu").manual_seed(int(seed))
        # diffusers types ``video`` as a batch of videos (it takes one) and the result as an output or a tuple.
        output = pipe(video=video, generator=generator, **settings)  # type: ignore[arg-type]
        return np.asarray(output.frames[0], dtype=np.float32)  # type: ignore[union-attr]

    @torch.no_grad()
    def refine(
        self,
        frames: np.ndarray,
        reference_rgbs: list[np.ndarray],
        prompt: str = "",
        strength: float = STRENGTH,
        negative_prompt: str = "blurry, distorted face, extra teeth, artifacts",
        num_inference_steps: int = STEPS,
        guidance_scale: float = 6.0,
        identity_scale: float = 0.6,
        seed: int = 0,
        window: int = 16,
        stride: int = 4,
        max_side: int = 768,
        segment_frames: int = 48,
        segment_overlap: int = 8,
    ) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 frames → refined frames of the same shape.

        ``strength`` in (0, 1]: how much is re-synthesised (0.2–0.4 keeps the motion and lip
        shapes; 1 ignores the input). ``identity_scale``: the IP-Adapter strength.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise InputError("Refine mode needs the video frames as RGB images: "
                             "render the video with the warp engine first.")
        if not reference_rgbs:
            raise InputError("Refine mode needs the reference portrait: give at least one photo of the face.")
        if not 0.0 < strength <= 1.0:
            raise InputError("The refine strength must be between 0 and 1: try 0.3.")
        n, height, width = frames.shape[:3]
        # The video-to-video pipeline wants sides divisible by 8 (and by the VAE factor).
        multiple = max(8, int(getattr(self.pipe, "vae_scale_factor", 8)))
        w, h = _round_size(width, height, multiple, max_side)
        video = [Image.fromarray(np.ascontiguousarray(f)).resize((w, h), Image.Resampling.LANCZOS) for f in frames]
        refs = [Image.fromarray(np.ascontiguousarray(np.asarray(r)[..., :3])) for r in reference_rgbs]

        # Enough steps that at least one runs at this strength.
        steps = max(num_inference_steps, int(np.ceil(1.0 / strength)))
        settings: dict[str, Any] = dict(
            prompt=prompt, negative_prompt=negative_prompt, ip_adapter_image=[refs], strength=float(strength),
            num_inference_steps=steps, guidance_scale=float(guidance_scale), output_type="np", height=h, width=w,
            decode_chunk_size=8,
        )
        self.pipe.set_ip_adapter_scale(float(identity_scale))
        out = np.zeros((n, h, w, 3), np.float32)
        for start, end, shared in window_plan(n, segment_frames, segment_overlap):
            part = self._refine_segment(video[start:end], window, stride, seed, settings)
            if shared:
                ramp = np.linspace(0.0, 1.0, shared + 2, dtype=np.float32)[1:-1].reshape(-1, 1, 1, 1)
                part[:shared] = ramp * part[:shared] + (1 - ramp) * out[start : start + shared]
            out[start:end] = part
        result = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
        if (w, h) != (width, height):
            size = (width, height)
            result = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in result])
        return result
