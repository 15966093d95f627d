"""Decoupled cross-attention and reference attention on a tiny motion UNet (CPU, no downloads)."""

import pytest
import torch

from portraittalk.engines.diffusion.attention import (
    STATE_KWARG,
    ConditionAttentionAdapter,
    DenoiserConditions,
    install_denoiser_processors,
    spatial_attention_layers,
)
from portraittalk.engines.diffusion.tiny import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=3)


def _inputs(batch=2, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = batch * frames
    return dict(
        sample=torch.randn(batch, 8, frames, 8, 8, generator=g),
        context=torch.randn(n, 16, 16, generator=g),
        identity=torch.randn(n, 4, 16, generator=g),
        audio=torch.randn(n, 4, 16, generator=g),
    )


def _run(unet, x, state=None):
    kwargs = None if state is None else {STATE_KWARG: state}
    with torch.no_grad():
        return unet(x["sample"], torch.tensor(500), x["context"], cross_attention_kwargs=kwargs).sample


def test_zero_extra_scales_reproduce_the_base_processor_exactly(pipe):
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet, x = pipe.unet, _inputs()
    n = x["context"].shape[0]
    try:
        unet.set_attn_processor(AttnProcessor2_0())
        base = _run(unet, x)
        install_denoiser_processors(unet, pipe.condition_adapter)
        zero = DenoiserConditions(
            identity_tokens=x["identity"], audio_tokens=x["audio"],
            identity_scale=torch.zeros(n), audio_scale=torch.zeros(n),
        )
        assert torch.equal(_run(unet, x, zero), base)
        assert torch.equal(_run(unet, x, None), base)
        on = DenoiserConditions(
            identity_tokens=x["identity"], audio_tokens=x["audio"],
            identity_scale=torch.ones(n), audio_scale=torch.zeros(n),
        )
        assert (_run(unet, x, on) - base).abs().max() > 1e-3
    finally:
        install_denoiser_processors(unet, pipe.condition_adapter)


@pytest.mark.parametrize("condition", ["identity", "audio"])
def test_each_condition_scale_acts_per_sample(pipe, condition):
    unet, x = pipe.unet, _inputs()
    n = x["context"].shape[0]  # 2 videos × 3 frames: frames of video 1 get the condition
    scales = {"identity_scale": torch.zeros(n), "audio_scale": torch.zeros(n)}
    base = _run(unet, x, DenoiserConditions(identity_tokens=x["identity"], audio_tokens=x["audio"], **scales))
    scales[f"{condition}_scale"] = torch.tensor([0.0, 0.0, 0.0, 0.7, 0.7, 0.7])
    out = _run(unet, x, DenoiserConditions(identity_tokens=x["identity"], audio_tokens=x["audio"], **scales))
    assert torch.equal(out[0], base[0])
    assert (out[1] - base[1]).abs().max() > 1e-3

    scales[f"{condition}_scale"] = torch.tensor([0.0, 0.0, 0.0, 1.4, 1.4, 1.4])
    stronger = _run(unet, x, DenoiserConditions(identity_tokens=x["identity"], audio_tokens=x["audio"], **scales))
    assert (stronger[1] - base[1]).abs().mean() > (out[1] - base[1]).abs().mean()


def test_text_scale_scales_the_text_attention(pipe):
    unet, x = pipe.unet, _inputs()
    plain = _run(unet, x, DenoiserConditions())
    assert torch.equal(_run(unet, x, DenoiserConditions(text_scale=1.0)), plain)
    assert (_run(unet, x, DenoiserConditions(text_scale=0.0)) - plain).abs().max() > 1e-3


def test_reference_attention_reads_captured_features_and_can_be_masked(pipe):
    unet, x = pipe.unet, _inputs(batch=1, frames=2)
    g = torch.Generator().manual_seed(1)
    ref_pixels = torch.rand(1, 2, 3, 32, 32, generator=g) * 2 - 1
    ref_latents = torch.randn(1, 2, 4, 8, 8, generator=g)
    with torch.no_grad():
        identity = pipe.identity_net(ref_pixels, ref_latents, torch.randn(1, 2, 128, generator=g))
    self_layers = {n for n in spatial_attention_layers(unet) if n.endswith("attn1")}
    assert set(identity.reference_features) == self_layers  # one feature map per denoiser self-attention
    for feats in identity.reference_features.values():
        # two references concatenated along the token axis
        assert feats.shape[0] == 1 and feats.shape[1] % 2 == 0

    plain = _run(unet, x, DenoiserConditions())
    index = torch.zeros(2, dtype=torch.long)
    off = DenoiserConditions(reference_features=identity.reference_features, reference_index=index,
                             reference_keep=torch.tensor([False, False]))
    assert torch.equal(_run(unet, x, off), plain)
    on = DenoiserConditions(reference_features=identity.reference_features, reference_index=index,
                            reference_keep=torch.tensor([True, True]))
    with_ref = _run(unet, x, on)
    assert (with_ref - plain).abs().max() > 1e-3
    # Per-sample masking: in a 2-video batch, the video without reference matches the plain run.
    x2 = {k: torch.cat([v, v]) for k, v in x.items()}
    mixed = DenoiserConditions(reference_features=identity.reference_features,
                               reference_index=torch.zeros(4, dtype=torch.long),
                               reference_keep=torch.tensor([True, True, False, False]))
    both = _run(unet, x2, mixed)
    assert torch.allclose(both[0], with_ref[0], atol=1e-5)
    assert torch.allclose(both[1], plain[0], atol=1e-5)


def test_fresh_adapter_starts_as_the_text_projections():
    from portraittalk.engines.diffusion.tiny import tiny_unet

    unet = tiny_unet()
    adapter = ConditionAttentionAdapter.for_unet(unet)
    cross = {n: m for n, m in spatial_attention_layers(unet).items() if n.endswith("attn2")}
    assert len(adapter.config.layers) == len(cross) > 0
    for name, module in cross.items():
        for condition in ("identity", "audio"):
            to_k, to_v = adapter.layer_kv(name)[condition]
            assert torch.equal(to_k.weight, module.to_k.weight)
            assert torch.equal(to_v.weight, module.to_v.weight)
            assert to_k.weight.data_ptr() != module.to_k.weight.data_ptr()  # a copy, trained separately
