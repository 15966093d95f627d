"""Shared test fixtures: example files in the repo and the developer samples next to it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SAMPLES = REPO.parent / "shared" / "samples"


def sample(rel: str) -> Path:
    """A file from ../shared/samples, or skip the test when the samples are not here."""
    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"developer sample {rel} not available")
    return path


@pytest.fixture(scope="session")
def face_analyzer():
    from portraittalk.face import FaceAnalyzer
    return FaceAnalyzer()


@pytest.fixture(scope="session")
def pipeline():
    from portraittalk.pipeline import PortraitTalkPipeline
    return PortraitTalkPipeline()


@pytest.fixture(scope="session")
def example_portrait() -> Path:
    return EXAMPLES / "grace_hopper.jpg"


@pytest.fixture(scope="session")
def example_speech() -> Path:
    clips = sorted(EXAMPLES.glob("librivox_*.wav"))
    assert clips, "examples/ must ship LibriVox speech clips"
    return clips[0]


def load_rgb(path: Path) -> np.ndarray:
    from portraittalk.image_io import load_portrait
    return load_portrait(path).rgb
