"""The app-facing adapter: availability reasons, rendering, refine mode, face descriptors."""


import numpy as np
import pytest
import torch

from portraittalk.engines.diffusion import engine
from portraittalk.engines.diffusion.engine import DiffusionEngine, diffusion_status, refine_status
from portraittalk.engines.diffusion.loading import WEIGHTS_ENV
from portraittalk.engines.diffusion.tiny import build_tiny_pipeline, synthetic_talking_clip
from portraittalk.errors import EngineUnavailableError

from .conftest import input_file, present_samples

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    build_tiny_pipeline(seed=2, clip_length=4, motion_frames=1).save_pretrained(folder)
    return folder


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_status_explains_why_diffusion_is_unavailable(no_gpu, monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    ok, reason = diffusion_status()
    assert not ok
    assert reason == "no GPU on this machine; no weights configured: set PORTRAITTALK_WEIGHTS to a local folder or a Hub id"
    ok, reason = refine_status()
    assert not ok and reason == "no GPU on this machine"
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert diffusion_status() == (False, f"no GPU on this machine; the weights folder {tmp_path} has no model_index.json")


def test_status_with_gpu_and_weights(fake_gpu, monkeypatch, weights):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert diffusion_status() == (False, "no weights configured: set PORTRAITTALK_WEIGHTS to a local folder or a Hub id")
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    ok, reason = diffusion_status()
    assert ok and str(weights) in reason
    assert diffusion_status("someone/portraittalk-weights")[0]  # a Hub id is accepted without a download
    assert refine_status()[0]


def test_engine_needs_a_gpu_or_a_forced_device(no_gpu, weights):
    with pytest.raises(EngineUnavailableError, match="GPU"):
        DiffusionEngine.from_config(str(weights))


def test_engine_without_weights_says_what_to_set(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(EngineUnavailableError, match=WEIGHTS_ENV):
        DiffusionEngine.from_config(device="cpu")


def test_render_yields_face_crop_frames(weights):
    eng = DiffusionEngine.from_config(str(weights), device="cpu")
    frames, _, audio = synthetic_talking_clip(n_frames=10, size=48, fps=25.0, seed=3)
    kw = dict(fps=25.0, n_frames=6, prompt="a calm person", steps=2, guidance=(3.0, 2.0, 2.0), seed=4)
    out = list(eng.render([frames[0]], audio, **kw))
    assert len(out) == 6
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in out)
    again = list(eng.render([frames[0]], audio, **kw))
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    louder = list(eng.render([frames[0]], audio, **{**kw, "guidance": 5.0}))
    assert any(not np.array_equal(a, b) for a, b in zip(out, louder))


def test_refine_only_engine(weights):
    from portraittalk.engines.diffusion import tiny

    refiner = tiny.tiny_refiner()
    eng = DiffusionEngine.for_refine(device="cpu", refiner=refiner)
    frames, _, _ = synthetic_talking_clip(n_frames=5, size=32, fps=25.0, seed=3)
    out = eng.refine(frames, [frames[0]], prompt="a face", strength=0.4, steps=4)
    assert out.shape == frames.shape and out.dtype == np.uint8
    with pytest.raises(EngineUnavailableError, match=WEIGHTS_ENV):
        next(iter(eng.render([frames[0]], np.zeros(16000, np.float32), 25.0, 5)))


def test_gpu_time_estimate_grows_with_work():
    base = engine.render_gpu_seconds(100, 25, (3.5, 2.0, 3.5))
    assert engine.render_gpu_seconds(200, 25, (3.5, 2.0, 3.5)) > base
    assert engine.render_gpu_seconds(100, 25, 3.0) < base  # equal scales: two passes instead of four
    assert engine.render_gpu_seconds(10**6, 50, 3.0) == 3600


def test_gpu_functions_are_plain_functions_off_spaces():
    # spaces.GPU only wraps on ZeroGPU; elsewhere the functions run in-process.
    assert engine._render_on_gpu.__name__ == "_render_on_gpu"
    assert engine._refine_on_gpu.__name__ == "_refine_on_gpu"


@pytest.fixture(scope="module")
def face_embedder():
    from portraittalk.engines.diffusion.identity import FaceEmbedder

    return FaceEmbedder()


@pytest.mark.parametrize("subject, others", [
    ("examples/grace_hopper.jpg", ("examples/astronaut_eileen_collins.jpg",)),
    ("examples/astronaut_eileen_collins.jpg", ("examples/grace_hopper.jpg",)),
    *present_samples(("images/obama_official_portrait.jpg",
                      ("images/astronaut_eileen_collins.png", "images/grace_hopper_glasses.jpg"))),
])
def test_face_descriptors_separate_people(face_embedder, generated, subject, others):
    from PIL import Image

    def load(ref):  # portraits at about face-crop size, as the engine gets them
        image = Image.open(input_file(ref, generated)).convert("RGB")
        image.thumbnail((400, 400))
        return np.asarray(image)

    rgb = load(subject)
    person = face_embedder(rgb)
    mirrored = face_embedder(np.ascontiguousarray(rgb[:, ::-1]))
    assert person.shape == (128,)
    assert np.linalg.norm(person - mirrored) < 0.6  # dlib's same-person threshold
    for other in others:
        assert np.linalg.norm(person - face_embedder(load(other))) > 0.6


def test_face_descriptor_of_an_unreadable_crop(face_embedder):
    # A crop the detector cannot read still gets a descriptor, from the crop's central face box.
    drawn, _, _ = synthetic_talking_clip(n_frames=1, size=96, fps=25.0)
    fallback = face_embedder(drawn[0])
    assert fallback.shape == (128,) and np.isfinite(fallback).all()
