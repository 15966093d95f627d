"""Evaluation metrics on constructed videos with known answers, and on a generated video.

Known-answer cases: a video of the still portrait (identity ≈ 1, no motion, background
kept), the same with injected brightness flicker (flicker rises), a face swapped for
another person's (identity beyond the threshold), a mouth that follows the speech
envelope k frames late (offset = k exactly), blinks and head turns put in by the renderer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from portraittalk.contracts import PhoneSegment
from portraittalk.errors import InputError
from portraittalk.evaluation import COMPARE_HEADERS, VideoEvaluation, VideoEvaluator, compare
from portraittalk.evaluation.background import masked_ssim
from portraittalk.evaluation.dynamics import adfd, count_blinks, landmark_jitter
from portraittalk.evaluation.report import COMPARE_ROWS
from portraittalk.evaluation.sync import av_offset, phone_checks, speech_envelope

FPS = 25.0
SHIFT_FRAMES = 3
BLINK_STARTS = (15, 45)


def example(name: str) -> Path:
    """A file from the repository's examples/, or skip when it is not there."""
    path = Path(__file__).resolve().parents[1] / "examples" / name
    if not path.exists():
        pytest.skip(f"example {name} not available")
    return path


def write_video(path: Path, frames, fps: float = FPS, audio: Path | None = None) -> Path:
    from portraittalk.io.video import VideoEncoder

    frames = list(frames)
    h, w = frames[0].shape[:2]
    with VideoEncoder(path, (w, h), fps, audio_path=audio) as enc:
        for f in frames:
            enc.write(f)
    return path


# -- shared inputs -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipe():
    from portraittalk.pipeline import PortraitTalkPipeline
    return PortraitTalkPipeline()


@pytest.fixture(scope="module")
def evaluator(pipe):
    return VideoEvaluator(pipe.face_analyzer, pipe.identity_scorer)


