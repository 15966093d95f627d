"""Two-stage training of the PortraitTalk diffusion engine with 🤗 accelerate.

Stage 1 — identity and appearance, on single frames: the spatial denoiser, the reference UNet,
the identity encoder, the structure encoder and the identity key/value projections learn to
redraw a frame of a video from another frame of it (the reference), its face descriptor and the
frame's structure map. Text, image and speech encoders and the VAE stay frozen.

Stage 2 — motion and speech, on clips: motion modules are added to the stage-1 denoiser (from a
pretrained AnimateDiff adapter or fresh at zero output) and trained together with the audio
projection and the audio key/value projections; every stage-1 part is frozen.

Loss: noise-prediction MSE (or v-prediction, following the scheduler) plus a reconstruction term
on the predicted clean latents weighted by ``1 + w_face·face + w_mouth·mouth`` (the structure
maps' regions, pooled to the latent grid) and by ᾱ_t, so that nearly pure-noise steps — where
the predicted clean latent is unreliable — do not dominate. Conditions are dropped at random
(text → empty prompt, identity → tokens and reference attention off, audio → off) so that the
multi-condition classifier-free guidance of the pipeline has its unconditional branches.

Checkpoints are complete pipeline folders (``model_index.json`` + safetensors) that
``PortraitTalkPipeline.from_pretrained`` and the app load directly. Single GPU::

    python -m portraittalk.engines.diffusion.train --stage 1 --video-dir data/videos --output-dir runs/stage1 \\
        --base-model stable-diffusion-v1-5/stable-diffusion-v1-5 --image-encoder h94/IP-Adapter \\
        --image-encoder-subfolder models/image_encoder --audio-encoder facebook/wav2vec2-base-960h
    python -m portraittalk.engines.diffusion.train --stage 2 --init runs/stage1 --video-dir data/videos \\
        --output-dir runs/stage2 --motion-adapter guoyww/animatediff-motion-adapter-v1-5-2

Several GPUs or nodes: the same arguments after ``accelerate launch -m portraittalk.engines.diffusion.train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .data import TalkingFaceVideoDataset
    from .pipeline import PortraitTalkPipeline

log = logging.getLogger("portraittalk.train")


@dataclass
class TrainConfig:
    stage: int = 1
    output_dir: str = "runs/portraittalk"
    init: str | None = None  # checkpoint folder / Hub id to start from (stage 2: the stage-1 output)
    # Public base weights for a fresh start (used when ``init`` is None; "tiny" builds toy components).
    base_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    image_encoder: str = "h94/IP-Adapter"
    image_encoder_subfolder: str | None = "models/image_encoder"
    audio_encoder: str = "facebook/wav2vec2-base-960h"
    motion_adapter: str | None = None  # stage 2: AnimateDiff adapter Hub id / folder; None = fresh
    # Data
    video_dir: str | None = None
    cache_dir: str = ".cache/portraittalk-data"
    fps: float = 25.0
    crop_scale: float = 1.6
    max_seconds_per_video: float | None = None
    clip_length: int = 16  # stage 2 (stage 1 always uses single frames)
    frame_stride: int = 1
    num_references: int = 1
    # Optimisation
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    max_steps: int = 30000
    warmup_steps: int = 500
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16"
    gradient_checkpointing: bool = False
    seed: int = 0
    num_workers: int = 4
    checkpoint_every: int = 0  # steps; 0 = only at the end
    log_every: int = 50
    # Loss and condition dropout
    reconstruction_weight: float = 1.0
    face_weight: float = 1.0
    mouth_weight: float = 2.0
    text_dropout: float = 0.1
    identity_dropout: float = 0.05
    audio_dropout: float = 0.05
    eval_timesteps: tuple[int, ...] = field(default=(100, 300, 500, 700, 900))


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    losses: list[float]
    eval_loss_before: float
    eval_loss_after: float


class PortraitTalkTrainingModel(nn.Module):
    """All modules of one training step in one container (one DDP wrapper for accelerate)."""

    alphas_cumprod: torch.Tensor  # a buffer

    def __init__(self, pipe: PortraitTalkPipeline, stage: int) -> None:
        super().__init__()
        # Not ``from diffusers import …``: to a type checker those names are diffusers' placeholder classes.
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

        self.vae = pipe.vae
        self.text_encoder = pipe.text_encoder
        self.identity_net = pipe.identity_net
        self.animate_net = pipe.animate_net
        self.stage = stage
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.register_buffer("alphas_cumprod", self.noise_scheduler.alphas_cumprod.clone(), persistent=False)
        self.vae_scale_factor = pipe.vae_scale_factor

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        shift = self.vae.config.get("shift_factor") or 0.0
        latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample()
        return ((latents - shift) * self.vae.config["scaling_factor"]).float()

    def forward(
        self, batch: dict[str, Any], input_ids: torch.Tensor, dropout: dict[str, torch.Tensor] | None = None,
        noise: torch.Tensor | None = None, timesteps: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        pixels = batch["pixel_values"]  # (B, F, 3, S, S)
        refs = batch["reference_pixels"]  # (B, R, 3, S, S)
        b, f = pixels.shape[:2]
        r = refs.shape[1]
        with torch.no_grad():
            latents = self.encode(pixels.flatten(0, 1)).unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)
            ref_latents = self.encode(refs.flatten(0, 1)).unflatten(0, (b, r))
            text = self.text_encoder(input_ids)[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.stage == 1):
            identity = self.identity_net(refs, ref_latents, batch["face_embeddings"])

        dropout = dropout or {}
        keep_identity = dropout.get("identity", torch.ones(b, dtype=torch.bool, device=latents.device))
        audio_tokens = None
        audio_scale = torch.zeros(b, device=latents.device)
        if "audio_windows" in batch and self.stage == 2:
            audio_tokens = self.animate_net.encode_audio(batch["audio_windows"])
            audio_scale = dropout.get("audio", torch.ones(b, dtype=torch.bool, device=latents.device)).float()

        if noise is None:
            noise = torch.randn_like(latents)
        if timesteps is None:
            timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), device=latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        structure = self.animate_net.encode_structure(batch["structure"], latents)
        pred = self.animate_net(
            noisy, timesteps, text, identity.tokens, identity.reference_features, audio_tokens, structure,
            identity_scale=keep_identity.float(), audio_scale=audio_scale, reference_keep=keep_identity,
            reference_index=torch.arange(b, device=latents.device),
        ).float()

        ab = self.alphas_cumprod.to(latents.device)[timesteps].view(b, 1, 1, 1, 1)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
            x0 = ab.sqrt() * noisy - (1 - ab).sqrt() * pred
        else:
            target = noise
            x0 = (noisy - (1 - ab).sqrt() * pred) / ab.sqrt()
        mse = F.mse_loss(pred, target.float())
        weights = F.avg_pool2d(batch["loss_weights"].flatten(0, 1), self.vae_scale_factor)
        weights = weights.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)  # (B, 1, F, h, w)
        rec = (ab * weights * (x0 - latents) ** 2).sum() / (weights.sum() * latents.shape[1])
        return {"mse": mse, "reconstruction": rec}


def trainable_parameters(pipe: PortraitTalkPipeline, stage: int) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze what ``stage`` trains; returns those parameters."""
    from .animate import motion_parameters, spatial_parameters

    for module in (pipe.vae, pipe.text_encoder, pipe.image_encoder, pipe.audio_encoder, pipe.identity_encoder,
                   pipe.reference_unet, pipe.unet, pipe.audio_projection, pipe.structure_encoder, pipe.condition_adapter):
        module.requires_grad_(False)
    if stage == 1:
        params = spatial_parameters(pipe.unet) + list(pipe.reference_unet.parameters())
        params += list(pipe.identity_encoder.parameters()) + list(pipe.structure_encoder.parameters())
        params += pipe.condition_adapter.condition_parameters("identity")
    else:
        params = motion_parameters(pipe.unet) + list(pipe.audio_projection.parameters())
        params += pipe.condition_adapter.condition_parameters("audio")
    for p in params:
        p.requires_grad_(True)
    return params


