"""Refine mode (AnimateDiff video-to-video + IP-Adapter) on tiny components, CPU, offline."""

import numpy as np
import pytest

from portraittalk.engines.diffusion import tiny
from portraittalk.engines.diffusion.refine import RefineWeights
from portraittalk.errors import InputError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def refiner():
    return tiny.tiny_refiner(seed=0)


@pytest.fixture(scope="module")
def clip():
    frames, _, _ = tiny.synthetic_talking_clip(n_frames=20, size=32, fps=25.0, seed=5)
    return frames


def _diff(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_strength_sets_how_far_frames_move(refiner, clip):
    kw = dict(prompt="a face", num_inference_steps=4, seed=1)
    light = refiner.refine(clip[:6], [clip[0]], strength=0.25, **kw)
    heavy = refiner.refine(clip[:6], [clip[0]], strength=1.0, **kw)
    assert light.shape == clip[:6].shape and light.dtype == np.uint8
    assert _diff(light, clip[:6]) < _diff(heavy, clip[:6])
    assert np.array_equal(refiner.refine(clip[:6], [clip[0]], strength=0.25, **kw), light)


def test_identity_image_and_its_scale_reach_the_frames(refiner, clip):
    kw = dict(prompt="a face", strength=0.6, num_inference_steps=4, seed=1)
    base = refiner.refine(clip[:6], [clip[0]], identity_scale=0.6, **kw)
    other_ref = refiner.refine(clip[:6], [255 - clip[0]], identity_scale=0.6, **kw)
    no_ip = refiner.refine(clip[:6], [clip[0]], identity_scale=0.0, **kw)
    assert _diff(base, other_ref) > 0.1
    assert _diff(base, no_ip) > 0.1


def test_long_videos_use_windows_and_segments(refiner, clip):
    out = refiner.refine(clip, [clip[0], clip[10]], prompt="a face", strength=0.5, num_inference_steps=4, window=8,
                         stride=4, segment_frames=12, segment_overlap=4)
    assert out.shape == clip.shape
    steps = np.abs(np.diff(out.astype(float), axis=0)).mean(axis=(1, 2, 3))
    assert steps.max() < 3 * np.median(steps) + 1  # no jump at the segment joins


def test_sizes_are_restored(refiner):
    frames = np.random.default_rng(0).integers(0, 255, (3, 36, 44, 3), dtype=np.uint8)
    out = refiner.refine(frames, [frames[0]], strength=0.3, num_inference_steps=4)
    assert out.shape == frames.shape


def test_bad_refine_inputs(refiner, clip):
    with pytest.raises(InputError):
        refiner.refine(clip[:3], [], strength=0.3)
    with pytest.raises(InputError):
        refiner.refine(clip[:3], [clip[0]], strength=0.0)
    with pytest.raises(InputError):
        refiner.refine(clip[0], [clip[0]], strength=0.3)


def test_public_weight_ids_can_be_overridden(monkeypatch):
    monkeypatch.setenv("PORTRAITTALK_REFINE_BASE", "someone/sd15-finetune")
    weights = RefineWeights.from_env()
    assert weights.base_model == "someone/sd15-finetune"
    assert weights.ip_adapter_weight.endswith(".safetensors")