@pytest.fixture(scope="module")
def hopper(pipe):
    from portraittalk.io.image import load_portrait
    path = example("grace_hopper.jpg")
    rgb = load_portrait(path).rgb
    return path, rgb, pipe.face_analyzer.analyze(rgb)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A real LibriVox sentence after half a second of silence (a pause to check)."""
    from portraittalk.io.audio import load_audio, write_wav
    source = load_audio(example("librivox_0880.wav"))
    transcript = example("librivox_0880.txt").read_text().strip()
    samples = np.concatenate([np.zeros(source.sample_rate // 2, np.float32), source.samples])
    wav = write_wav(tmp_path_factory.mktemp("speech") / "pause_then_speech.wav", samples, source.sample_rate)
    return wav, transcript, load_audio(wav)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def still_eval(evaluator, hopper, speech, work):
    path, rgb, _ = hopper
    wav, transcript, clip = speech
    n = round(clip.duration_s * FPS)
    video = write_video(work / "still.mp4", [rgb] * n, audio=wav)
    return evaluator.evaluate(video, path, wav, transcript)


@pytest.fixture(scope="module")
def shifted_eval(evaluator, hopper, speech, work):
    """Mouth opening = speech envelope delayed by SHIFT_FRAMES; two blinks; a slow head turn."""
    from portraittalk.contracts import FrameControls
    from portraittalk.engines.warp.renderer import WarpRenderer

    path, rgb, face = hopper
    wav, transcript, clip = speech
    n = round(clip.duration_s * FPS)
    env = speech_envelope(clip.samples, clip.sample_rate, FPS, n)
    renderer = WarpRenderer(rgb, face)
    frames = []
    for i in range(n):
        controls = FrameControls(jaw_open=0.7 * float(env[i - SHIFT_FRAMES]) if i >= SHIFT_FRAMES else 0.0,
                                 head_yaw=3.0 * np.sin(2 * np.pi * i / n),
                                 blink=1.0 if any(s <= i < s + 3 for s in BLINK_STARTS) else 0.0)
        frames.append(renderer.render(controls).rgb)
    video = write_video(work / "shifted.mp4", frames, audio=wav)
    return evaluator.evaluate(video, path, wav, transcript)


# -- pure metrics with known answers -------------------------------------------------------

def test_offset_of_a_delayed_mouth_is_found_exactly(speech):
    _, _, clip = speech
    n = round(clip.duration_s * FPS)
    env = speech_envelope(clip.samples, clip.sample_rate, FPS, n)
    rng = np.random.default_rng(0)
    for k in (-4, -1, 0, 2, 5):
        delayed = np.roll(env, k)
        delayed[:max(k, 0)] = 0
        if k < 0:
            delayed[k:] = 0
        # A mouth is not the envelope: a saturating, noisy function of it.
        mouth = 0.4 * np.tanh(2.0 * delayed) + rng.normal(0, 0.01, n)
        result = av_offset(mouth, env, FPS)
        assert result is not None and result.lag_frames == k
        assert result.lag_ms == pytest.approx(1000 * k / FPS)
        assert result.confidence > 0.3
        assert result.in_sync == (-3 <= k <= 1)  # ITU-R BT.1359 window at 25 fps


def test_offset_needs_a_moving_mouth(speech):
    _, _, clip = speech
    n = round(clip.duration_s * FPS)
    env = speech_envelope(clip.samples, clip.sample_rate, FPS, n)
    assert av_offset(np.full(n, 0.01) + np.random.default_rng(1).normal(0, 1e-4, n), env, FPS) is None
    assert av_offset(env, np.zeros(n), FPS) is None


def test_envelope_follows_the_speech_on_the_frame_grid(speech):
    _, _, clip = speech
    n = round(clip.duration_s * FPS)
    env = speech_envelope(clip.samples, clip.sample_rate, FPS, n)
    assert env.shape == (n,) and 0 <= env.min() and env.max() <= 1
    # The clip begins with silence and has loud syllables.
    assert env[:3].max() < 0.5 < env.max()


def test_phone_checks_count_closures_openings_and_rest():
    phones = [PhoneSegment("SIL", 0.0, 0.6), PhoneSegment("M", 0.6, 0.68), PhoneSegment("AA", 0.68, 0.88),
              PhoneSegment("P", 0.88, 0.92), PhoneSegment("AE", 0.92, 0.96), PhoneSegment("SIL", 0.96, 1.6)]
    n = 40
    good = np.zeros(n)
    good[17:22] = 0.3  # open during AA (frames 17–21), closed at M and P, still in the pauses
    result = phone_checks(phones, good, FPS, portrait_gap=0.0, phone_source="test")
    assert (result.bilabials, result.bilabials_closed) == (2, 2)
    assert (result.open_vowels, result.open_vowels_open) == (1, 1)  # AE is too short to be checked
    assert result.pause_frames == 9 + 10 and result.pause_rest_fraction == 1.0  # pause interiors only
    # A mouth that never closes fails the bilabials and the pauses.
    slack = np.full(n, 0.2)
    bad = phone_checks(phones, slack, FPS, portrait_gap=0.0)
    assert bad.bilabial_closed_fraction == 0.0 and bad.pause_rest_fraction == 0.0
    assert bad.open_vowel_fraction == 1.0
    # An open-lipped portrait at rest is "at rest", but not "open" at the vowel.
    smiling = phone_checks(phones, np.full(n, 0.16), FPS, portrait_gap=0.16)
    assert smiling.pause_rest_fraction == 1.0 and smiling.open_vowel_fraction == 0.0


def test_blinks_are_short_dips_of_the_eye_opening():
    rng = np.random.default_rng(2)
    eye = 0.3 + rng.normal(0, 0.005, 200)
    for start in (20, 80, 140):
        eye[start:start + 3] = 0.12
    eye[170:195] = 0.1  # one second shut: not a blink
    eye[100] = np.nan  # a frame without a face
    assert count_blinks(eye, FPS) == [(20, 22), (80, 82), (140, 142)]


def test_jitter_is_acceleration_relative_to_the_eye_distance():
    steady = np.tile(np.array([[1.5, -0.5]], np.float32), (30, 11, 1))  # constant velocity
    assert landmark_jitter(steady, 100.0) == pytest.approx(0.0)
    shaking = steady.copy()
    shaking[::2] += 1.0  # velocity alternates by (1, 1) px
    assert landmark_jitter(shaking, 100.0) == pytest.approx(100 * np.sqrt(2) / 100.0, rel=1e-5)


def test_ssim_of_an_image_with_itself_is_one(hopper):
    import cv2

    _, rgb, _ = hopper
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mask = np.ones(grey.shape, bool)
    assert masked_ssim(grey, grey, mask) == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(grey + np.random.default_rng(3).normal(0, 20, grey.shape), 0, 255).astype(np.uint8)
    assert masked_ssim(grey, noisy, mask) < 0.7


def test_adfd_multiplies_spatial_and_temporal_terms():
    found = np.ones(10, bool)
    same = adfd(np.full(10, 0.2), found, None, 0.0)
    assert same.spatial > 0.99 and same.score == 0.0  # a face that does not follow the audio
    other = adfd(np.full(10, 0.9), found, None, 0.0)
    assert other.spatial < 0.01


# -- videos with known answers -------------------------------------------------------------

def test_still_portrait_video_keeps_identity_and_has_no_motion(still_eval):
    s = still_eval.summary()
    assert s["face_found_pct"] == 100.0
    assert s["identity_mean_cosine"] > 0.99 and s["identity_over_threshold_pct"] == 0.0
    assert s["av_offset_frames"] is None  # the mouth never moves
    assert s["mouth_motion"] < 0.005
    assert s["jitter_pct"] < 0.05
    assert max(s["head_yaw_range_deg"], s["head_pitch_range_deg"], s["head_roll_range_deg"]) < 0.5
    assert s["blinks"] == 0
    assert s["background_ssim"] > 0.97 and s["flicker"] < 0.1
    # Grace Hopper's lips are closed: every bilabial is "closed", no open vowel is "open".
    assert still_eval.phones.phone_source == "forced-alignment"
    assert s["bilabial_closed_pct"] == 100.0 and s["open_vowel_open_pct"] == 0.0
    assert s["pause_rest_pct"] == 100.0
    assert s["adfd"] == 0.0 and still_eval.adfd.spatial > 0.99


def test_injected_flicker_raises_the_flicker_metric(evaluator, hopper, work, still_eval):
    path, rgb, _ = hopper
    rng = np.random.default_rng(4)
    frames = [np.clip(rgb.astype(np.int16) + int(rng.integers(-6, 7)), 0, 255).astype(np.uint8) for _ in range(20)]
    result = evaluator.evaluate(write_video(work / "flicker.mp4", frames), path)
    flicker = result.summary()["flicker"]
    assert flicker > 2.0 and flicker > 20 * max(still_eval.summary()["flicker"], 0.01)
    assert any("no sound" in n for n in result.notes)


def test_swapped_face_falls_below_the_identity_threshold(evaluator, hopper, work):
    from portraittalk.io.image import load_portrait

    path, rgb, _ = hopper
    other = load_portrait(example("astronaut_eileen_collins.jpg")).rgb
    h, w = rgb.shape[:2]
    swapped = np.full_like(rgb, 128)
    # Another person, in the bottom-right corner: away from where the tracked face was.
    swapped[h - other.shape[0]:, w - other.shape[1]:] = other[:h, :w]
    result = evaluator.evaluate(write_video(work / "swap.mp4", [rgb] * 10 + [swapped] * 10), path)
    dist = result.curves["identity_distance"]
    assert result.curves["face_found"].all()
    assert (dist[:10] < 0.6).all() and (dist[10:] > 0.6).all()
    assert result.summary()["identity_over_threshold_pct"] == 50.0
    assert any("re-detected 1 time" in n for n in result.notes)  # tracking lost the face once


def test_mouth_delayed_by_k_frames_gives_offset_k(shifted_eval):
    s = shifted_eval.summary()
    assert s["av_offset_frames"] == SHIFT_FRAMES  # exact (±0 frames)
    assert s["av_offset_ms"] == pytest.approx(1000 * SHIFT_FRAMES / FPS)
    assert s["sync_correlation"] > 0.7 and s["sync_confidence"] > 0.3
    assert s["av_in_sync"] is False  # 120 ms late is beyond the 45 ms detectability limit


def test_rendered_blinks_and_head_turn_are_measured(shifted_eval, still_eval):
    s = shifted_eval.summary()
    assert s["blinks"] == len(BLINK_STARTS)
    starts = [b[0] for b in shifted_eval.dynamics["blink_frames"]]
    assert all(abs(a - b) <= 1 for a, b in zip(starts, BLINK_STARTS))
    assert s["head_yaw_range_deg"] > 2.0 > 0.5 > still_eval.summary()["head_yaw_range_deg"]
    assert s["jitter_pct"] < 0.5  # smooth motion
    assert s["identity_over_threshold_pct"] == 0.0


def test_generated_video_is_in_sync_and_keeps_identity(evaluator, pipe, hopper, speech, work, still_eval):
    from portraittalk.settings import RenderSettings

    path, _, _ = hopper
    wav, transcript, _ = speech
    out = work / "generated.mp4"
    pipe.render(path, wav, out, RenderSettings(transcript=transcript, score_identity=False))
    result = evaluator.evaluate(out, path, wav, transcript)
    s = result.summary()
    assert s["identity_over_threshold_pct"] == 0.0 and s["identity_min_cosine"] > 0.9
    # The motion planner moves the lips ~60 ms before the sound, as speakers do: a lead of up
    # to 3 frames (125 ms) is within what viewers cannot notice.
    assert s["av_offset_frames"] is not None and -3 <= s["av_offset_frames"] <= 0 and s["av_in_sync"]
    assert s["bilabial_closed_pct"] >= 50 and s["open_vowel_open_pct"] >= 50
    assert s["adfd"] > still_eval.summary()["adfd"] + 20
    assert s["background_ssim"] > 0.95


# -- reports, comparison, command line -----------------------------------------------------

def test_report_round_trips_through_json_and_compares(still_eval, shifted_eval):
    data = json.loads(shifted_eval.to_json())
    assert data["summary"]["av_offset_frames"] == SHIFT_FRAMES
    assert len(data["curves"]["identity_cosine"]) == shifted_eval.n_frames
    rows, curves = compare(still_eval, data, names=("still", "shifted"))
    assert [r[0] for r in rows] == [row[1] for row in COMPARE_ROWS]
    assert all(len(r) == len(COMPARE_HEADERS) for r in rows)
    by_label = {r[0]: r for r in rows}
    assert by_label["Identity: mean similarity"][3] == "still"
    assert by_label["Lip sync: audio-visual offset"][1] == "—"
    assert set(curves["video"]) == {"still", "shifted"}
    assert set(curves.columns) >= {"video", "metric", "time_s", "value", "series"}
    identity_rows = curves[curves["metric"] == "identity (cosine)"]
    assert len(identity_rows) == still_eval.n_frames + shifted_eval.n_frames
    sync_rows = curves[(curves["metric"] == "lip sync (local r)")]
    assert set(sync_rows["video"]) == {"shifted"}  # the still mouth has no lip-sync curve
    assert curves["value"].notna().all()
    header = VideoEvaluation.markdown_header().splitlines()
    row = shifted_eval.to_markdown_row()
    assert row.count("|") == header[0].count("|") and "shifted.mp4" in row


def test_evaluate_command_writes_a_json_report(evaluator, hopper, speech, work, monkeypatch, capsys):
    import portraittalk.evaluation.evaluator as evaluator_module
    from portraittalk.cli.evaluate import add_evaluate_parser, run_evaluate

    # The command builds no evaluator of its own: it uses the module's shared default.
    monkeypatch.setattr(evaluator_module, "_DEFAULT", evaluator)
    path, rgb, _ = hopper
    wav, _, _ = speech
    video = write_video(work / "cli.mp4", [rgb] * 10)
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    out = work / "cli.json"
    args = parser.parse_args(["evaluate", "--video", str(video), "--image", str(path), "--audio", str(wav),
                              "--json", str(out)])
    assert run_evaluate(args) == 0
    assert "Identity: mean similarity" in capsys.readouterr().out
    assert json.loads(out.read_text())["summary"]["frames"] == 10

    not_video = work / "notes.txt"
    not_video.write_text("hello")
    with pytest.raises(InputError):
        run_evaluate(parser.parse_args(["evaluate", "--video", str(not_video), "--image", str(path)]))
    with pytest.raises(InputError, match="still image"):
        run_evaluate(parser.parse_args(["evaluate", "--video", str(path), "--image", str(path)]))
    with pytest.raises(InputError):
        run_evaluate(parser.parse_args(["evaluate", "--video", str(work / "missing.mp4"), "--image", str(path)]))
