"""Tiny, randomly initialised components for tests and CI smoke runs (no downloads, CPU, ~1 s).

They have the real classes and wiring of the full-size models at toy widths: 32×32 frames,
8×8 latents, a two-block UNet, a one-layer CLIP text / vision model, a two-layer wav2vec2.
Parts that start at zero in a fresh build (structure encoder output, motion-module outputs) get
small random weights here, as after training, so every input visibly reaches the output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from .builder import assemble_pipeline
from .pipeline import PortraitTalkPipeline, Scheduler

if TYPE_CHECKING:
    import transformers
    from diffusers.models import AutoencoderKL, MotionAdapter, UNet2DConditionModel

    from .refine import PortraitRefiner

TINY_RESOLUTION = 32
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def tiny_tokenizer() -> transformers.CLIPTokenizer:
    """A CLIP tokenizer over single letters (built in memory; no merges)."""
    from transformers import CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>"] + _LETTERS + [c + "</w>" for c in _LETTERS]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=16)


def tiny_text_encoder(tokenizer: transformers.CLIPTokenizer) -> transformers.CLIPTextModel:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length, projection_dim=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))


def tiny_image_encoder() -> transformers.CLIPVisionModelWithProjection:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    ))


def tiny_audio_encoder() -> tuple[transformers.Wav2Vec2Model, transformers.Wav2Vec2FeatureExtractor]:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    model = Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=8,
    ))
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    return model.eval(), extractor


def tiny_vae() -> AutoencoderKL:
    # Not ``from diffusers import …``: to a type checker those names are diffusers' placeholder classes.
    from diffusers.models import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=TINY_RESOLUTION,
    )


def tiny_unet(in_channels: int = 4) -> UNet2DConditionModel:
    from diffusers.models import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=TINY_RESOLUTION // 4, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        attention_head_dim=2, norm_num_groups=8,
    )


def tiny_motion_adapter() -> MotionAdapter:
    from diffusers.models import MotionAdapter

    return MotionAdapter(
        block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
        motion_norm_num_groups=8, motion_max_seq_length=32, use_motion_mid_block=True,
    )


def tiny_scheduler() -> Scheduler:
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    # diffusers types a scheduler's timesteps as int and IntTensor; it takes the tensors it makes (see Scheduler).
    return cast(Scheduler, DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing",
    ))


def _wake_zero_parameters(module: nn.Module, generator: torch.Generator, std: float = 0.05) -> None:
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def build_tiny_pipeline(seed: int = 0, motion: bool = True, clip_length: int = 8,
                        motion_frames: int = 3) -> PortraitTalkPipeline:
    """A complete tiny PortraitTalk pipeline (motion denoiser unless ``motion=False``)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    audio_encoder, extractor = tiny_audio_encoder()
    pipe = assemble_pipeline(
        vae=tiny_vae(),
        text_encoder=tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        image_encoder=tiny_image_encoder(),
        audio_encoder=audio_encoder,
        audio_feature_extractor=extractor,
        unet=tiny_unet(),
        scheduler=tiny_scheduler(),
        motion_adapter=tiny_motion_adapter() if motion else None,
        resolution=TINY_RESOLUTION,
        clip_length=clip_length,
        motion_frames=motion_frames,
        identity={"hidden_dim": 32, "num_face_tokens": 2, "num_image_tokens": 2},
        audio={"intermediate_dim": 32, "num_tokens": 4},
        structure_block_out_channels=(8, 8, 16),
    )
    g = torch.Generator().manual_seed(seed + 1)
    _wake_zero_parameters(pipe.structure_encoder, g)
    _wake_zero_parameters(pipe.unet, g)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_ip_adapter_state_dict(unet: UNet2DConditionModel, image_embed_dim: int = 16,
                               seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """An IP-Adapter checkpoint (the original layout diffusers' ``load_ip_adapter`` reads) for ``unet``."""
    from .attention import spatial_attention_layers

    g = torch.Generator().manual_seed(seed)
    cross = int(unet.config["cross_attention_dim"])
    state: dict[str, dict[str, torch.Tensor]] = {
        "image_proj": {
            "proj.weight": torch.randn(4 * cross, image_embed_dim, generator=g) * 0.2,
            "proj.bias": torch.zeros(4 * cross),
            "norm.weight": torch.ones(cross),
            "norm.bias": torch.zeros(cross),
        },
        "ip_adapter": {},
    }
    key = 1
    for name, attn in spatial_attention_layers(unet).items():
        if name.endswith("attn2"):
            hidden = attn.to_k.out_features
            state["ip_adapter"][f"{key}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.2
            state["ip_adapter"][f"{key}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.2
            key += 2
    return state


def tiny_refiner(seed: int | None = None) -> PortraitRefiner:
    """A refine-mode :class:`~.refine.PortraitRefiner` (AnimateDiff video-to-video + IP-Adapter)
    from tiny random components, 32 px; ``seed`` seeds torch first when given."""
    from transformers import CLIPImageProcessorPil

    from .refine import PortraitRefiner

    if seed is not None:
        torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = tiny_unet()
    return PortraitRefiner.from_components(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(tokenizer), tokenizer=tokenizer, unet=unet,
        motion_adapter=tiny_motion_adapter(), scheduler=tiny_scheduler(), image_encoder=tiny_image_encoder(),
        feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        ip_adapter_state_dict=tiny_ip_adapter_state_dict(unet),
    )


def synthetic_talking_clip(n_frames: int = 24, size: int = TINY_RESOLUTION, fps: float = 25.0,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A drawn face whose mouth opens and closes with a voiced tone: ``(frames, landmarks, audio)``.

    ``frames`` ``(N, size, size, 3)`` uint8, ``landmarks`` ``(N, 478, 2)`` in mediapipe's topology
    (face oval, eyes, brows, irises, nose and lips placed where they belong), ``audio`` 16 kHz
    float32 whose loudness follows the mouth opening.
    """
    import cv2
    from mediapipe.python.solutions import face_mesh_connections as c

    rng = np.random.default_rng(seed)

    def chains(edges: Iterable[tuple[int, int]]) -> list[list[int]]:
        """The edge set split into ordered polylines / loops (mediapipe lists edges unordered)."""
        nbrs: dict[int, list[int]] = {}
        for a, b in edges:
            nbrs.setdefault(a, []).append(b)
            nbrs.setdefault(b, []).append(a)
        seen: set[int] = set()
        out = []
        for start in sorted(nbrs, key=lambda n: (len(nbrs[n]) != 1, n)):
            if start in seen:
                continue
            chain, cur = [start], start
            seen.add(start)
            while nxt := [n for n in nbrs[cur] if n not in seen]:
                cur = nxt[0]
                seen.add(cur)
                chain.append(cur)
            out.append(chain)
        return out

    def place_loop(chain: list[int], cx: float, cy: float, rx: float, ry: float) -> None:
        a = np.linspace(0, 2 * np.pi, len(chain), endpoint=False)
        base[chain] = np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)

    def place_line(chain: list[int], x0: float, y0: float, x1: float, y1: float) -> None:
        base[chain] = np.stack([np.linspace(x0, x1, len(chain)), np.linspace(y0, y1, len(chain))], axis=1)

    base = np.zeros((478, 2))
    inner = rng.uniform(-1, 1, (478, 2))
    inner /= np.maximum(1, np.linalg.norm(inner, axis=1, keepdims=True))
    base[:] = np.array([0.5, 0.55]) + inner * np.array([0.2, 0.26])
    oval = chains(c.FACEMESH_FACE_OVAL)[0]
    place_loop(oval, 0.5, 0.52, 0.3, 0.38)
    for group, cx in ((c.FACEMESH_LEFT_EYE, 0.62), (c.FACEMESH_RIGHT_EYE, 0.38)):
        for chain, dy in zip(chains(group), (-1, 1)):
            place_line(chain, cx - 0.06, 0.45, cx + 0.06, 0.45 + 0.02 * dy)
    for group, cx in ((c.FACEMESH_LEFT_EYEBROW, 0.62), (c.FACEMESH_RIGHT_EYEBROW, 0.38)):
        for chain, y in zip(chains(group), (0.37, 0.39)):
            place_line(chain, cx - 0.07, y, cx + 0.07, y)
    for group, cx in ((c.FACEMESH_LEFT_IRIS, 0.62), (c.FACEMESH_RIGHT_IRIS, 0.38)):
        for chain in chains(group):
            place_loop(chain, cx, 0.45, 0.015, 0.015)
    for chain in chains(c.FACEMESH_NOSE):
        place_line(chain, 0.5, 0.46, 0.5, 0.6)
    lip_loops = sorted(chains(c.FACEMESH_LIPS), key=len)
    lips = np.array(sorted({i for e in c.FACEMESH_LIPS for i in e}))
    for chain, (rx, ry) in zip(lip_loops, ((0.07, 0.01), (0.1, 0.02), (0.1, 0.02), (0.1, 0.02))):
        place_loop(chain, 0.5, 0.7, rx, ry)
    lip_ring = base[lips].copy()

    t = np.arange(n_frames) / fps
    opening = np.clip(0.5 + 0.6 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, np.pi)), 0, 1)
    frames, landmarks = [], []
    for k in range(n_frames):
        pts = base.copy()
        ring = lip_ring.copy()
        lower = ring[:, 1] > 0.7
        ring[lower, 1] += 0.08 * opening[k] * (1 - ((ring[lower, 0] - 0.5) / 0.1) ** 2).clip(0, 1)
        pts[lips] = ring
        pts *= size
        img = np.full((size, size, 3), (70, 90, 110), np.uint8)
        cv2.fillConvexPoly(img, cv2.convexHull(pts[oval].astype(np.int32)), (205, 160, 130))
        for cx in (0.38, 0.62):
            cv2.circle(img, (int(cx * size), int(0.45 * size)), max(1, size // 24), (40, 30, 30), -1)
        cv2.fillConvexPoly(img, cv2.convexHull(pts[lips].astype(np.int32)), (150, 40, 50))
        frames.append(img)
        landmarks.append(pts.astype(np.float32))

    sr = 16000
    samples = int(round(n_frames / fps * sr))
    envelope = np.interp(np.arange(samples) / sr, t, opening)
    audio = 0.4 * envelope * np.sin(2 * np.pi * 180.0 * np.arange(samples) / sr) + 0.01 * rng.standard_normal(samples)
    return np.stack(frames), np.stack(landmarks), audio.astype(np.float32)
