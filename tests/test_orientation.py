"""A portrait stored sideways, upside down or mirrored talks with its own mouth.

The portrait is turned by 0, 90, 180 and 270 degrees and mirrored (left-right, and
top-bottom: a mirrored upside-down photo). Each render's frames are turned back upright by
the test and the face mesh is fitted on them again: the mouth that opens and closes must
be the real one, opening exactly as in the upright render, while the skin between the eyes
(where an upside-down face got its mouth painted) stays still. The video keeps the photo's
own orientation and the identity score stays on the same person.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from portraittalk.analysis import face as fm
from portraittalk.io.audio import load_audio, write_wav
from portraittalk.io.video import read_frames
from portraittalk.settings import RenderSettings

from .conftest import example_file

SIZE = 256
# (file's pixels from the upright photo, the video's frames back to upright, quarter turns noted)
ORIENTATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray], bool]] = {
    "upright": (lambda a: a, lambda a: a, False),
    "turned_90": (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, -1), True),
    "upside_down": (lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 2), True),
    "turned_270": (lambda a: np.rot90(a, 3), lambda a: np.rot90(a, -3), True),
    "mirrored": (lambda a: a[:, ::-1], lambda a: a[:, ::-1], False),
    "mirrored_upside_down": (lambda a: a[::-1], lambda a: a[::-1], True),
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    clip = load_audio(example_file("librivox_0880.wav"))
    return write_wav(tmp_path_factory.mktemp("orientation_speech") / "speech.wav",
                     clip.samples[: 2 * clip.sample_rate], clip.sample_rate)


def measured(face_analyzer, video: Path, upright: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Per frame, on the frame turned upright: the mouth opening and centre, and the frames themselves."""
    frames = [np.ascontiguousarray(upright(f)) for f in read_frames(video)]
    meshes = [face_analyzer.analyze(f).landmarks for f in frames]
    return {"gap": np.array([fm.mouth_gap_ratio(m) for m in meshes]),
            "mouth": np.array([m[[fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER], :2].mean(0) for m in meshes]),
            "brow": np.array([m[[fm.RIGHT_EYE_INNER, fm.LEFT_EYE_INNER], :2].mean(0) for m in meshes]),
            "frames": np.stack(frames).astype(np.float32)}


@pytest.fixture(scope="module")
def rendered(pipeline, face_analyzer, speech, tmp_path_factory):
    """Every orientation rendered once: name → (report, measurements on the upright frames)."""
    folder = tmp_path_factory.mktemp("orientation")
    photo = np.asarray(Image.open(example_file("grace_hopper.jpg")).convert("RGB"))
    results = {}
    for name, (stored, upright, _) in ORIENTATIONS.items():
        image = folder / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(stored(photo))).save(image)
        result = pipeline.render(image, speech, folder / f"{name}.mp4",
                                 RenderSettings(max_size=SIZE, head_motion=0.0, seed=3))
        results[name] = (result, measured(face_analyzer, result.video_path, upright))
    return results


@pytest.mark.parametrize("name", [n for n in ORIENTATIONS if n != "upright"])
def test_the_real_mouth_talks_whatever_the_orientation(rendered, name):
    _, base = rendered["upright"]
    _, got = rendered[name]
    # The mouth that opens is the real one, opening as it does in the upright render.
    assert base["gap"].max() > 0.25 and np.ptp(base["gap"]) > 0.2
    assert np.corrcoef(base["gap"], got["gap"])[0, 1] > 0.95, (base["gap"].round(2), got["gap"].round(2))
    assert np.abs(got["gap"] - base["gap"]).max() < 0.12
    # … where the upright render has it.
    assert np.abs(got["mouth"].mean(0) - base["mouth"].mean(0)).max() < 2
    # Between the eyes nothing moves (an upside-down face got its mouth drawn there).
    x, y = np.round(got["brow"].mean(0)).astype(int)
    between_eyes = got["frames"][:, y - 6:y + 6, x - 6:x + 6]
    lips = got["frames"][:, int(got["mouth"][:, 1].mean()) - 4:int(got["mouth"][:, 1].mean()) + 4,
                         int(got["mouth"][:, 0].mean()) - 8:int(got["mouth"][:, 0].mean()) + 8]
    still, moving = between_eyes.std(0).mean(), lips.std(0).mean()  # pixel change over time
    assert still < 2 and moving > 20, (still, moving)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_the_video_keeps_the_photos_orientation_and_identity(rendered, name):
    result, _ = rendered[name]
    base_w, base_h = rendered["upright"][0].report["video"]["size"]
    turned = name in ("turned_90", "turned_270")
    assert result.report["video"]["size"] == ([base_h, base_w] if turned else [base_w, base_h])
    summary = result.identity.summary()
    assert summary["frames_over_threshold"] == 0 and summary["mean_cosine"] > 0.97, summary
    notes = " ".join(result.report["input"]["image"]["notes"])
    assert ("animated upright" in notes) == ORIENTATIONS[name][2], notes
