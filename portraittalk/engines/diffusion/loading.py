"""Where the diffusion weights come from, and loading them safely.

Weights are named by a local folder or a Hugging Face Hub id, given explicitly (CLI ``--weights``)
or through the ``PORTRAITTALK_WEIGHTS`` environment variable. A folder is what
``PortraitTalkPipeline.save_pretrained`` or the trainer writes: ``model_index.json`` plus one
sub-folder per component.

Loading never runs code or unpickles anything from the folder: each component's class comes
from a fixed list (not from the folder), and every model is read with ``use_safetensors=True``.
Hub downloads fetch only JSON, text and ``.safetensors`` files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EngineUnavailableError

if TYPE_CHECKING:
    import torch
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

WEIGHTS_ENV = "PORTRAITTALK_WEIGHTS"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors"]


class WeightsNotFoundError(EngineUnavailableError):
    """No usable diffusion weights: the message says what to set."""


def configured_weights(weights: str | None = None) -> str | None:
    """The weights named explicitly, else by ``PORTRAITTALK_WEIGHTS``, else None."""
    spec = weights if weights else os.environ.get(WEIGHTS_ENV, "")
    spec = spec.strip()
    return spec or None


def looks_like_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and not spec.startswith((".", "~"))


def resolve_weights(weights: str | None = None, local_files_only: bool | None = None) -> Path:
    """A local folder holding ``model_index.json`` for ``weights`` (downloading a Hub id if needed)."""
    spec = configured_weights(weights)
    if spec is None:
        raise WeightsNotFoundError(
            f"No diffusion weights are configured: set {WEIGHTS_ENV} (or --weights) "
            "to a local folder or a Hugging Face Hub id."
        )
    path = Path(spec).expanduser()
    if path.exists():
        if (path / "model_index.json").is_file():
            return path
        raise WeightsNotFoundError(
            f"The folder {spec} has no model_index.json: point {WEIGHTS_ENV} at a folder written "
            "by the PortraitTalk trainer or save_pretrained."
        )
    if not looks_like_hub_id(spec):
        raise WeightsNotFoundError(
            f"The diffusion weights folder {spec} does not exist: set {WEIGHTS_ENV} "
            "to an existing folder or a Hugging Face Hub id."
        )
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(spec, allow_patterns=_HUB_PATTERNS, local_files_only=bool(local_files_only)))
    except Exception as err:  # network, offline mode, unknown or private repository
        raise WeightsNotFoundError(
            f"Could not get the diffusion weights {spec} from the Hugging Face Hub ({type(err).__name__}): "
            f"check the id and network access, or set {WEIGHTS_ENV} to a local folder."
        ) from err
    if not (folder / "model_index.json").is_file():
        raise WeightsNotFoundError(
            f"The Hub repository {spec} has no model_index.json: it is not a PortraitTalk diffusion checkpoint."
        )
    return folder


def read_model_index(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "model_index.json").read_text())


def _diffusers_class(name: str, allowed: tuple[str, ...]) -> type[ModelMixin]:
    import diffusers

    if name not in allowed:
        raise WeightsNotFoundError(f"The weights use a component class {name} that PortraitTalk does not load.")
    return getattr(diffusers, name)


def _scheduler_class(name: str) -> type[SchedulerMixin]:
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise WeightsNotFoundError(f"The weights name an unknown scheduler {name}.")
    return cls


def load_component(folder: Path, name: str, class_name: str, torch_dtype: torch.dtype | None = None) -> Any:
    """One pipeline component from ``folder/name`` (a model, tokenizer, feature extractor or scheduler);
    the class is checked against a fixed list."""
    import transformers

    from .attention import ConditionAttentionAdapter
    from .audio import AudioProjection
    from .identity import IdentityEncoder
    from .structure import StructureEncoder

    sub = folder / name
    if not sub.is_dir():
        raise WeightsNotFoundError(
            f"The diffusion weights in {folder} lack the {name} component: the checkpoint is incomplete."
        )
    own = {c.__name__: c for c in (ConditionAttentionAdapter, AudioProjection, IdentityEncoder, StructureEncoder)}
    diffusers_models = {
        "vae": ("AutoencoderKL",),
        "unet": ("UNetMotionModel", "UNet2DConditionModel"),
        "reference_unet": ("UNet2DConditionModel",),
    }
    transformers_models = {
        "text_encoder": ("CLIPTextModel",),
        "image_encoder": ("CLIPVisionModelWithProjection",),
        "audio_encoder": ("Wav2Vec2Model",),
    }
    if name == "scheduler":
        return _scheduler_class(class_name).from_pretrained(sub)
    if name == "tokenizer":
        return transformers.CLIPTokenizer.from_pretrained(sub)
    if name == "audio_feature_extractor":
        return transformers.Wav2Vec2FeatureExtractor.from_pretrained(sub)
    if name in diffusers_models:
        cls = _diffusers_class(class_name, diffusers_models[name])
        return cls.from_pretrained(sub, use_safetensors=True, torch_dtype=torch_dtype)
    if name in transformers_models:
        if class_name not in transformers_models[name]:
            raise WeightsNotFoundError(
                f"The weights use a component class {class_name} that PortraitTalk does not load."
            )
        return getattr(transformers, class_name).from_pretrained(sub, use_safetensors=True, dtype=torch_dtype)
    if class_name in own:
        return own[class_name].from_pretrained(sub, use_safetensors=True, torch_dtype=torch_dtype)
    raise WeightsNotFoundError(f"The weights contain an unknown component {name} ({class_name}).")
