"""``PortraitTalkPipeline``: reference portrait(s) + speech (+ prompt) → talking-face frames.

Flow (all on the pipeline's device):

1. references → VAE latents, CLIP image embeddings, face embeddings → :class:`IdentityNet`
   (identity tokens + reference-attention features), once per video;
2. audio → wav2vec2 features per video frame (:class:`SpeechFeatureEncoder`), windowed;
3. prompt / negative prompt → CLIP text embeddings;
4. frames are denoised in windows of ``clip_length`` frames by :class:`AnimateNet` with
   multi-condition classifier-free guidance (:mod:`.guidance`);
5. long audio: consecutive windows overlap by ``motion_frames`` frames. The overlapping frames of
   a new window are *motion-frame context*: at every denoising step they are replaced by the
   already generated frames, noised to the current level with the same noise (the "replacement"
   method of video-diffusion extension), so the temporal layers continue the motion instead of
   starting over, and the shared frames are taken once — there is no seam and no cross-fade.
   Noise is drawn frame by frame from the seed, so a frame's noise does not depend on the length.

Frames are returned (or yielded, window by window) as ``(H, W, 3)`` uint8 RGB face crops at the
model resolution — what the project's video encoder and identity scorer take.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

import numpy as np
import torch

# Not ``from diffusers import …``: to a type checker those names are diffusers' placeholder classes.
from diffusers.models import UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from PIL import Image

from ...errors import InputError
from .animate import AnimateNet, add_motion_modules
from .attention import install_reference_processors
from .audio import SAMPLE_RATE, SpeechFeatureEncoder, window_features
from .guidance import guidance_branches
from .identity import IdentityNet
from .loading import WeightsNotFoundError, load_component, read_model_index, resolve_weights

if TYPE_CHECKING:
    import transformers
    from diffusers.models import AutoencoderKL, MotionAdapter, UNetMotionModel

    from .attention import ConditionAttentionAdapter
    from .audio import AudioProjection
    from .identity import IdentityEncoder
    from .structure import StructureEncoder

COMPONENTS = (
    "vae", "text_encoder", "tokenizer", "image_encoder", "audio_encoder", "audio_feature_extractor",
    "identity_encoder", "reference_unet", "unet", "audio_projection", "structure_encoder",
    "condition_adapter", "scheduler",
)
SETTINGS = ("resolution", "clip_length", "motion_frames")

Picture = Image.Image | np.ndarray
#: One reference portrait, or several (a list, or an ``(R, H, W, 3)`` array).
ReferenceImages = Picture | Sequence[Picture]


class SchedulerStep(Protocol):
    """What :meth:`Scheduler.step` returns."""

    prev_sample: torch.Tensor


class Scheduler(Protocol):
    """A diffusers noise scheduler as the pipeline uses it. diffusers' SchedulerMixin declares none of this, and
    the concrete schedulers type timesteps as ``int`` or ``IntTensor`` but take the timestep tensors they make."""

    timesteps: torch.Tensor
    init_noise_sigma: float

    @property
    def config(self) -> Mapping[str, Any]: ...

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> Self: ...

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None: ...

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor: ...

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor: ...

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor,
             **kwargs: Any) -> SchedulerStep: ...


@dataclass
class PortraitTalkPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor  # (N, H, W, 3) uint8 RGB, or latents (1, C, N, h, w) for output_type="latent"


def _to_rgb_square(image: Picture, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` (the references are face crops)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] < 3 or min(arr.shape[:2]) < 8:
        raise InputError("A reference portrait is not a usable colour image: give an RGB photo of the face.")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    h, w = arr.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(np.ascontiguousarray(arr[y0 : y0 + side, x0 : x0 + side]))
    return np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS))


def _frames_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] → ``(N, H, W, 3)`` uint8."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def window_plan(n_frames: int, clip_length: int, motion_frames: int) -> list[tuple[int, int, int]]:
    """``(start, end, context)`` windows covering ``n_frames``; ``context`` leading frames of each
    window were generated by the previous one. The last window is shifted back to full length."""
    if n_frames <= clip_length:
        return [(0, n_frames, 0)]
    motion_frames = min(max(0, motion_frames), clip_length - 1)
    plan: list[tuple[int, int, int]] = []
    done = 0
    while done < n_frames:
        start = 0 if done == 0 else done - motion_frames
        end = min(start + clip_length, n_frames)
        if end - start < clip_length:
            start = end - clip_length
        plan.append((start, end, done - start))
        done = end
    return plan


class PortraitTalkPipeline(DiffusionPipeline):
    # diffusers declares this None in the base class (no annotation), so any string is "incompatible".
    model_cpu_offload_seq = "text_encoder->image_encoder->audio_encoder->reference_unet->unet->vae"  # type: ignore[assignment]

    # The components, set as attributes by ``register_modules``.
    vae: AutoencoderKL
    text_encoder: transformers.CLIPTextModel
    tokenizer: transformers.CLIPTokenizer
    image_encoder: transformers.CLIPVisionModelWithProjection
    audio_encoder: transformers.Wav2Vec2Model
    audio_feature_extractor: transformers.Wav2Vec2FeatureExtractor
    identity_encoder: IdentityEncoder
    reference_unet: UNet2DConditionModel
    unet: UNet2DConditionModel | UNetMotionModel
    audio_projection: AudioProjection
    structure_encoder: StructureEncoder
    condition_adapter: ConditionAttentionAdapter
    scheduler: Scheduler

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: transformers.CLIPTextModel,
        tokenizer: transformers.CLIPTokenizer,
        image_encoder: transformers.CLIPVisionModelWithProjection,
        audio_encoder: transformers.Wav2Vec2Model,
        audio_feature_extractor: transformers.Wav2Vec2FeatureExtractor,
        identity_encoder: IdentityEncoder,
        reference_unet: UNet2DConditionModel,
        unet: UNet2DConditionModel | UNetMotionModel,
        audio_projection: AudioProjection,
        structure_encoder: StructureEncoder,
        condition_adapter: ConditionAttentionAdapter,
        scheduler: Scheduler,
        resolution: int = 512,
        clip_length: int = 16,
        motion_frames: int = 4,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
            audio_encoder=audio_encoder, audio_feature_extractor=audio_feature_extractor,
            identity_encoder=identity_encoder, reference_unet=reference_unet, unet=unet,
            audio_projection=audio_projection, structure_encoder=structure_encoder,
            condition_adapter=condition_adapter, scheduler=scheduler,
        )
        self.register_to_config(resolution=resolution, clip_length=clip_length, motion_frames=motion_frames)
        self.vae_scale_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)
        install_reference_processors(reference_unet)
        self._bind()

    def _bind(self) -> None:
        # Views over the registered components (no weights of their own).
        self.identity_net = IdentityNet(self.image_encoder, self.identity_encoder, self.reference_unet)
        self.animate_net = AnimateNet(self.unet, self.structure_encoder, self.audio_projection, self.condition_adapter)
        self.speech_encoder = SpeechFeatureEncoder(self.audio_encoder, self.audio_feature_extractor)

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike[str] | None = None, torch_dtype: torch.dtype | None = None,
        local_files_only: bool | None = None, **_ignored: Any,
    ) -> Self:
        """Load a checkpoint folder or Hub id (default: ``PORTRAITTALK_WEIGHTS``); safetensors only.

        Raises :class:`~.loading.WeightsNotFoundError` (an ``EngineUnavailableError``) with a
        sentence saying what to set when the weights are missing or incomplete.
        """
        folder = resolve_weights(None if pretrained_model_name_or_path is None else str(pretrained_model_name_or_path),
                                 local_files_only=local_files_only)
        index = read_model_index(folder)
        parts: dict[str, Any] = {}
        for name in COMPONENTS:
            entry = index.get(name)
            if not isinstance(entry, list) or len(entry) != 2 or entry[1] is None:
                raise WeightsNotFoundError(
                    f"The diffusion weights in {folder} lack the {name} component: the checkpoint is incomplete."
                )
            parts[name] = load_component(folder, name, entry[1], torch_dtype=torch_dtype)
        settings = {k: index[k] for k in SETTINGS if k in index}
        return cls(**parts, **settings)

    def set_unet(self, unet: UNet2DConditionModel | UNetMotionModel) -> None:
        """Swap the denoiser (e.g. after :meth:`add_motion_modules`) and re-bind the processors."""
        self.register_modules(unet=unet)
        self._bind()

    def add_motion_modules(self, motion_adapter: MotionAdapter | None = None) -> None:
        """Turn a stage-1 (spatial) denoiser into the motion denoiser; no-op if it already is one."""
        if isinstance(self.unet, UNet2DConditionModel):  # spatial, not a UNetMotionModel
            self.set_unet(add_motion_modules(self.unet, motion_adapter))

    # ------------------------------------------------------------------ encoders

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer(
            prompt, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.text_encoder.device)
        return self.text_encoder(ids)[0]

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] → scaled latents (the distribution's mean, as references need no sampling)."""
        latents = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist.mean
        shift = self.vae.config.get("shift_factor") or 0.0
        return (latents - shift) * self.vae.config["scaling_factor"]

    def decode_latents(self, latents: torch.Tensor, chunk: int = 8) -> np.ndarray:
        """``(N, C, h, w)`` scaled latents → ``(N, H, W, 3)`` uint8."""
        shift = self.vae.config.get("shift_factor") or 0.0
        out = []
        for i in range(0, latents.shape[0], chunk):
            z = latents[i : i + chunk].to(self.vae.dtype) / self.vae.config["scaling_factor"] + shift
            out.append(_frames_to_uint8(self.vae.decode(z).sample))
        return np.concatenate(out, axis=0)

    def _reference_tensor(self, references: ReferenceImages | None, size: int) -> torch.Tensor:
        if references is None or (isinstance(references, (list, tuple)) and len(references) == 0):
            raise InputError("No reference portrait was given: give at least one photo of the face.")
        if isinstance(references, Image.Image) or (isinstance(references, np.ndarray) and references.ndim != 4):
            pictures: list[Picture] = [references]
        else:
            pictures = list(references)
        rgb = np.stack([_to_rgb_square(r, size) for r in pictures])
        return torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def _structure_tensor(self, maps: np.ndarray | None, n_frames: int, size: int) -> torch.Tensor | None:
        if maps is None:
            return None
        maps = np.asarray(maps)
        if maps.ndim == 3:
            maps = maps[..., None]
        channels = int(self.structure_encoder.config["conditioning_channels"])
        if maps.ndim != 4 or maps.shape[0] < n_frames or maps.shape[-1] != channels:
            raise InputError(
                f"The structure maps do not match the video: give one {channels}-channel map per frame ({n_frames} frames)."
            )
        x = torch.from_numpy(maps[:n_frames].astype(np.float32))
        if maps.dtype == np.uint8:
            x = x / 255.0
        x = x.permute(0, 3, 1, 2)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x[None]

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(
        self,
        reference_images: ReferenceImages,
        audio: np.ndarray,
        *,
        fps: float = 25.0,
        num_frames: int | None = None,
        prompt: str = "",
        negative_prompt: str = "",
        face_embeddings: np.ndarray | None = None,
        structure_maps: np.ndarray | None = None,
        num_inference_steps: int = 25,
        identity_guidance_scale: float = 2.0,
        audio_guidance_scale: float = 3.5,
        text_guidance_scale: float = 3.5,
        identity_scale: float = 1.0,
        audio_scale: float = 1.0,
        text_scale: float = 1.0,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        clip_length: int | None = None,
        motion_frames: int | None = None,
        output_type: str = "np",
        decode_chunk_size: int = 8,
    ) -> Iterator[np.ndarray | torch.Tensor]:
        """Yield the frames of each window as they are finished (``(n, H, W, 3)`` uint8 arrays).

        Guidance scales are the multi-condition CFG scales (:mod:`.guidance`); ``identity_scale``,
        ``audio_scale`` and ``text_scale`` are the decoupled cross-attention strengths (0 turns a
        condition off, 1 is as trained). ``face_embeddings``: ``(R, D)`` face-recognition
        descriptors of the references (zeros = not available).
        """
        size = int(self.config["resolution"])
        device = self._execution_device
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.isfinite(audio).all():
            raise InputError("The audio contains invalid samples: give a normal speech recording.")
        if fps <= 0:
            raise InputError("The frame rate must be positive: choose for example 25 frames per second.")
        if num_frames is None:
            num_frames = int(math.ceil(len(audio) / SAMPLE_RATE * fps))
        if num_frames < 1:
            raise InputError("The audio is too short to make a video: give at least a fraction of a second of speech.")
        clip_length = int(clip_length or self.config["clip_length"])
        motion_frames = int(self.config["motion_frames"] if motion_frames is None else motion_frames)
        if not self.animate_net.has_motion_modules:
            motion_frames = 0  # frames are independent without temporal layers

        if generator is None:
            generator = torch.Generator("cpu").manual_seed(0 if seed is None else int(seed))

        # 1. identity (once per video)
        ref_pixels = self._reference_tensor(reference_images, size).to(device)
        n_refs = ref_pixels.shape[0]
        face_dim = int(self.identity_encoder.config["face_embed_dim"])
        if face_embeddings is None:
            faces = torch.zeros(n_refs, face_dim)
        else:
            given = np.asarray(face_embeddings, dtype=np.float32)
            if given.size != n_refs * face_dim:
                raise InputError(f"Give one {face_dim}-number face embedding per reference portrait.")
            faces = torch.from_numpy(given.reshape(n_refs, face_dim))
        ref_latents = self.encode_pixels(ref_pixels)
        identity = self.identity_net(ref_pixels[None], ref_latents[None], faces[None].to(device))

        # 2. audio features per frame, 3. text
        context = int(self.audio_projection.config["context_frames"])
        # ``context`` extra frames: the last frames' windows see the speech that follows them.
        per_frame_audio = self.speech_encoder.per_frame(audio, fps, num_frames + context)
        cond_text = self.encode_prompt(prompt or "")
        uncond_text = self.encode_prompt(negative_prompt or "")
        branches = guidance_branches(
            identity_guidance_scale, audio_guidance_scale, text_guidance_scale,
            text_is_distinct=(prompt or "") != (negative_prompt or ""),
        )
        nb = len(branches)
        text_b = torch.cat([cond_text if b.text else uncond_text for b in branches])
        weights = torch.tensor([b.weight for b in branches], device=device, dtype=torch.float32).view(nb, 1, 1, 1, 1)
        id_on = torch.tensor([b.identity for b in branches], device=device)
        audio_on = torch.tensor([b.audio for b in branches], device=device)
        id_scale_b = id_on.float() * float(identity_scale)
        audio_scale_b = audio_on.float() * float(audio_scale)
        index_b = torch.zeros(nb, dtype=torch.long, device=device)
        structure = self._structure_tensor(structure_maps, num_frames, size)

        # 4. noise: one draw per frame, in frame order, so it does not depend on the video length
        c = self.animate_net.latent_channels
        h = w = size // self.vae_scale_factor
        noise = torch.stack([torch.randn((c, h, w), generator=generator) for _ in range(num_frames)], dim=1)[None]
        noise = noise.to(device=device, dtype=torch.float32)
        clean = torch.zeros_like(noise)

        # A private scheduler per call: its step state is then never shared between concurrent calls.
        scheduler = self.scheduler.__class__.from_config(self.scheduler.config)
        extra_step: dict[str, Any] = {}
        if "generator" in inspect.signature(scheduler.step).parameters:
            extra_step["generator"] = generator
        plan = window_plan(num_frames, clip_length, motion_frames)
        with self.progress_bar(total=len(plan) * num_inference_steps) as progress:
            for start, end, ctx in plan:
                scheduler.set_timesteps(num_inference_steps, device=device)
                window_noise = noise[:, :, start:end]
                latents = window_noise * scheduler.init_noise_sigma
                tokens = self.animate_net.encode_audio(
                    window_features(per_frame_audio, context, start, end - start)[None].to(device)
                )
                maps = None if structure is None else structure[:, start:end].to(device)
                struct = self.animate_net.encode_structure(maps, latents)
                for t in scheduler.timesteps:
                    if ctx:
                        latents[:, :, :ctx] = scheduler.add_noise(
                            clean[:, :, start : start + ctx], window_noise[:, :, :ctx], t.reshape(1)
                        )
                    model_in = scheduler.scale_model_input(latents, t)
                    pred = self.animate_net(
                        model_in.expand(nb, -1, -1, -1, -1),
                        t,
                        text_b,
                        identity.tokens,
                        identity.reference_features,
                        tokens.expand(nb, -1, -1, -1),
                        struct.expand(nb, -1, -1, -1, -1),
                        identity_scale=id_scale_b,
                        audio_scale=audio_scale_b,
                        reference_keep=id_on,
                        reference_index=index_b,
                        text_scale=float(text_scale),
                    )
                    guided = (pred.float() * weights).sum(dim=0, keepdim=True)
                    latents = scheduler.step(guided, t, latents, **extra_step).prev_sample.float()
                    progress.update()
                clean[:, :, start + ctx : end] = latents[:, :, ctx:]
                new = clean[0, :, start + ctx : end].permute(1, 0, 2, 3)
                if output_type == "latent":
                    yield new
                else:
                    yield self.decode_latents(new, chunk=decode_chunk_size)

    def __call__(self, *args: Any, output_type: str = "np", **kwargs: Any) -> PortraitTalkPipelineOutput:
        """All frames at once; same arguments as :meth:`generate`."""
        parts = list(self.generate(*args, output_type=output_type, **kwargs))
        if output_type == "latent":  # the parts are tensors (as_tensor passes them through)
            latents = torch.cat([torch.as_tensor(p) for p in parts], dim=0)
            return PortraitTalkPipelineOutput(frames=latents.permute(1, 0, 2, 3)[None])
        return PortraitTalkPipelineOutput(frames=np.concatenate([np.asarray(p) for p in parts], axis=0))
