"""The service behind the page, without the page: server settings from the environment,
requests → settings, the result and evaluation caches, the upload trimmer and the
comparison verdict. Real renders of a short real clip feed the result cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from portraittalk.errors import InputError
from portraittalk.io.audio import load_audio, write_wav
from portraittalk.io.video import probe_video
from portraittalk.server.compare import EvaluationCache, compare_verdict
from portraittalk.server.service import RenderService, example_rows, request_settings
from portraittalk.server.settings import ServerSettings
from portraittalk.server.uploads import trim_folder

from .conftest import EXAMPLES, example_file

SECONDS, FPS, SIZE = 1.0, 10, 128  # a short clip, small and slow: cheap renders


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    clip = load_audio(example_file("librivox_0880.wav"))
    folder = tmp_path_factory.mktemp("server_clip")
    return write_wav(folder / "one_second.wav", clip.samples[: int(SECONDS * clip.sample_rate)], clip.sample_rate)


def page(**values):
    """What the page sends for a small, quick render."""
    return request_settings({"fps": FPS, "max_size": SIZE, **values})


def test_server_settings_come_from_the_environment_and_bad_values_fall_back(tmp_path):
    assert ServerSettings.from_env({}) == ServerSettings()
    defaults = ServerSettings()
    assert (defaults.max_audio_seconds, defaults.concurrency, defaults.queue_size, defaults.result_cache_entries,
            defaults.max_upload, defaults.upload_cache_mb, defaults.server_name, defaults.server_port) == \
        (60, 1, 16, 24, "50mb", 2048, "127.0.0.1", 7860)
    env = {"PORTRAITTALK_MAX_AUDIO_SECONDS": "12.5", "PORTRAITTALK_CONCURRENCY": "2",
           "PORTRAITTALK_QUEUE_SIZE": "3", "PORTRAITTALK_RESULT_CACHE": str(tmp_path),
           "PORTRAITTALK_RESULT_CACHE_ENTRIES": "5", "PORTRAITTALK_MAX_UPLOAD": "10mb",
           "PORTRAITTALK_UPLOAD_CACHE_MB": "64", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861",
           "SPACE_ID": "someone/portraittalk"}
    read = ServerSettings.from_env(env)
    assert read == ServerSettings(max_audio_seconds=12.5, concurrency=2, queue_size=3, result_cache=tmp_path,
                                  result_cache_entries=5, max_upload="10mb", upload_cache_mb=64,
                                  server_name="0.0.0.0", server_port=7861, example_cache_mode="eager")
    # Not a number (or not a finite one): the default.
    bad = ServerSettings.from_env({"PORTRAITTALK_QUEUE_SIZE": "lots", "PORTRAITTALK_MAX_AUDIO_SECONDS": "nan",
                                   "GRADIO_SERVER_PORT": "http", "PORTRAITTALK_CONCURRENCY": ""})
    assert (bad.queue_size, bad.max_audio_seconds, bad.server_port, bad.concurrency) == (16, 60, 7860, 1)
    # Examples are rendered at start-up on a Space, on first click elsewhere; GRADIO_CACHE_MODE decides first.
    assert ServerSettings.from_env({"SPACE_ID": "x", "GRADIO_CACHE_MODE": "LAZY"}).example_cache_mode == "lazy"
    assert ServerSettings.from_env({"GRADIO_CACHE_MODE": "eager"}).example_cache_mode == "eager"
    assert ServerSettings.from_env({"GRADIO_CACHE_MODE": "sometimes"}).example_cache_mode == "lazy"


def test_request_values_become_settings_with_the_page_defaults():
    empty = request_settings({})
    # The page renders smaller than the CLI by default; everything else is RenderSettings' default.
    assert empty.max_size == 512
    assert (empty.fps, empty.seed, empty.engine, empty.transcript, empty.prompt) == (25, 0, "warp", None, "")
    assert (empty.diffusion_steps, empty.guidance_scale, empty.audio_strength) == (25, 3.5, 1.0)
    # What a browser sends: text for numbers, blank fields, padded words.
    typed = request_settings({"seed": "7", "fps": "", "max_size": 256.0, "transcript": "  hello there \n",
                              "prompt": "   ", "head_motion": "0.5", "engine": None})
    assert (typed.seed, typed.fps, typed.max_size, typed.transcript, typed.prompt, typed.head_motion,
            typed.engine) == (7, 25, 256, "hello there", "", 0.5, "warp")
    assert isinstance(typed.seed, int) and isinstance(typed.max_size, int)
    with pytest.raises(InputError, match="not a number"):
        request_settings({"blink_rate": "often"})
    with pytest.raises(InputError, match="'fps' must be between 5 and 60"):
        request_settings({"fps": 61})


def test_result_cache_answers_again_and_keeps_the_most_recent(pipeline, short_clip, tmp_path):
    service = RenderService(pipeline, ServerSettings(result_cache=tmp_path / "results", result_cache_entries=2))
    portrait = str(example_file("grace_hopper.jpg"))
    steps: list[str] = []
    first = service.render(portrait, str(short_clip), None, page(), lambda frac, msg: steps.append(msg))
    assert steps == ["Checking the recording", "Saving the scores"] and not first.from_cache
    frames = round(SECONDS * FPS)
    assert probe_video(first.video).n_frames == first.report["video"]["frames"] == frames
    # The downloads: scores as CSV (one row per frame) and JSON, the motion track and the subtitles.
    assert [Path(d).name for d in first.downloads] == ["scores.csv", "scores.json", "motion.json", "words.vtt",
                                                       "words.srt"]
    assert (first.folder / "words.vtt").read_text().startswith("WEBVTT")
    with open(first.folder / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    identity = first.report["identity"]["frames"]
    assert len(rows) == len(identity) == frames
    for row, frame in zip(rows, identity):
        assert float(row["distance"]) == pytest.approx(frame["distance"])
        assert (row["same_person"] == "True") == (frame["distance"] <= 0.6)
    assert json.loads((first.folder / "scores.json").read_text()) == first.report
    assert "path" not in first.report["video"] and str(tmp_path) not in json.dumps(first.report)

    again = service.render(portrait, str(short_clip), None, page(), lambda frac, msg: None)
    assert again.from_cache and again.folder == first.folder and again.report == first.report
    second = service.render(portrait, str(short_clip), None, page(seed=1), lambda frac, msg: None)
    service.render(portrait, str(short_clip), None, page(), lambda frac, msg: None)  # the first is used again
    third = service.render(portrait, str(short_clip), None, page(seed=2), lambda frac, msg: None)
    # Two entries kept: the least recently used one (seed 1) went; no half-finished work is left.
    kept = sorted(p.name for p in service.results.root.iterdir())
    assert kept == sorted([first.folder.name, third.folder.name]) and not second.folder.exists()


def test_a_recording_over_the_limit_is_refused_before_rendering(pipeline, tmp_path):
    service = RenderService(pipeline, ServerSettings(max_audio_seconds=2.0, result_cache=tmp_path))
    with pytest.raises(InputError, match="the limit is") as err:
        service.render(str(example_file("grace_hopper.jpg")), str(example_file("librivox_0880.wav")), None,
                       page(), lambda frac, msg: None)
    assert "shorter" in str(err.value)
    assert not [p for p in tmp_path.iterdir()]  # nothing was started
    with pytest.raises(InputError, match="Please add at most 4 extra photos"):
        service.check_inputs("portrait.jpg", "speech.wav", ["a.jpg"] * 5)


def test_evaluation_cache_keys_on_the_files_and_forgets_the_oldest(tmp_path):
    video, portrait = tmp_path / "a.mp4", tmp_path / "p.jpg"
    video.write_bytes(b"video bytes")
    portrait.write_bytes(b"portrait bytes")
    key = EvaluationCache.key(str(video), str(portrait), None, "hello")
    assert key == EvaluationCache.key(str(video), str(portrait), None, "hello")
    assert key != EvaluationCache.key(str(video), str(portrait), None, "hello again")
    renamed = tmp_path / "b.mp4"
    renamed.write_bytes(video.read_bytes())
    assert key != EvaluationCache.key(str(renamed), str(portrait), None, "hello")
    video.write_bytes(b"other video bytes")
    assert key != EvaluationCache.key(str(video), str(portrait), None, "hello")

    cache = EvaluationCache(max_entries=2)
    measured = {name: object() for name in "xyz"}
    cache.put("x", measured["x"])
    cache.put("y", measured["y"])
    assert cache.get("x") is measured["x"]  # x is now the most recently used
    cache.put("z", measured["z"])
    assert cache.get("y") is None and cache.get("x") is measured["x"] and cache.get("z") is measured["z"]


def test_upload_folder_is_trimmed_oldest_first_past_its_size(tmp_path):
    import os
    import time

    now = time.time()
    ages = {"oldest": 4000, "older": 3000, "old": 2000, "recent": 30}  # seconds
    for name, age in ages.items():
        path = tmp_path / name / "upload.bin"
        path.parent.mkdir()
        path.write_bytes(b"x" * 1_000_000)
        os.utime(path, (now - age, now - age))
    freed = trim_folder(tmp_path, max_bytes=2_000_000, keep_newer_than_s=600)
    assert freed == 2_000_000
    assert sorted(p.parent.name for p in tmp_path.rglob("*.bin")) == ["old", "recent"]
    # A file a request may still be reading is kept even past the size.
    trim_folder(tmp_path, max_bytes=0, keep_newer_than_s=600)
    assert [p.parent.name for p in tmp_path.rglob("*.bin")] == ["recent"]


def test_examples_pair_each_portrait_with_a_clip_and_its_transcript():
    rows, labels = example_rows(EXAMPLES)
    if not rows:
        pytest.skip("no examples in this checkout")
    assert len(rows) == len(labels)
    for portrait, clip, transcript in rows:
        assert Path(portrait).is_file() and Path(clip).is_file()
        txt = Path(clip).with_suffix(".txt")
        if txt.is_file():
            assert transcript == txt.read_text().strip()


def test_verdict_names_the_leader_of_each_measure():
    verdict = compare_verdict
    sharp = {"identity_mean_cosine": 0.99, "sync_confidence": 0.3}
    synced = {"identity_mean_cosine": 0.95, "sync_confidence": 0.7}
    assert verdict(sharp, synced) == "**A keeps the identity better; B is better in sync.**"
    assert "B is better on both counts" in verdict({"identity_mean_cosine": 0.9, "sync_confidence": 0.1}, synced)
    # A still mouth has no measurable sync: the other video leads; near-equal identity is a draw.
    assert verdict({"identity_mean_cosine": 0.951, "sync_confidence": None}, synced) == \
        "**Both keep the identity about equally well; B is better in sync.**"
    assert "could not be measured" in verdict({"identity_mean_cosine": 0.9}, {"identity_mean_cosine": 0.9})


def test_the_service_needs_no_ui_toolkit():
    import subprocess
    import sys

    from .conftest import REPO

    code = ("import sys, portraittalk.server.service, portraittalk.server.texts; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'gradio_client')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
