"""The GPU engine: PortraitTalk latent diffusion (IdentityNet + AnimateNet + decoupled conditions).

Modules
-------
attention   decoupled cross-attention (text / identity / audio) and reference attention processors
identity    IdentityNet: identity tokens (face-recognition + CLIP embeddings) and the reference UNet
audio       wav2vec2 features per frame, windowing, audio-token projection
structure   face / mouth / contour maps and their light encoder
animate     AnimateNet: the motion UNet with all conditions wired in
guidance    multi-condition classifier-free guidance
pipeline    PortraitTalkPipeline (a diffusers DiffusionPipeline)
refine      refine mode: AnimateDiff video-to-video + IP-Adapter over the warp engine's frames
data        talking-face video dataset with cached preprocessing
train       two-stage training with accelerate (``python -m portraittalk.engines.diffusion.train``)
engine      the adapter the app uses: availability, rendering, refining (numpy in, numpy out)
frames      the pipeline's engine interface: model and refine mode on a face crop, pasted back
loading     where weights come from (PORTRAITTALK_WEIGHTS, folder or Hub id); safetensors-only loading
builder     a fresh pipeline around public base weights (the start of training)
benchmark   seconds per frame on the serving machine
tiny        toy-sized components for tests and CI

Heavy libraries load only when a name below is first used, so ``engine.diffusion_status()``
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PortraitTalkPipeline": "pipeline",
    "PortraitTalkPipelineOutput": "pipeline",
    "DecoupledCrossAttnProcessor": "attention",
    "ReferenceAttnProcessor": "attention",
    "ConditionAttentionAdapter": "attention",
    "IdentityEncoder": "identity",
    "IdentityNet": "identity",
    "FaceEmbedder": "identity",
    "AudioProjection": "audio",
    "StructureEncoder": "structure",
    "AnimateNet": "animate",
    "PortraitRefiner": "refine",
    "DiffusionEngine": "engine",
    "diffusion_status": "engine",
    "refine_status": "engine",
    "WeightsNotFoundError": "loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
