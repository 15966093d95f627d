"""Attention processors of the diffusion engine: decoupled cross-attention and reference attention.

Decoupled cross-attention (the IP-Adapter formulation generalised to several conditions):
each spatial cross-attention layer keeps the UNet's own key/value projections for the text
tokens and gets one extra key/value pair per extra condition (identity tokens, audio tokens).
The query is shared; every condition is attended to separately and the results are summed,
each with its own scale::

    out = s_text · Attn(q, K_text, V_text) + s_id · Attn(q, K_id, V_id) + s_audio · Attn(q, K_a, V_a)

With ``s_id = s_audio = 0`` the layer computes exactly what diffusers' ``AttnProcessor2_0``
computes (same operations in the same order), so a pretrained text-to-image UNet is left
untouched until the new projections are trained. Scales are per sample, which is how a
condition is dropped for classifier-free guidance and for condition dropout in training.

Reference attention (as in "Animate Anyone"): the reference UNet runs once on the clean
reference latents and its self-attention inputs are captured layer by layer; the denoiser's
self-attention then attends over its own tokens concatenated with the reference tokens of the
same layer, using its own projections. Appearance details of the reference portrait thereby
reach every generated frame. A per-sample ``reference_keep`` flag masks the reference tokens
out (for the identity-free guidance branch).

Processors are plain callables (not ``nn.Module``): their extra weights live in
:class:`ConditionAttentionAdapter`, a separate component that is saved on its own, so the UNet's
state dict stays the standard diffusers one and loads with stock tools. Per-call inputs travel
through ``cross_attention_kwargs={"portraittalk": state}``; every processor installed here
accepts that single keyword so diffusers never warns about unexpected arguments.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention, AttentionProcessor
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

if TYPE_CHECKING:
    from diffusers.models import UNet2DConditionModel, UNetMotionModel

#: The single keyword our processors read from ``cross_attention_kwargs``.
STATE_KWARG = "portraittalk"
#: Extra conditions that get their own key/value projections.
EXTRA_CONDITIONS = ("identity", "audio")
#: An attention processor: diffusers calls it with the layer, its input and the keyword arguments.
Processor = Callable[..., torch.Tensor]


@dataclass
class ReferenceCapture:
    """Sink for the reference UNet pass: layer name → self-attention input ``(N, tokens, C)``."""

    features: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class DenoiserConditions:
    """Per-call inputs of the denoiser's processors; every tensor has the denoiser batch ``N`` first.

    ``N`` is batch × frames (the motion UNet folds frames into the batch). Scales are per sample:
    0 switches a condition off for that sample, exactly.
    """

    identity_tokens: torch.Tensor | None = None  # (N, T_id, D)
    audio_tokens: torch.Tensor | None = None  # (N, T_audio, D)
    identity_scale: torch.Tensor | None = None  # (N,)
    audio_scale: torch.Tensor | None = None  # (N,)
    text_scale: float = 1.0
    reference_features: dict[str, torch.Tensor] | None = None  # layer → (B_ref, M, C)
    reference_index: torch.Tensor | None = None  # (N,) long: row of reference_features per sample
    reference_keep: torch.Tensor | None = None  # (N,) bool: attend to the reference tokens

    def __post_init__(self) -> None:
        # Decided once per call on the host so the per-layer code never synchronises the device.
        self.identity_active = _any_nonzero(self.identity_tokens, self.identity_scale)
        self.audio_active = _any_nonzero(self.audio_tokens, self.audio_scale)
        self.reference_active = bool(self.reference_features) and (
            self.reference_keep is None or bool(self.reference_keep.any())
        )
        self.reference_all = self.reference_keep is None or bool(self.reference_keep.all())

    def condition(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Tokens and per-sample scales of an extra condition; None when it is off for every sample."""
        if name == "identity":
            tokens, scale, active = self.identity_tokens, self.identity_scale, self.identity_active
        elif name == "audio":
            tokens, scale, active = self.audio_tokens, self.audio_scale, self.audio_active
        else:
            raise KeyError(name)
        return (tokens, scale) if active and tokens is not None and scale is not None else None

    def reference(self, layer: str) -> torch.Tensor | None:
        """The reference tokens for ``layer``; None when reference attention is off for every sample."""
        if not self.reference_active or self.reference_features is None:
            return None
        return self.reference_features.get(layer)


