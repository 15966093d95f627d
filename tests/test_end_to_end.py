"""Portrait + speech → MP4 + scores, checked on the decoded video as a viewer sees it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from portraittalk.analysis.face import mouth_gap_ratio
from portraittalk.io.video import probe_video, read_frames
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES, REPO, input_file, present_samples

OPEN_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY"}
BILABIALS = {"P", "B", "M"}


def reference_phones(stem: str) -> list[tuple[str, float, float]]:
    """Phones of the pocketsphinx reference alignment shipped next to the example clip."""
    data = json.loads((EXAMPLES / f"{stem}.phone.json").read_text())
    out = []
    for word in data["w"]:
        for ph in word.get("w", []):
            out.append((ph["t"].split("(")[0].upper().rstrip("012"), float(ph["b"]), float(ph["b"]) + float(ph["d"])))
    return out


@pytest.fixture(scope="module")
def rendered(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "hopper.mp4"
    audio = EXAMPLES / "librivox_0870.wav"
    settings = RenderSettings(transcript=(EXAMPLES / "librivox_0870.txt").read_text(), seed=3)
    result = pipeline.render(EXAMPLES / "grace_hopper.jpg", audio, out, settings)
    return result, audio


def test_video_streams_and_duration(rendered):
    result, audio = rendered
    from portraittalk.io.audio import load_audio
    dur = load_audio(audio).duration_s
    info = probe_video(result.video_path)
    assert info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.audio_codec == "aac"
    assert (info.width, info.height) == (512, 600)  # the full portrait frame
    assert abs(info.duration_s - dur) <= 1 / 25 + 1e-6
    assert abs(info.audio_duration_s - dur) <= 1 / 25 + 0.03


def test_identity_scores_every_frame(rendered):
    result, _ = rendered
    rep = result.report
    frames = rep["identity"]["frames"]
    assert len(frames) == rep["video"]["frames"]
    summ = rep["identity"]["summary"]
    assert summ["mean_cosine"] >= 0.95
    assert summ["max_distance"] < 0.6
    assert rep["input"]["speech"]["method"] == "forced-alignment"
    assert set(rep["timings_s"]) >= {"face_analysis", "speech_analysis", "motion", "render_encode", "total"}


def test_lips_follow_the_phones_on_the_decoded_video(rendered, face_analyzer):
    result, _ = rendered
    fps = result.report["video"]["fps"]
    box = tuple(result.report["input"]["face"]["box"])
    gaps = np.array([mouth_gap_ratio(face_analyzer.mesh_in_box(f, box)) for f in read_frames(result.video_path)])
    phones = reference_phones("librivox_0870")

    def frames_of(labels):
        idx = []
        for ph, b, e in phones:
            if ph in labels and e - b >= 0.05:
                mid = int(round((b + e) / 2 * fps))
                idx.append(min(mid, len(gaps) - 1))
        return idx

    closed = frames_of(BILABIALS)
    opened = frames_of(OPEN_VOWELS)
    assert closed and opened
    # Closed at bilabials: the minimum around the phone (±1 frame) is a near-closed mouth.
    closed_gaps = [gaps[max(0, i - 1):i + 2].min() for i in closed]
    open_gaps = [gaps[max(0, i - 1):i + 2].max() for i in opened]
    assert np.median(closed_gaps) < 0.06
    assert np.median(open_gaps) > 0.15
    # At rest in the leading pause.
    lead = [e for ph, b, e in phones if ph == "SIL" and b == 0.0]
    if lead and lead[0] >= 0.3:
        assert gaps[: int(lead[0] * fps) - 2].max() < 0.06


def test_mouth_motion_is_in_sync_with_the_speech(rendered, face_analyzer):
    result, _ = rendered
    fps = result.report["video"]["fps"]
    box = tuple(result.report["input"]["face"]["box"])
    gaps = np.array([mouth_gap_ratio(face_analyzer.mesh_in_box(f, box)) for f in read_frames(result.video_path)])
    ref = np.zeros(len(gaps))
    for ph, b, e in reference_phones("librivox_0870"):
        val = 1.0 if ph in OPEN_VOWELS else 0.0 if ph in BILABIALS | {"SIL"} else 0.5
        ref[int(b * fps):int(np.ceil(e * fps))] = val
    g = (gaps - gaps.mean()) / (gaps.std() + 1e-9)
    r = (ref - ref.mean()) / (ref.std() + 1e-9)
    lags = range(-5, 6)
    corr = [np.mean(g[max(0, k):len(g) + min(0, k)] * r[max(0, -k):len(r) + min(0, -k)]) for k in lags]
    best = list(lags)[int(np.argmax(corr))]
    assert max(corr) > 0.3
    assert -3 <= best <= 1  # video never lags the audio by more than a frame (it may anticipate)


def test_silence_gives_an_idle_video_with_a_warning(pipeline, tmp_path):
    from portraittalk.io.audio import write_wav
    silent = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 2, np.float32), 16000)
    res = pipeline.render(EXAMPLES / "astronaut_eileen_collins.jpg", silent, tmp_path / "idle.mp4",
                          RenderSettings(score_identity=False))
    assert any("no speech" in w for w in res.warnings)
    assert np.abs(res.motion.jaw_open).max() < 0.05
    assert probe_video(res.video_path).n_frames == 50


def test_cli_render_and_bad_input(tmp_path):
    out = tmp_path / "cli.mp4"
    scores = tmp_path / "scores.json"
    cmd = [sys.executable, "-m", "portraittalk", "render", "--image", str(EXAMPLES / "astronaut_eileen_collins.jpg"),
           "--audio", str(EXAMPLES / "librivox_0880.wav"), "--out", str(out), "--scores", str(scores),
           "--max-size", "256"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    info = probe_video(out)
    assert max(info.width, info.height) <= 256
    rep = json.loads(scores.read_text())
    assert len(rep["identity"]["frames"]) == info.n_frames

    nonsense = tmp_path / "not_an_image.jpg"
    nonsense.write_bytes(b"hello, I am text")
    bad = subprocess.run(cmd[:5] + [str(nonsense)] + cmd[6:], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "not an image" in lines[0]


@pytest.mark.parametrize("ref", ["no_face.jpg", *present_samples("images/coffee_no_face.png")])
def test_no_face_through_the_cli(generated, tmp_path, ref):
    coffee = input_file(ref, generated)
    done = subprocess.run([sys.executable, "-m", "portraittalk", "render", "--image", str(coffee),
                           "--audio", str(EXAMPLES / "librivox_0880.wav"), "--out", str(tmp_path / "x.mp4")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: No face was found in the portrait; please use a clear, front-facing photo of one person."]
    assert not (tmp_path / "x.mp4").exists()
