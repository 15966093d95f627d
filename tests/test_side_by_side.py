"""The comparison as one video: two videos of different sizes, frame rates and lengths side by
side at one height, labelled, with one sound track and a caption row; through the CLI's
`compare` command and the app's /compare_video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from portraittalk.evaluation.side_by_side import BACKGROUND, Panel, caption, caption_height, side_by_side_video
from portraittalk.io.audio import load_audio, write_wav
from portraittalk.io.image import load_portrait
from portraittalk.io.video import VideoEncoder, probe_video, read_frames
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES, REPO


def moving_video(path: Path, portrait: str, size: int, fps: float, seconds: float, sound: Path | None) -> Path:
    """The portrait with a square that walks along the top edge: every frame differs from the last."""
    rgb = load_portrait(EXAMPLES / portrait, max_size=size).rgb
    h, w = rgb.shape[:2]
    n = round(seconds * fps)
    with VideoEncoder(path, (w, h), fps, audio_path=sound, frames=n) as video:
        for i in range(n):
            frame = rgb.copy()
            x = round((w - 16) * i / max(1, n - 1))
            frame[h - 20:h - 4, x:x + 16] = (255, 0, 255)
            video.write(frame)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A: Hopper 436×512 at 25 fps for 2 s with speech; B: Collins 256 px at 30 fps for 3 s, silent."""
    folder = tmp_path_factory.mktemp("side_inputs")
    speech = load_audio(EXAMPLES / "librivox_0880.wav")
    sound = write_wav(folder / "two_seconds.wav", speech.samples[:2 * speech.sample_rate], speech.sample_rate)
    a = moving_video(folder / "a.mp4", "grace_hopper.jpg", 512, 25, 2.0, sound)
    b = moving_video(folder / "b.mp4", "astronaut_eileen_collins.jpg", 256, 30, 3.0, None)
    return a, b, sound


@pytest.fixture(scope="module")
def side(inputs, tmp_path_factory):
    a, b, _ = inputs
    out = tmp_path_factory.mktemp("side") / "side.mp4"
    return side_by_side_video(Panel(a, "A · a.mp4", "identity 0.991 · lip sync 0.64 · offset +0 ms"),
                              Panel(b, "B · b.mp4", "identity 0.975 · lip sync n/a · offset n/a"), out)


def test_same_height_the_longer_length_the_higher_rate(inputs, side):
    a, b, _ = inputs
    ia, ib, info = probe_video(a), probe_video(b), probe_video(side)
    height = min(ia.height, ib.height)
    assert info.height == height + caption_height(height)
    expected_width = sum(round(i.width * height / i.height / 2) * 2 for i in (ia, ib))
    assert info.width == expected_width
    assert info.fps == 30 and abs(info.duration_s - 3.0) <= 1 / 30 + 1e-6
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")


def test_the_shorter_video_holds_its_last_frame_and_the_longer_plays_on(inputs, side):
    a, b, _ = inputs
    frames = [f.astype(np.int16) for f in read_frames(side)]
    height = min(probe_video(a).height, probe_video(b).height)
    left_width = round(probe_video(a).width * height / probe_video(a).height / 2) * 2
    step = [np.abs(f1 - f0) for f0, f1 in zip(frames, frames[1:])]
    moving_left = [float(d[:height, :left_width].mean()) for d in step]
    moving_right = [float(d[:height, left_width:].mean()) for d in step]
    # A (2 s at 25 fps, shown at 30: one frame in six repeats) moves until its end, then holds;
    # B (3 s at 30 fps) moves throughout.
    assert np.mean(np.array(moving_left[3:57]) > 0.05) > 0.75 and max(moving_left[62:]) < 0.05
    assert min(moving_right[5:]) > 0.05
    # What is held is A's last frame, scaled to the common height.
    last_a = list(read_frames(a))[-1]
    import cv2
    held = cv2.resize(last_a, (left_width, height), interpolation=cv2.INTER_AREA).astype(np.int16)
    assert np.abs(frames[-1][:height, :left_width] - held).mean() < 6


