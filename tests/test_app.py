"""The Space (app.py) end to end through its API, as a `gradio_client` user sees it.

The app is launched on loopback inside the test process with its own empty result cache;
requests go over HTTP exactly as they would to a Space. One real render (a 3 s example
clip) is shared by the tests that look at its outputs.
"""

from __future__ import annotations

import csv
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from .conftest import REPO, SAMPLES, example_file, free_port  # noqa: E402

sys.path.insert(0, str(REPO))


def start(service):
    """The page for ``service``, served on loopback: (client, demo)."""
    import app

    demo = app.build_demo(service)
    _, url, _ = app.launch(demo, service.settings, server_name="127.0.0.1", server_port=free_port(),
                           prevent_thread_lock=True, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    return Client(url, verbose=False), demo


@pytest.fixture(scope="module")
def service(pipeline, tmp_path_factory):
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    # A private result cache: nothing from an earlier run can answer for this one.
    return RenderService(pipeline, ServerSettings(result_cache=tmp_path_factory.mktemp("results"),
                                                  result_cache_entries=8))


@pytest.fixture(scope="module")
def client(service):
    client, demo = start(service)
    yield client
    demo.close()


@pytest.fixture(scope="module")
def example_render(client):
    """One real render of a bundled example through /render: (video path, report)."""
    portrait = example_file("grace_hopper.jpg")
    clip = example_file("librivox_0880.wav")
    transcript = example_file("librivox_0880.txt").read_text().strip()
    video, report = client.predict(handle_file(str(portrait)), handle_file(str(clip)), transcript,
                                   api_name="/render")
    return Path(video), report, (portrait, clip, transcript)


def audio_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_render_returns_a_playable_mp4_with_per_frame_identity_scores(example_render):
    import imageio_ffmpeg

    video, report, (_, clip, _) = example_render
    assert video.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    frames = imageio_ffmpeg.read_frames(str(video))
    meta = next(frames)
    n_decoded = sum(1 for _ in frames)
    # What every browser plays inline: H.264 in 4:2:0 with AAC sound.
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["audio_codec"] == "aac"
    assert meta["duration"] == pytest.approx(audio_seconds(clip), abs=0.1)
    assert n_decoded == report["video"]["frames"] == round(audio_seconds(clip) * report["video"]["fps"])

    identity = report["identity"]
    assert identity["threshold"] == 0.6
    assert [f["frame"] for f in identity["frames"]] == list(range(n_decoded))
    assert all(f["face_found"] for f in identity["frames"])
    # The talking face is still the portrait's person (dlib's same-person rule) nearly everywhere.
    within = sum(f["distance"] <= 0.6 for f in identity["frames"])
    assert within >= 0.9 * n_decoded
    assert identity["summary"]["frames_within_threshold"] == within
    # No server path leaks into what a client downloads.
    assert "path" not in report["video"] and report["video"]["file"] == "portraittalk.mp4"
    assert str(REPO) not in json.dumps(report)


def test_same_request_again_is_answered_from_the_cache(client, example_render, service):
    _, report, (portrait, clip, transcript) = example_render
    _, again = client.predict(handle_file(str(portrait)), handle_file(str(clip)), transcript,
                              api_name="/render")
    # Identical timings mean the stored run came back rather than a new render.
    assert again["timings_s"] == report["timings_s"]
    assert again["identity"] == report["identity"]
    entries = [p for p in service.results.root.iterdir() if not p.name.startswith("work-")]
    assert len(entries) == 1


def test_page_endpoint_gives_plot_summary_and_downloads(client, example_render):
    _, report, (portrait, clip, transcript) = example_render
    # The page's own endpoint is undocumented, so the client needs every control's value.
    controls = dict(prompt="", references=None, audio_strength=1, identity_strength=1, prompt_strength=1,
                    head_motion=1, expression_intensity=1, blink_rate=1, seed=0, fps=25, max_size=512,
                    engine="warp", diffusion_steps=25, guidance_scale=3.5, text="", voice="heart", face=0,
                    language="")
    preview, video, plot, summary, downloads, notes, _stream = client.predict(
        handle_file(str(portrait)), handle_file(str(clip)), transcript, *controls.values(),
        api_name="/generate")
    n = report["video"]["frames"]
    assert Path(video).is_file()
    rows = plot["value"]["data"] if isinstance(plot, dict) and "value" in plot else plot["data"]
    assert len(rows) == n + 2  # one point per frame + the two ends of the threshold line
    assert f"of {n} frames" in summary
    names = sorted(Path(d).name for d in downloads)
    assert names == ["motion.json", "scores.csv", "scores.json", "words.srt", "words.vtt"]
    by_name = {Path(d).name: Path(d) for d in downloads}
    with open(by_name["scores.csv"]) as f:
        table = list(csv.DictReader(f))
    assert len(table) == n
    for row, frame in zip(table, report["identity"]["frames"]):
        assert float(row["distance"]) == pytest.approx(frame["distance"])
        assert float(row["similarity"]) == pytest.approx(1 - frame["distance"], abs=1e-4)
        assert (row["same_person"] == "True") == (frame["distance"] <= 0.6)
    motion = json.loads(by_name["motion.json"].read_text())
    assert motion["n_frames"] == n and len(motion["channels"]["jaw_open"]) == n
    # The mouth moves while the clip speaks.
    assert max(motion["channels"]["jaw_open"]) > 0.2
    assert "Lip sync" in notes


def test_no_face_in_the_portrait_is_a_friendly_error(client, tmp_path):
    coffee = SAMPLES / "images" / "coffee_no_face.png"
    if not coffee.is_file():
        from PIL import Image

        # A smooth gradient: a picture with nothing face-like in it.
        ramp = np.linspace(0, 255, 400, dtype=np.uint8)
        coffee = tmp_path / "gradient.png"
        Image.fromarray(np.dstack([np.tile(ramp, (300, 1))] * 3)).save(coffee)
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(coffee)), handle_file(str(example_file("librivox_0880.wav"))),
                       api_name="/render")
    message = str(err.value)
    assert "No face was found" in message and "front-facing photo" in message
    assert "Traceback" not in message and "\n" not in message


