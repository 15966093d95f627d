"""Every setting a user can give a render, in one place (CLI, app, API and batch read it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

MAX_AUDIO_SECONDS = 600.0  # a longer clip is refused with this limit named in the message
ENGINES = ("warp", "diffusion")


@dataclass
class RenderSettings:
    """Everything a user can set. Defaults are what the CLI and the app use."""

    fps: float = 25.0
    seed: int = 0
    max_size: int = 1024  # long side of the output video, px
    transcript: str | None = None
    prompt: str = ""
    audio_strength: float = 1.0  # 0 = mouth still, 1 = natural, up to 2 = exaggerated
    identity_strength: float = 1.0  # how far the face may deform from the portrait (0.3 … 1)
    prompt_strength: float = 1.0
    head_motion: float = 1.0  # 0 = still head
    expression_intensity: float = 1.0
    blink_rate: float = 1.0  # 0 = never blink
    engine: str = "warp"
    score_identity: bool = True
    # Diffusion engine only: weights folder or Hub id (default: $PORTRAITTALK_WEIGHTS), device
    # (default: the GPU), denoising steps and classifier-free guidance.
    weights: str | None = None
    device: str | None = None
    diffusion_steps: int = 25
    guidance_scale: float = 3.5

    def validated(self) -> "RenderSettings":
        """Reject settings that cannot make a video, with a sentence saying the allowed range."""
        def check(name: str, value: float, lo: float, hi: float) -> None:
            if not (np.isfinite(value) and lo <= value <= hi):
                raise InputError(f"The setting '{name}' must be between {lo:g} and {hi:g} (got {value!r}).")
        check("fps", self.fps, 5, 60)
        check("max_size", self.max_size, 64, 4096)
        for name in ("audio_strength", "identity_strength", "prompt_strength", "head_motion",
                     "expression_intensity", "blink_rate"):
            check(name, getattr(self, name), 0, 2)
        whole = isinstance(self.seed, (int, np.integer)) or (isinstance(self.seed, float) and self.seed.is_integer())
        if not whole or not 0 <= int(self.seed) < 2**63:
            raise InputError(f"The setting 'seed' must be a whole number from 0 up (got {self.seed!r}).")
        self.seed = int(self.seed)
        check("diffusion_steps", self.diffusion_steps, 1, 200)
        check("guidance_scale", self.guidance_scale, 0, 20)
        if len(self.prompt or "") > 1000 or len(self.transcript or "") > 20000:
            raise InputError("The prompt (up to 1000 characters) or the transcript (up to 20000) is too long; shorten it.")
        if self.engine not in ENGINES:
            raise InputError(f"Unknown engine '{self.engine}'; choose one of: {', '.join(ENGINES)}.")
        return self