def audio_feature_key(pipe: PortraitTalkPipeline) -> str:
    config = json.dumps(pipe.audio_encoder.config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha1(config.encode()).hexdigest()[:12]


def load_or_assemble(cfg: TrainConfig) -> PortraitTalkPipeline:
    from .pipeline import PortraitTalkPipeline

    if cfg.init == "tiny":
        from .tiny import build_tiny_pipeline

        return build_tiny_pipeline(seed=cfg.seed, motion=cfg.stage == 2)
    if cfg.init:
        return PortraitTalkPipeline.from_pretrained(cfg.init)
    from .builder import assemble_from_hub

    return assemble_from_hub(
        cfg.base_model, cfg.image_encoder, cfg.audio_encoder, image_encoder_subfolder=cfg.image_encoder_subfolder,
        clip_length=cfg.clip_length,
    )


def _tokenize(pipe: PortraitTalkPipeline, captions: list[str], drop: torch.Tensor) -> torch.Tensor:
    texts = ["" if d else c for c, d in zip(captions, drop.tolist())]
    return pipe.tokenizer(
        texts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


@torch.no_grad()
def evaluation_loss(
    model: PortraitTalkTrainingModel, pipe: PortraitTalkPipeline, batch: dict[str, Any], timesteps: tuple[int, ...],
    seed: int, reconstruction_weight: float,
) -> float:
    """Loss on a fixed batch with fixed noise and timesteps, no dropout: comparable across steps."""
    was_training = model.training
    model.eval()
    device = batch["pixel_values"].device
    ids = _tokenize(pipe, batch["caption"], torch.zeros(len(batch["caption"]), dtype=torch.bool)).to(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    b, f, _, s, _ = batch["pixel_values"].shape
    latent_shape = (b, model.animate_net.latent_channels, f, s // model.vae_scale_factor, s // model.vae_scale_factor)
    total = 0.0
    for t in timesteps:
        noise = torch.randn(latent_shape, generator=g).to(device)
        out = model(batch, ids, noise=noise, timesteps=torch.full((b,), int(t), device=device, dtype=torch.long))
        total += float(out["mse"] + reconstruction_weight * out["reconstruction"])
    model.train(was_training)
    return total / len(timesteps)


def train(cfg: TrainConfig, dataset: TalkingFaceVideoDataset | None = None) -> TrainResult:
    """Run one stage; ``dataset`` overrides ``cfg.video_dir`` (a :class:`TalkingFaceVideoDataset`)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler

    from .data import TalkingFaceVideoDataset

    if cfg.stage not in (1, 2):
        raise ValueError("stage must be 1 or 2")
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        # The reference UNet's last layers and dropped conditions leave some weights without gradient.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)

    if cfg.stage == 2 and not cfg.init:
        log.warning("stage 2 without --init trains motion and audio on an untrained identity path")
    pipe = load_or_assemble(cfg)
    if cfg.stage == 2:
        motion = None
        if cfg.motion_adapter:
            from diffusers.models import MotionAdapter

            motion = MotionAdapter.from_pretrained(cfg.motion_adapter, use_safetensors=True)
        pipe.add_motion_modules(motion)
    pipe.set_progress_bar_config(disable=True)
    params = trainable_parameters(pipe, cfg.stage)
    if cfg.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        pipe.reference_unet.enable_gradient_checkpointing()

    clip_length = 1 if cfg.stage == 1 else cfg.clip_length
    common: dict[str, Any] = dict(clip_length=clip_length, frame_stride=cfg.frame_stride, num_references=cfg.num_references,
                  audio_context_frames=int(pipe.audio_projection.config["context_frames"]),
                  face_weight=cfg.face_weight, mouth_weight=cfg.mouth_weight)
    if dataset is None:
        if not cfg.video_dir:
            raise ValueError("give --video-dir (a folder of talking-face videos)")
        with accelerator.main_process_first():
            dataset = TalkingFaceVideoDataset.from_folder(
                Path(cfg.video_dir), Path(cfg.cache_dir), int(pipe.config["resolution"]), fps=cfg.fps,
                crop_scale=cfg.crop_scale, max_seconds=cfg.max_seconds_per_video, **common,
            )
    if cfg.stage == 2:
        key = audio_feature_key(pipe)
        pipe.audio_encoder.to(accelerator.device)
        with accelerator.main_process_first():
            dataset.cache_audio_features(key, lambda a, fps, n: pipe.speech_encoder.per_frame(a, fps, n).cpu().numpy())

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    model = PortraitTalkTrainingModel(pipe, cfg.stage)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.warmup_steps)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    core = accelerator.unwrap_model(model)

    eval_batch = next(iter(loader))
    eval_before = evaluation_loss(core, pipe, eval_batch, cfg.eval_timesteps, cfg.seed, cfg.reconstruction_weight)
    log.info("stage %d: %d trainable parameters, evaluation loss %.4f", cfg.stage,
             sum(p.numel() for p in params), eval_before)

    losses: list[float] = []
    step = 0
    epochs = math.ceil(cfg.max_steps * cfg.gradient_accumulation_steps / max(1, len(loader)))
    model.train()
    for _ in range(max(1, epochs)):
        for batch in loader:
            with accelerator.accumulate(model):
                b = batch["pixel_values"].shape[0]
                dev = batch["pixel_values"].device
                drop = {
                    "identity": torch.rand(b, device=dev) >= cfg.identity_dropout,
                    "audio": torch.rand(b, device=dev) >= cfg.audio_dropout,
                }
                ids = _tokenize(pipe, batch["caption"], torch.rand(b) < cfg.text_dropout).to(dev)
                out = model(batch, ids, dropout=drop)
                loss = out["mse"] + cfg.reconstruction_weight * out["reconstruction"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                step += 1
                losses.append(float(accelerator.gather(loss.detach()[None]).mean()))
                if cfg.log_every and step % cfg.log_every == 0:
                    log.info("step %d  loss %.4f", step, sum(losses[-cfg.log_every:]) / cfg.log_every)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                    save_checkpoint(accelerator, pipe, out_dir / f"checkpoint-{step}", cfg, step)
                if step >= cfg.max_steps:
                    break
        if step >= cfg.max_steps:
            break

    eval_after = evaluation_loss(core, pipe, eval_batch, cfg.eval_timesteps, cfg.seed, cfg.reconstruction_weight)
    log.info("stage %d done after %d steps: evaluation loss %.4f → %.4f", cfg.stage, step, eval_before, eval_after)
    save_checkpoint(accelerator, pipe, out_dir, cfg, step)
    return TrainResult(out_dir, step, losses, eval_before, eval_after)


def save_checkpoint(accelerator: Accelerator, pipe: PortraitTalkPipeline, folder: Path, cfg: TrainConfig,
                    step: int) -> None:
    """A complete pipeline folder (safetensors) plus the training state as JSON."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(folder, safe_serialization=True)
        state = {"stage": cfg.stage, "step": step, "config": dataclasses.asdict(cfg)}
        (folder / "trainer_state.json").write_text(json.dumps(state, indent=1, default=str))
    accelerator.wait_for_everyone()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m portraittalk.engines.diffusion.train", description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            p.add_argument(flag, type=int, nargs="+", default=list(value))
        else:
            kind = {int: int, float: float}.get(type(value), str)
            p.add_argument(flag, type=kind, default=value)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = vars(_parser().parse_args(argv))
    args["eval_timesteps"] = tuple(args["eval_timesteps"])
    for name in ("init", "motion_adapter", "video_dir", "image_encoder_subfolder", "max_seconds_per_video"):
        if args[name] in ("", "none", "None"):
            args[name] = None
    if args["max_seconds_per_video"] is not None:
        args["max_seconds_per_video"] = float(args["max_seconds_per_video"])
    result = train(TrainConfig(**args))
    print(f"saved {result.output_dir} after {result.steps} steps "
          f"(evaluation loss {result.eval_loss_before:.4f} → {result.eval_loss_after:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
