"""Engine selection and prompts through the main pipeline, on the decoded video."""

from __future__ import annotations

import numpy as np
import pytest

from portraittalk.errors import EngineUnavailableError
from portraittalk.io.video import probe_video, read_frames
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES


def test_diffusion_engine_without_gpu_or_weights_says_why(pipeline, tmp_path, monkeypatch):
    monkeypatch.delenv("PORTRAITTALK_WEIGHTS", raising=False)
    with pytest.raises(EngineUnavailableError) as err:
        pipeline.render(EXAMPLES / "grace_hopper.jpg", EXAMPLES / "librivox_0880.wav", tmp_path / "d.mp4",
                        RenderSettings(engine="diffusion", score_identity=False))
    assert "GPU" in str(err.value) or "PORTRAITTALK_WEIGHTS" in str(err.value)
    assert not (tmp_path / "d.mp4").exists()


def test_diffusion_engine_renders_full_frames_with_tiny_weights(pipeline, tmp_path):
    from portraittalk.engines.diffusion.tiny import build_tiny_pipeline
    weights = tmp_path / "tiny"
    build_tiny_pipeline(seed=2, clip_length=4, motion_frames=1).save_pretrained(weights)
    out = tmp_path / "diff.mp4"
    res = pipeline.render(EXAMPLES / "astronaut_eileen_collins.jpg", EXAMPLES / "librivox_0880.wav", out,
                          RenderSettings(engine="diffusion", weights=str(weights), device="cpu",
                                         diffusion_steps=2, max_size=256, fps=10))
    info = probe_video(out)
    assert info.n_frames == res.motion.n_frames == 30
    assert (info.width, info.height) == (204, 256)  # 260×324 capped to 256, even sizes
    assert len(res.report["identity"]["frames"]) == 30
    first = next(read_frames(out))
    # Outside the pasted face crop, the picture is the portrait's.
    from portraittalk.io.image import load_portrait
    src = load_portrait(EXAMPLES / "astronaut_eileen_collins.jpg", max_size=256).rgb
    assert np.abs(first[-8:].astype(int) - src[-8:]).mean() < 6


def test_prompt_is_understood_reported_and_changes_the_face(pipeline, tmp_path):
    plain = pipeline.render(EXAMPLES / "grace_hopper.jpg", EXAMPLES / "librivox_0880.wav", tmp_path / "a.mp4",
                            RenderSettings(score_identity=False, max_size=400))
    styled = pipeline.render(EXAMPLES / "grace_hopper.jpg", EXAMPLES / "librivox_0880.wav", tmp_path / "b.mp4",
                             RenderSettings(score_identity=False, max_size=400, prompt="smiling, sepia, wearing a hat"))
    rep = styled.report["prompt"]
    assert "sepia" in rep["summary"] and "smil" in rep["summary"]
    assert any("hat" in w for w in styled.warnings)
    assert styled.motion.smile.max() > 0.2 and np.abs(plain.motion.smile).max() == 0
    # Sepia: the blue flag and background of the decoded frames turn brown.
    a = next(read_frames(tmp_path / "a.mp4")).astype(float)
    b = next(read_frames(tmp_path / "b.mp4")).astype(float)
    bluish = lambda im: (im[..., 2] > im[..., 0] + 10).mean()
    assert bluish(a) > 0.2 and bluish(b) < 0.02


def test_refine_mode_without_weights_refines_the_warp_frames(pipeline, tmp_path, monkeypatch):
    from portraittalk.engines.diffusion import frames, tiny
    from portraittalk.engines.diffusion.engine import DiffusionEngine

    refiner = tiny.tiny_refiner()
    real_for_refine = DiffusionEngine.for_refine
    monkeypatch.setattr(DiffusionEngine, "for_refine",
                        classmethod(lambda cls, device=None: real_for_refine.__func__(cls, device="cpu", refiner=refiner)))
    monkeypatch.setattr(frames, "REFINE_CROP", 32)
    monkeypatch.delenv("PORTRAITTALK_WEIGHTS", raising=False)
    out = tmp_path / "refined.mp4"
    res = pipeline.render(EXAMPLES / "astronaut_eileen_collins.jpg", EXAMPLES / "librivox_0880.wav", out,
                          RenderSettings(engine="diffusion", device="cpu", diffusion_steps=2, max_size=256, fps=8,
                                         prompt="a calm person", score_identity=False))
    info = probe_video(out)
    assert info.n_frames == res.motion.n_frames == 24
    assert (info.width, info.height) == (204, 256)
    # The face crop was replaced (random tiny weights change it); the frame corners were not.
    warp = tmp_path / "warp.mp4"
    pipeline.render(EXAMPLES / "astronaut_eileen_collins.jpg", EXAMPLES / "librivox_0880.wav", warp,
                    RenderSettings(max_size=256, fps=8, prompt="a calm person", score_identity=False))
    a, b = next(read_frames(out)).astype(int), next(read_frames(warp)).astype(int)
    assert np.abs(a[:6, :6] - b[:6, :6]).mean() < 4
    h, w = a.shape[:2]
    assert np.abs(a[h // 4:h // 2, w // 3:2 * w // 3] - b[h // 4:h // 2, w // 3:2 * w // 3]).mean() > 5
