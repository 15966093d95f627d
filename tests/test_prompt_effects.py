"""Prompts and guidance sliders change the video measurably (landmarks re-detected on frames)."""

from __future__ import annotations

import numpy as np
import pytest

from portraittalk.analysis.face import mouth_gap_ratio
from portraittalk.io.video import read_frames
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES

PORTRAIT = EXAMPLES / "grace_hopper.jpg"
CLIP = EXAMPLES / "librivox_0880.wav"


def _meshes(pipeline, face_analyzer, tmp_path, name, **settings):
    out = tmp_path / f"{name}.mp4"
    res = pipeline.render(PORTRAIT, CLIP, out, RenderSettings(score_identity=False, max_size=400, **settings))
    box = tuple(res.report["input"]["face"]["box"])
    frames = list(read_frames(out))[::3]
    return [face_analyzer.mesh_in_box(f, box) for f in frames], res


def _corner_lift(lm):
    """How far the mouth corners sit above the lip midline, in mouth widths (+ = smiling)."""
    mid = (lm[13, 1] + lm[14, 1]) / 2
    width = np.linalg.norm(lm[291, :2] - lm[61, :2])
    return float((mid - (lm[61, 1] + lm[291, 1]) / 2) / width)


def _brow_height(lm):
    """Brow-to-upper-lid distance, in face heights (both eyes)."""
    face_h = np.linalg.norm(lm[152, :2] - lm[10, :2])
    return float(((lm[159, 1] - lm[105, 1]) + (lm[386, 1] - lm[334, 1])) / 2 / face_h)


def _eye_opening(lm):
    """Upper-to-lower lid distance, in face heights (both eyes)."""
    face_h = np.linalg.norm(lm[152, :2] - lm[10, :2])
    return float(((lm[145, 1] - lm[159, 1]) + (lm[374, 1] - lm[386, 1])) / 2 / face_h)


@pytest.fixture(scope="module")
def neutral(pipeline, face_analyzer, tmp_path_factory):
    return _meshes(pipeline, face_analyzer, tmp_path_factory.mktemp("p"), "neutral", head_motion=0)


def test_smile_prompt_lifts_the_mouth_corners(pipeline, face_analyzer, tmp_path, neutral):
    smiling, res = _meshes(pipeline, face_analyzer, tmp_path, "smile", head_motion=0, prompt="a big happy smile")
    assert "smile" in res.report["prompt"]["summary"]
    before = np.median([_corner_lift(m) for m in neutral[0]])
    after = np.median([_corner_lift(m) for m in smiling])
    assert after > before + 0.02


def test_surprised_prompt_raises_the_brows(pipeline, face_analyzer, tmp_path, neutral):
    surprised, _ = _meshes(pipeline, face_analyzer, tmp_path, "surprised", head_motion=0, prompt="very surprised")
    before = np.median([_brow_height(m) for m in neutral[0]])
    after = np.median([_brow_height(m) for m in surprised])
    assert after > before + 0.005


def test_wide_eyes_prompt_opens_the_eyes_and_blinks_still_close_them(pipeline, face_analyzer, tmp_path, neutral):
    wide, res = _meshes(pipeline, face_analyzer, tmp_path, "wide", head_motion=0, prompt="eyes very wide open")
    assert "wide" in res.report["prompt"]["summary"]
    assert res.motion.eye_wide.max() > 0.5 and res.motion.blink.max() > 0.9  # lifted lids, and blinks remain

    def open_eyes(meshes, track):  # frames between blinks (every 3rd frame was measured)
        return [_eye_opening(m) for m, b in zip(meshes, track.blink[::3]) if b < 0.05]

    before = np.median(open_eyes(neutral[0], neutral[1].motion))
    after = np.median(open_eyes(wide, res.motion))
    assert after > before * 1.05, (before, after)


def test_more_audio_strength_opens_the_mouth_more(pipeline, face_analyzer, tmp_path):
    ranges = []
    for k in (0.0, 1.0, 2.0):
        meshes, _ = _meshes(pipeline, face_analyzer, tmp_path, f"a{k}", head_motion=0, audio_strength=k)
        gaps = np.array([mouth_gap_ratio(m) for m in meshes])
        ranges.append(np.percentile(gaps, 95) - np.percentile(gaps, 5))
    assert ranges[0] < 0.02  # audio strength 0: the mouth stays still
    assert ranges[1] > ranges[0] + 0.05
    assert ranges[2] > ranges[1] + 0.02


def test_same_seed_and_settings_give_the_same_video(pipeline, tmp_path):
    a = pipeline.render(PORTRAIT, CLIP, tmp_path / "1.mp4", RenderSettings(score_identity=False, max_size=256, seed=5,
                                                                          prompt="calm, warm"))
    b = pipeline.render(PORTRAIT, CLIP, tmp_path / "2.mp4", RenderSettings(score_identity=False, max_size=256, seed=5,
                                                                          prompt="calm, warm"))
    fa, fb = list(read_frames(a.video_path)), list(read_frames(b.video_path))
    assert len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb))