def _any_nonzero(tokens: torch.Tensor | None, scale: torch.Tensor | None) -> bool:
    return tokens is not None and scale is not None and bool((scale != 0).any())


def _split_heads(x: torch.Tensor, batch: int, heads: int, head_dim: int) -> torch.Tensor:
    return x.view(batch, -1, heads, head_dim).transpose(1, 2)


Shape4 = tuple[int, int, int, int]  # (batch, channels, height, width) of a 4-D attention input


def _prepare(attn: Attention, hidden_states: torch.Tensor,
             temb: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, Shape4 | None]:
    """The input handling of ``AttnProcessor2_0``, shared so our output matches it bit for bit."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    input_ndim = hidden_states.ndim
    shape4: Shape4 | None = None
    if input_ndim == 4:
        batch_size, channel, height, width = hidden_states.shape
        shape4 = (batch_size, channel, height, width)
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
    return residual, hidden_states, shape4


def _project(
    attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> tuple[int, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``AttnProcessor2_0``'s mask, norms and q/k/v projections: (batch, mask, query, key, value)."""
    batch_size, sequence_length, _ = (
        hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
    )
    attention_mask = _mask_for_sdpa(attn, attention_mask, sequence_length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    return batch_size, attention_mask, query, attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)


def _attend(attn: Attention, batch_size: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Multi-head scaled dot-product attention as ``AttnProcessor2_0`` does it:
    (query split into heads, head size, output before the out-projection)."""
    head_dim = key.shape[-1] // attn.heads
    query = _split_heads(query, batch_size, attn.heads, head_dim)
    key = _split_heads(key, batch_size, attn.heads, head_dim)
    value = _split_heads(value, batch_size, attn.heads, head_dim)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
    return query, head_dim, out.to(query.dtype)


def _finish(attn: Attention, hidden_states: torch.Tensor, residual: torch.Tensor, shape4: Shape4 | None) -> torch.Tensor:
    hidden_states = attn.to_out[0](hidden_states)
    hidden_states = attn.to_out[1](hidden_states)
    if shape4 is not None:
        hidden_states = hidden_states.transpose(-1, -2).reshape(*shape4)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor


def _mask_for_sdpa(attn: Attention, attention_mask: torch.Tensor | None, sequence_length: int,
                   batch_size: int) -> torch.Tensor | None:
    if attention_mask is None:
        return None
    attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
    return attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])


class _Processor(ABC):
    """``AttnProcessor2_0``'s call around an attention core that subclasses supply."""

    def __init__(self, layer: str) -> None:
        self.layer = layer

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        portraittalk: DenoiserConditions | ReferenceCapture | None = None,
    ) -> torch.Tensor:
        residual, hidden_states, shape4 = _prepare(attn, hidden_states, temb)
        out = self._core(attn, hidden_states, encoder_hidden_states, attention_mask, portraittalk)
        return _finish(attn, out, residual, shape4)

    @abstractmethod
    def _core(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
              attention_mask: torch.Tensor | None,
              portraittalk: DenoiserConditions | ReferenceCapture | None) -> torch.Tensor:
        """The output before the out-projection, from the prepared ``(batch, tokens, C)`` input."""


