"""The diffusion engine as the app and the main pipeline see it: numpy in, numpy out.

* :func:`diffusion_status` / :func:`refine_status` — can this machine offer the engine, and if
  not, a short human reason for the UI ("no GPU on this machine", "no weights configured: …").
* :class:`DiffusionEngine` — loads PortraitTalk weights once (``from_config``), then ``render``
  yields RGB uint8 face-crop frames; ``refine`` runs refine mode over frames from the warp engine.

GPU-bound work runs in module-level functions wrapped by ``@spaces.GPU`` (a no-op off Hugging
Face Spaces). On ZeroGPU the decorated call runs in a worker that receives its arguments by
value, so the functions take only numpy arrays, numbers and a key into the module-level model
registry — never the models themselves, which are loaded once at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import spaces

from ...errors import EngineUnavailableError
from .guidance import guidance_branches
from .loading import WEIGHTS_ENV, configured_weights, looks_like_hub_id

if TYPE_CHECKING:
    from .identity import FaceEmbedder
    from .pipeline import PortraitTalkPipeline
    from .refine import PortraitRefiner

# Loaded models, by key; filled by the engine constructors, read by the GPU functions.
_PIPELINES: dict[str, PortraitTalkPipeline] = {}
_REFINERS: dict[str, PortraitRefiner] = {}

# Assumed (not yet measured) cost of one denoiser pass for one 512×512 frame on an H100/H200, for
# ZeroGPU's time budget; replace with the figure ``python -m portraittalk.engines.diffusion.benchmark`` gives.
_SECONDS_PER_FRAME_PASS = 0.06


def _gpu_available() -> bool:
    from spaces.config import Config

    if Config.zero_gpu:  # CUDA appears only inside @spaces.GPU functions there
        return True
    import torch

    return torch.cuda.is_available()


def _weights_problem(weights: str | None) -> str | None:
    spec = configured_weights(weights)
    if spec is None:
        return f"no weights configured: set {WEIGHTS_ENV} to a local folder or a Hub id"
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            return f"the weights folder {spec} has no model_index.json"
        return None
    if not looks_like_hub_id(spec):
        return f"the weights folder {spec} does not exist"
    return None


def diffusion_status(weights: str | None = None) -> tuple[bool, str]:
    """``(available, reason)``: the diffusion engine needs a GPU and configured weights."""
    reasons = []
    if not _gpu_available():
        reasons.append("no GPU on this machine")
    problem = _weights_problem(weights)
    if problem:
        reasons.append(problem)
    if reasons:
        return False, "; ".join(reasons)
    return True, f"diffusion weights: {configured_weights(weights)}"


def refine_status() -> tuple[bool, str]:
    """``(available, reason)``: refine mode needs a GPU (its public weights come from the Hub)."""
    if not _gpu_available():
        return False, "no GPU on this machine"
    return True, "refine mode with public Stable Diffusion 1.5 + AnimateDiff + IP-Adapter weights"


class _RenderSettings(TypedDict):
    """A render's settings as the GPU function receives them (by value on ZeroGPU)."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance: dict[str, float]  # "audio", "identity", "text"
    identity_scale: float
    audio_scale: float
    text_scale: float
    seed: int


class _RefineSettings(TypedDict, total=False):
    """Keyword arguments of :meth:`PortraitRefiner.refine`, as the GPU function receives them
    (those not set take the refiner's defaults)."""

    prompt: str
    strength: float
    num_inference_steps: int
    guidance_scale: float
    identity_scale: float
    seed: int
    negative_prompt: str


