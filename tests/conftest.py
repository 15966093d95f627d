"""Shared test fixtures: example files in the repo, inputs made from them (tests/data.py) and
the developer samples next to the checkout."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SAMPLES = REPO.parent / "shared" / "samples"


# Modules whose tests render, recognise or train at length; with the browser and load tests they
# are left out of the fast tier (pyproject.toml › markers).
SLOW_MODULES = {"test_long_audio", "test_batch", "test_end_to_end", "test_streaming", "test_side_by_side",
                "test_interrupts", "test_api_contract", "test_app", "test_app_compare", "test_tts", "test_recognition",
                "test_diffusion_training", "test_diffusion_refine", "test_outputs", "test_orientation",
                "test_pipeline_engines", "test_prompt_effects", "test_fuzz_loaders"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module == "test_browser":
            item.add_marker(pytest.mark.browser)
        elif module == "test_load":
            item.add_marker(pytest.mark.load)
        elif module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def sample(rel: str) -> Path:
    """A file from ../shared/samples, or skip the test when the samples are not here."""
    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"developer sample {rel} not available")
    return path


def present_samples(*cases):
    """The cases whose first item, a path under ../shared/samples, is there: real-sample variants of
    a test that also runs on inputs the repository ships or makes."""
    return [case for case in cases if (SAMPLES / (case[0] if isinstance(case, tuple) else case)).exists()]


def example_file(name: str) -> Path:
    """A bundled example (examples/), or skip when the checkout lacks it."""
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"examples/{name} is not in this checkout")
    return path


def free_port() -> int:
    """A free TCP port on loopback, for a test server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_audio(name: str) -> Path:
    """A recording from ../shared/samples/audio, or skip."""
    return sample(f"audio/{name}")


def librivox_base(n: str) -> Path:
    """examples/librivox_<n> (add .wav, .txt or .phone.json), or skip when any is missing."""
    base = EXAMPLES / f"librivox_{n}"
    for ext in (".wav", ".txt", ".phone.json"):
        if not Path(str(base) + ext).exists():
            pytest.skip(f"examples/librivox_{n}{ext} is not in the checkout")
    return base


class Generated:
    """Inputs of tests/data.py as files, each made on first use and kept for the session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        from . import data

        path = self.folder / name
        return path if path.exists() else data.write(name, self.folder)


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Generated:
    return Generated(tmp_path_factory.mktemp("generated"))


def input_file(ref: str, generated: Generated) -> Path:
    """``examples/…`` from the repository, ``audio/…`` or ``images/…`` from the developer samples
    (skip when absent), any other name made by tests/data.py."""
    if ref.startswith("examples/"):
        return example_file(ref.split("/", 1)[1])
    if ref.startswith(("audio/", "images/")):
        return sample(ref)
    return generated.path(ref)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny diffusion models gain nothing from threads, and oversubscribed cores slow them down a lot."""
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def face_analyzer():
    from portraittalk.analysis.face import FaceAnalyzer
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
    from portraittalk.io.image import load_portrait
    return load_portrait(path).rgb