class DecoupledCrossAttnProcessor(_Processor):
    """Cross-attention with separate key/value projections and scales per condition.

    ``kv`` maps a condition name to its ``(to_k, to_v)`` linear layers (owned by a
    :class:`ConditionAttentionAdapter`). Without a :class:`DenoiserConditions` state, or with all
    extra scales at 0, this is the base processor.
    """

    def __init__(self, layer: str, kv: dict[str, tuple[nn.Linear, nn.Linear]] | None = None) -> None:
        super().__init__(layer)
        self.kv = dict(kv or {})

    def _core(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
              attention_mask: torch.Tensor | None,
              portraittalk: DenoiserConditions | ReferenceCapture | None) -> torch.Tensor:
        batch_size, attention_mask, query, key, value = _project(attn, hidden_states, encoder_hidden_states,
                                                                 attention_mask)

        query, head_dim, out = _attend(attn, batch_size, query, key, value, attention_mask)

        state = portraittalk if isinstance(portraittalk, DenoiserConditions) else None
        if state is not None:
            if state.text_scale != 1.0:
                out = out * state.text_scale
            for name, (to_k, to_v) in self.kv.items():
                condition = state.condition(name)
                if condition is None:
                    continue
                tokens, scale = condition
                tokens = tokens.to(dtype=query.dtype)
                k = _split_heads(to_k(tokens), batch_size, attn.heads, head_dim)
                v = _split_heads(to_v(tokens), batch_size, attn.heads, head_dim)
                extra = F.scaled_dot_product_attention(query, k, v, dropout_p=0.0, is_causal=False)
                extra = extra.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
                out = out + scale.to(out.dtype).view(-1, 1, 1) * extra
        return out


class ReferenceAttnProcessor(_Processor):
    """Self-attention that captures (reference UNet) or reads (denoiser) reference features.

    With a :class:`ReferenceCapture` state it stores its input under its layer name and attends
    normally. With a :class:`DenoiserConditions` state holding features for its layer, keys and
    values are computed over ``[own tokens, reference tokens]``. Otherwise it is the base processor.
    """

    def _core(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
              attention_mask: torch.Tensor | None,
              portraittalk: DenoiserConditions | ReferenceCapture | None) -> torch.Tensor:
        if isinstance(portraittalk, ReferenceCapture):
            portraittalk.features[self.layer] = hidden_states

        state = portraittalk if isinstance(portraittalk, DenoiserConditions) else None
        reference = state.reference(self.layer) if state is not None and encoder_hidden_states is None else None

        batch_size, attention_mask, query, key, value = _project(attn, hidden_states, encoder_hidden_states,
                                                                 attention_mask)

        if state is not None and reference is not None:
            # Project the (few) reference rows once, then gather one row per denoiser sample.
            reference = reference.to(dtype=key.dtype)
            ref_key = attn.to_k(reference)
            ref_value = attn.to_v(reference)
            if state.reference_index is not None:
                ref_key = ref_key.index_select(0, state.reference_index)
                ref_value = ref_value.index_select(0, state.reference_index)
            key = torch.cat([key, ref_key], dim=1)
            value = torch.cat([value, ref_value], dim=1)
            if attention_mask is not None:
                raise ValueError("reference attention does not support a self-attention mask")
            if state.reference_keep is not None and not state.reference_all:
                own = torch.ones(batch_size, key.shape[1] - ref_key.shape[1], dtype=torch.bool, device=key.device)
                ref = state.reference_keep.to(key.device).view(-1, 1).expand(-1, ref_key.shape[1])
                attention_mask = torch.cat([own, ref], dim=1)[:, None, None, :]

        _, _, out = _attend(attn, batch_size, query, key, value, attention_mask)
        return out


def _module_key(layer: str) -> str:
    # ModuleDict keys may not contain dots.
    return layer.replace(".", "__")


def spatial_attention_layers(unet: nn.Module) -> dict[str, Attention]:
    """Spatial self-/cross-attention modules of a (motion) UNet by name, motion modules excluded."""
    layers: dict[str, Attention] = {}
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and "motion_modules" not in name and name.rsplit(".", 1)[-1] in ("attn1", "attn2"):
            layers[name] = module
    return layers