def test_both_are_labelled_and_captioned(inputs, side):
    a, b, _ = inputs
    frame = list(read_frames(side))[10].astype(np.int16)
    height = min(probe_video(a).height, probe_video(b).height)
    left_width = round(probe_video(a).width * height / probe_video(a).height / 2) * 2
    row = frame[height + 2:]
    for half in (row[:, :left_width], row[:, left_width:]):
        # The row's background with light caption text on it.
        assert np.median(np.abs(half - BACKGROUND).max(axis=2)) < 12
        assert (half.min(axis=2) > 150).sum() > 50
    for x in (0, left_width):  # a dark label tag with light letters in each panel's top-left corner
        tag = frame[4:height // 10, x + 4:x + 40]
        assert (tag.max(axis=2) < 80).mean() > 0.2 and (tag.min(axis=2) > 180).sum() > 10


def test_the_sound_track_is_the_shared_speech(inputs, side, tmp_path):
    a, b, sound = inputs
    track, speech = load_audio(side).samples, load_audio(sound).samples
    assert abs(len(track) - len(speech)) <= 0.05 * 16000  # A's sound: it ends with A, the picture goes on
    n = min(len(track), len(speech))
    assert np.corrcoef(track[:n], speech[:n])[0, 1] > 0.9
    # A sound given explicitly is used even when neither video has one.
    silent = tmp_path / "silent_a.mp4"
    moving_video(silent, "grace_hopper.jpg", 256, 25, 1.0, None)
    out = side_by_side_video(Panel(silent, "A", "x"), Panel(b, "B", "y"), tmp_path / "given.mp4", sound)
    assert probe_video(out).audio_codec == "aac"
    given = load_audio(out).samples
    assert np.corrcoef(given[:16000], speech[:16000])[0, 1] > 0.9


def test_caption_names_identity_lip_sync_and_offset():
    assert caption({"identity_mean_cosine": 0.98765, "sync_confidence": 0.712, "av_offset_ms": -40.0}) == \
        "identity 0.988 · lip sync 0.71 · offset -40 ms"
    assert caption({"identity_mean_cosine": 0.9}) == "identity 0.900 · lip sync n/a · offset n/a"


@pytest.fixture(scope="module")
def two_renders(pipeline, tmp_path_factory):
    """The same typed sentence rendered twice: 256 px at 25 fps, and 200 px at 15 fps with a still mouth."""
    folder = tmp_path_factory.mktemp("compare_cli")
    text = "Maybe Bob will bring the map back by May."
    out = []
    for name, settings in (("talks.mp4", RenderSettings(text=text, max_size=256, score_identity=False)),
                           ("still.mp4", RenderSettings(text=text, max_size=200, fps=15, audio_strength=0,
                                                        score_identity=False))):
        pipeline.render(EXAMPLES / "grace_hopper.jpg", None, folder / name, settings)
        out.append(folder / name)
    return out


def test_cli_compare_writes_the_video_and_the_table(two_renders, tmp_path):
    talks, still = two_renders
    out, report = tmp_path / "side.mp4", tmp_path / "compare.json"
    done = subprocess.run([sys.executable, "-m", "portraittalk", "compare", str(talks), str(still),
                           "--image", str(EXAMPLES / "grace_hopper.jpg"), "--out", str(out), "--json", str(report)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Identity: mean similarity" in done.stdout and "Lip sync: confidence" in done.stdout
    info, ia, ib = probe_video(out), probe_video(talks), probe_video(still)
    height = min(ia.height, ib.height)
    assert info.height == height + caption_height(height) and info.fps == 25
    assert abs(info.duration_s - max(ia.duration_s, ib.duration_s)) <= 1 / 25 + 1e-6
    assert info.audio_codec == "aac"
    data = json.loads(report.read_text())
    rows = {row[0]: row[1:] for row in data["table"]}
    assert rows["Mouth open at open vowels"][2] == "A"  # the talking mouth opens, the still one does not
    assert data["a"]["summary"]["video"] == "talks.mp4" and data["b"]["summary"]["video"] == "still.mp4"


@pytest.mark.parametrize("which, expected", [
    ("missing", "nowhere.mp4' does not exist; check the path."),
    ("text", "'notes.mp4' is not a video PortraitTalk can read"),
])
def test_cli_compare_bad_input_is_one_line(two_renders, tmp_path, which, expected):
    talks, _ = two_renders
    other = tmp_path / "nowhere.mp4"
    if which == "text":
        other = tmp_path / "notes.mp4"
        other.write_text("not a video")
    done = subprocess.run([sys.executable, "-m", "portraittalk", "compare", str(talks), str(other),
                           "--image", str(EXAMPLES / "grace_hopper.jpg"), "--out", str(tmp_path / "side.mp4")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], done.stderr
    assert not (tmp_path / "side.mp4").exists()


def test_compare_tab_offers_the_side_by_side_video(pipeline, two_renders, tmp_path):
    """/compare then /compare_video, as the page runs them: the MP4 comes from the same measurements."""
    pytest.importorskip("gradio_client")
    from gradio_client import handle_file

    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    from .test_app import start

    talks, still = two_renders
    service = RenderService(pipeline, ServerSettings(result_cache=tmp_path / "results"))
    client, demo = start(service)
    try:
        args = [handle_file(str(EXAMPLES / "grace_hopper.jpg")), handle_file(str(talks)), handle_file(str(still)),
                None, ""]
        client.predict(*args, api_name="/compare")
        video = client.predict(*args, api_name="/compare_video")
    finally:
        demo.close()
    path = Path(video["video"] if isinstance(video, dict) else video)
    info, ia, ib = probe_video(path), probe_video(talks), probe_video(still)
    height = min(ia.height, ib.height)
    assert info.height == height + caption_height(height) and info.audio_codec == "aac"
    assert abs(info.duration_s - max(ia.duration_s, ib.duration_s)) <= 1 / 25 + 1e-6
    assert path.read_bytes() == next((tmp_path / "results" / "side-by-side").glob("*.mp4")).read_bytes()