def test_unreadable_files_and_missing_inputs_are_explained(client, tmp_path):
    portrait = handle_file(str(example_file("grace_hopper.jpg")))
    clip = handle_file(str(example_file("librivox_0880.wav")))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture and not a recording")

    cases = [
        ((portrait, None), "upload or record some speech"),
        ((handle_file(str(notes)), clip), "not a picture PortraitTalk can read"),
        ((portrait, handle_file(str(notes))), "WAV, MP3, M4A, OGG or FLAC"),
    ]
    for args, expected in cases:
        with pytest.raises(AppError) as err:
            client.predict(*args, api_name="/render")
        assert expected in str(err.value)


def test_silent_recording_still_makes_a_video_and_says_why(client, tmp_path):
    silent = tmp_path / "silence.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(16000, np.int16).tobytes())  # one second of digital silence
    video, report = client.predict(handle_file(str(example_file("grace_hopper.jpg"))),
                                   handle_file(str(silent)), api_name="/render")
    assert Path(video).is_file() and report["video"]["frames"] == 25
    assert any("no speech" in w for w in report["warnings"])


def test_audio_over_the_space_limit_names_the_limit(service, tmp_path):
    from dataclasses import replace

    from portraittalk.server.service import RenderService

    strict = RenderService(service.pipeline, replace(service.settings, max_audio_seconds=2.0,
                                                     result_cache=tmp_path / "results"))
    client, demo = start(strict)
    try:
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(example_file("grace_hopper.jpg"))),
                           handle_file(str(example_file("librivox_0880.wav"))), api_name="/render")
    finally:
        demo.close()
    assert "the limit is" in str(err.value) and "shorter" in str(err.value)


def test_out_of_range_setting_is_refused_with_its_bound(client):
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(example_file("grace_hopper.jpg"))),
                       handle_file(str(example_file("librivox_0880.wav"))), fps=2, api_name="/render")
    # Gradio checks the slider's bounds before the app runs; the message names the bound.
    assert "minimum value 10" in str(err.value) and "Traceback" not in str(err.value)


def test_cache_key_separates_file_names_and_settings(tmp_path):
    from portraittalk.server.results import ResultCache
    from portraittalk.server.service import request_settings

    portrait = example_file("grace_hopper.jpg")
    clip = example_file("librivox_0880.wav")
    renamed = tmp_path / "someone_else.jpg"
    renamed.write_bytes(portrait.read_bytes())
    page = dict(transcript="", prompt="", audio_strength=1, identity_strength=1, prompt_strength=1, head_motion=1,
                expression_intensity=1, blink_rate=1, seed=0, fps=25, max_size=512, engine="warp")
    settings = request_settings(page)
    key = ResultCache.key(str(portrait), str(clip), [], settings)
    assert key == ResultCache.key(str(portrait), str(clip), [], settings)
    # Same pixels under another name: another entry, so one visitor's file name never reaches another.
    assert key != ResultCache.key(str(renamed), str(clip), [], settings)
    other = request_settings({**page, "head_motion": 0})
    assert key != ResultCache.key(str(portrait), str(clip), [], other)
    assert key != ResultCache.key(str(portrait), str(clip), [str(renamed)], settings)


def test_diffusion_engine_is_offered_only_when_available(service):
    import app
    from portraittalk.server.service import diffusion_availability

    available, reason = diffusion_availability()
    assert isinstance(available, bool) and reason
    demo = app.build_demo(service)
    engine = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Engine")
    offered = [value for _, value in engine.choices]
    assert offered == (["warp", "diffusion"] if available else ["warp"])
    if not available:
        notes = [b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "pt-engine-note"]
        assert notes and reason in notes[0]