# diffusers' ModelMixin and ConfigMixin declare ``config_name`` as str and None; ModelMixin's wins.
class ConditionAttentionAdapter(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Key/value projections of the extra conditions for every spatial cross-attention layer.

    ``layers`` lists ``[layer name, hidden size]`` pairs of the denoiser's ``attn2`` modules.
    """

    @register_to_config
    def __init__(
        self,
        layers: Sequence[Sequence[str | int]] = (),
        cross_attention_dim: int = 768,
        conditions: Sequence[str] = EXTRA_CONDITIONS,
    ) -> None:
        super().__init__()
        self.to_k = nn.ModuleDict()
        self.to_v = nn.ModuleDict()
        for condition in conditions:
            self.to_k[condition] = nn.ModuleDict(
                {_module_key(str(n)): nn.Linear(cross_attention_dim, int(h), bias=False) for n, h in layers}
            )
            self.to_v[condition] = nn.ModuleDict(
                {_module_key(str(n)): nn.Linear(cross_attention_dim, int(h), bias=False) for n, h in layers}
            )

    @classmethod
    def for_unet(cls, unet: nn.Module, conditions: Sequence[str] = EXTRA_CONDITIONS) -> "ConditionAttentionAdapter":
        """A fresh adapter whose projections start as copies of the text projections (IP-Adapter init)."""
        cross = {n: m for n, m in spatial_attention_layers(unet).items() if n.endswith("attn2")}
        first = next(iter(cross.values()))
        adapter = cls(
            layers=[[n, m.to_k.out_features] for n, m in cross.items()],
            cross_attention_dim=first.to_k.in_features,
            conditions=list(conditions),
        )
        with torch.no_grad():
            for condition in conditions:
                for n, m in cross.items():
                    to_k, to_v = adapter._projections(condition, _module_key(n))
                    to_k.weight.copy_(m.to_k.weight)
                    to_v.weight.copy_(m.to_v.weight)
        weight = first.to_k.weight
        if weight.dtype != adapter.dtype or weight.device != adapter.device:
            adapter = adapter.to(device=weight.device, dtype=weight.dtype)
        return adapter

    def _table(self, side: nn.ModuleDict, condition: str) -> nn.ModuleDict:
        # nn.ModuleDict types its items as nn.Module; ``to_k`` / ``to_v`` hold a ModuleDict per condition.
        return cast(nn.ModuleDict, side[condition])

    def _projections(self, condition: str, key: str) -> tuple[nn.Linear, nn.Linear]:
        # ... and each of those an nn.Linear per layer.
        return (cast(nn.Linear, self._table(self.to_k, condition)[key]),
                cast(nn.Linear, self._table(self.to_v, condition)[key]))

    def layer_kv(self, layer: str) -> dict[str, tuple[nn.Linear, nn.Linear]]:
        key = _module_key(layer)
        return {c: self._projections(c, key) for c in self.config["conditions"] if key in self._table(self.to_k, c)}

    def condition_parameters(self, condition: str) -> list[nn.Parameter]:
        return list(self.to_k[condition].parameters()) + list(self.to_v[condition].parameters())


def install_denoiser_processors(unet: UNet2DConditionModel | UNetMotionModel,
                                adapter: ConditionAttentionAdapter | None) -> None:
    """Reference-reading self-attention and decoupled cross-attention on every spatial layer."""
    processors: dict[str, AttentionProcessor | Processor] = {}
    for name, proc in unet.attn_processors.items():
        layer = name[: -len(".processor")]
        if "motion_modules" in name:
            processors[name] = proc
        elif layer.endswith("attn1"):
            processors[name] = ReferenceAttnProcessor(layer)
        else:
            processors[name] = DecoupledCrossAttnProcessor(layer, adapter.layer_kv(layer) if adapter else None)
    _set_processors(unet, processors)


def install_reference_processors(reference_unet: UNet2DConditionModel) -> None:
    """Capturing self-attention on the reference UNet (its cross-attention stays the base one)."""
    processors: dict[str, Processor] = {}
    for name in reference_unet.attn_processors:
        layer = name[: -len(".processor")]
        processors[name] = ReferenceAttnProcessor(layer) if layer.endswith("attn1") else DecoupledCrossAttnProcessor(layer)
    _set_processors(reference_unet, processors)


def _set_processors(unet: UNet2DConditionModel | UNetMotionModel,
                    processors: Mapping[str, AttentionProcessor | Processor]) -> None:
    # diffusers types processors as a fixed union of its own classes; it takes any callable of their signature.
    unet.set_attn_processor(processors)  # type: ignore[arg-type]