def _guidance_scales(guidance: float | Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    """A float applies to all conditions; a triple is (audio, identity, text); or a mapping."""
    if isinstance(guidance, Mapping):
        g = {k: float(guidance[k]) for k in ("audio", "identity", "text")}
    elif isinstance(guidance, (int, float)):
        g = dict.fromkeys(("audio", "identity", "text"), float(guidance))
    else:
        audio, identity, text = (float(x) for x in guidance)
        g = {"audio": audio, "identity": identity, "text": text}
    return g


def render_gpu_seconds(n_frames: int, steps: int, guidance: float | Sequence[float] | Mapping[str, float]) -> int:
    """Rough GPU time of a render at 512 px on an H100/H200 (for ZeroGPU's ``duration``)."""
    g = _guidance_scales(guidance)
    passes = len(guidance_branches(g["identity"], g["audio"], g["text"]))
    return int(min(3600, 30 + n_frames * steps * passes * _SECONDS_PER_FRAME_PASS))


def _render_duration(key: str, reference_rgbs: list[np.ndarray], face_embeddings: np.ndarray, audio_16k: np.ndarray,
                     fps: float, n_frames: int, structure_maps: np.ndarray | None, settings: _RenderSettings) -> int:
    return render_gpu_seconds(n_frames, settings["steps"], settings["guidance"])


@spaces.GPU(duration=_render_duration)
def _render_on_gpu(key: str, reference_rgbs: list[np.ndarray], face_embeddings: np.ndarray, audio_16k: np.ndarray,
                   fps: float, n_frames: int, structure_maps: np.ndarray | None,
                   settings: _RenderSettings) -> Iterator[np.ndarray]:
    # ``generate`` switches gradients off around each of its own steps only; a ``with`` block here
    # would stay active in the caller between yielded frames.
    pipe = _PIPELINES[key]
    g = settings["guidance"]
    for chunk in pipe.generate(
        reference_rgbs,
        audio_16k,
        fps=fps,
        num_frames=n_frames,
        prompt=settings["prompt"],
        negative_prompt=settings["negative_prompt"],
        face_embeddings=face_embeddings,
        structure_maps=structure_maps,
        num_inference_steps=settings["steps"],
        identity_guidance_scale=g["identity"],
        audio_guidance_scale=g["audio"],
        text_guidance_scale=g["text"],
        identity_scale=settings["identity_scale"],
        audio_scale=settings["audio_scale"],
        text_scale=settings["text_scale"],
        seed=settings["seed"],
    ):
        yield from np.asarray(chunk)  # uint8 frames (the default output type); asarray passes them through


def _refine_duration(key: str, frames: np.ndarray, reference_rgbs: list[np.ndarray], settings: _RefineSettings) -> int:
    from .refine import STEPS, STRENGTH

    steps = max(1, int(settings.get("num_inference_steps", STEPS) * settings.get("strength", STRENGTH)))
    return int(min(3600, 30 + len(frames) * steps * 2 * _SECONDS_PER_FRAME_PASS))


@spaces.GPU(duration=_refine_duration)
def _refine_on_gpu(key: str, frames: np.ndarray, reference_rgbs: list[np.ndarray],
                   settings: _RefineSettings) -> np.ndarray:
    return _REFINERS[key].refine(frames, reference_rgbs, **settings)


class DiffusionEngine:
    """PortraitTalk diffusion rendering (and refine mode) for the app."""

    def __init__(self, key: str | None, device: str, refine_key: str | None = None):
        self.key = key
        self.device = device
        self.refine_key = refine_key
        self._face_embedder: FaceEmbedder | None = None

    def resolution(self) -> int:
        """Side of the square face crops the loaded model renders (its config's ``resolution``)."""
        return int(_PIPELINES[self._pipeline_key()].config["resolution"])

    def _pipeline_key(self) -> str:
        if self.key is None:
            raise EngineUnavailableError(
                f"No diffusion weights are loaded: set {WEIGHTS_ENV} to a local folder or a Hub id, or use refine mode."
            )
        return self.key

    @staticmethod
    def _device(device: str | None) -> str:
        if device:
            return device
        if not _gpu_available():
            raise EngineUnavailableError("The diffusion engine needs a GPU, and this machine has none: use the warp engine.")
        return "cuda"

    @classmethod
    def from_config(cls, weights: str | None = None, device: str | None = None) -> "DiffusionEngine":
        """Load PortraitTalk weights (a folder or Hub id; default ``PORTRAITTALK_WEIGHTS``) once.

        Raises ``EngineUnavailableError`` with a plain sentence when there is no GPU (and no
        ``device`` was forced) or the weights are missing.
        """
        import torch

        from .pipeline import PortraitTalkPipeline

        device = cls._device(device)
        spec = configured_weights(weights)
        key = f"{spec}@{device}"
        if key not in _PIPELINES:
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            pipe = PortraitTalkPipeline.from_pretrained(spec, torch_dtype=dtype)
            pipe.set_progress_bar_config(disable=True)
            _PIPELINES[key] = pipe.to(device)
        return cls(key, device)

    @classmethod
    def for_refine(cls, device: str | None = None, refiner: PortraitRefiner | None = None) -> "DiffusionEngine":
        """An engine that only refines (no PortraitTalk weights needed); ``refiner`` for custom bases."""
        device = cls._device(device)
        key = f"refine@{device}" if refiner is None else f"refine-{id(refiner)}@{device}"
        if key not in _REFINERS:
            if refiner is None:
                import torch

                from .refine import PortraitRefiner

                dtype = torch.float16 if device.startswith("cuda") else torch.float32
                refiner = PortraitRefiner.from_pretrained(torch_dtype=dtype, device=device)
            _REFINERS[key] = refiner
        return cls(None, device, refine_key=key)

    def face_embeddings(self, reference_rgbs: list[np.ndarray]) -> np.ndarray:
        """dlib descriptors of the references (computed on the CPU, before any GPU time is taken)."""
        from .identity import FaceEmbedder

        if self._face_embedder is None:
            self._face_embedder = FaceEmbedder()
        return np.stack([self._face_embedder(r) for r in reference_rgbs])

    def render(
        self,
        reference_rgbs: list[np.ndarray],
        audio_16k: np.ndarray,
        fps: float,
        n_frames: int,
        prompt: str = "",
        structure_maps: np.ndarray | None = None,
        audio_scale: float = 1.0,
        identity_scale: float = 1.0,
        text_scale: float = 1.0,
        steps: int = 25,
        guidance: float | Sequence[float] | Mapping[str, float] = (3.5, 2.0, 3.5),
        seed: int = 0,
        negative_prompt: str = "",
        face_embeddings: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield ``n_frames`` RGB uint8 face-crop frames at the model resolution.

        ``reference_rgbs``: face crops (the face centred, about 60 % of the side). ``structure_maps``:
        ``(n_frames, H, W, 3)`` maps from :func:`~.structure.structure_map_from_landmarks`, or None.
        ``audio_scale`` / ``identity_scale`` / ``text_scale``: strength of each condition's
        cross-attention (0 = off, 1 = as trained). ``guidance``: classifier-free guidance — one
        float for all conditions, or ``(audio, identity, text)``, or a mapping with those keys.
        """
        key = self._pipeline_key()
        refs = [np.ascontiguousarray(np.asarray(r)[..., :3], dtype=np.uint8) for r in reference_rgbs]
        if face_embeddings is None:
            face_embeddings = self.face_embeddings(refs)
        settings: _RenderSettings = {
            "prompt": prompt or "", "negative_prompt": negative_prompt or "", "steps": int(steps),
            "guidance": _guidance_scales(guidance), "identity_scale": float(identity_scale),
            "audio_scale": float(audio_scale), "text_scale": float(text_scale), "seed": int(seed),
        }
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        yield from _render_on_gpu(key, refs, face_embeddings, audio, float(fps), int(n_frames), structure_maps, settings)

    def refine(self, frames: np.ndarray, reference_rgbs: list[np.ndarray], prompt: str = "",
               steps: int | None = None, guidance: float | None = None, **options: Any) -> np.ndarray:
        """Refine mode over ``(N, H, W, 3)`` uint8 frames; returns frames of the same shape. ``steps``
        and ``guidance`` are named as in ``render``; ``options`` (strength, identity_scale, seed,
        negative_prompt) are :meth:`PortraitRefiner.refine`'s, whose defaults hold for what is not set."""
        if self.refine_key is None:
            self.refine_key = DiffusionEngine.for_refine(self.device).refine_key
        settings = _RefineSettings(prompt=prompt or "", **options)  # type: ignore[typeddict-item]
        if steps is not None:
            settings["num_inference_steps"] = int(steps)
        if guidance is not None:
            settings["guidance_scale"] = float(guidance)
        refs = [np.ascontiguousarray(np.asarray(r)[..., :3], dtype=np.uint8) for r in reference_rgbs]
        return _refine_on_gpu(self.refine_key, np.asarray(frames), refs, settings)

