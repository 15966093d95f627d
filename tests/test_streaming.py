"""The video while it renders: pieces that play before the render ends and hold the final video's
frames, speech analysed window by window without a jump at a window's edge, and the page's
handler streaming them. No timings are asserted: "before" means before in the order of events."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from portraittalk.analysis import face as fm
from portraittalk.contracts import MotionTrack
from portraittalk.io.audio import ffmpeg_exe, load_audio
from portraittalk.io.video import probe_video
from portraittalk.motion import windows as mw
from portraittalk.pipeline import RenderResult, VideoChunk
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def speech_20s(tmp_path_factory) -> Path:
    """20 s of real speech (the LibriVox examples one after another): two windows."""
    from portraittalk.cli.bench import speech_of

    if not sorted(EXAMPLES.glob("librivox_*.wav")):
        pytest.skip("examples/librivox_*.wav are not in this checkout")
    return speech_of(20.0, tmp_path_factory.mktemp("speech"))


def _decode(path: Path) -> np.ndarray:
    """Every coded frame of the first video track as RGB (no frames dropped or repeated for timing)."""
    info = probe_video(path)
    raw = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode",
                          "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def _joined(init: Path, pieces: list[Path], out: Path) -> Path:
    out.write_bytes(init.read_bytes() + b"".join(p.read_bytes() for p in pieces))
    return out


@pytest.fixture(scope="module")
def streamed(pipeline, speech_20s, tmp_path_factory):
    """One streamed render of 20 s at 256 px: (events in order, whether the final MP4 existed at
    each piece, out path)."""
    folder = tmp_path_factory.mktemp("streamed")
    out = folder / "video.mp4"
    events, final_existed = [], []
    for event in pipeline.render_stream(EXAMPLES / "grace_hopper.jpg", speech_20s, out,
                                        RenderSettings(max_size=256), stream_dir=folder / "pieces"):
        events.append(event)
        final_existed.append(out.exists())
    return events, final_existed, out


def test_a_playable_first_piece_comes_before_the_render_ends(streamed, tmp_path):
    events, final_existed, out = streamed
    chunks = [e for e in events if isinstance(e, VideoChunk)]
    assert isinstance(events[-1], RenderResult) and all(isinstance(e, VideoChunk) for e in events[:-1])
    first = events.index(chunks[0])
    # Handed over while frames were still being made: the finished MP4 did not exist yet, and
    # most pieces were still to come.
    assert not final_existed[first] and first < len(chunks) // 2
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start_s == 0 and chunks[0].duration_s == pytest.approx(1.0)
    # The first piece plays on its own after the header: a second of frames, with its sound.
    alone = probe_video(_joined(chunks[0].init, [chunks[0].path], tmp_path / "first.mp4"))
    assert alone.n_frames == 25 and alone.video_codec == "h264" and alone.audio_codec == "aac"
    assert alone.audio_duration_s == pytest.approx(1.0, abs=0.1)


def test_streamed_pieces_and_the_final_video_show_the_same_frames(streamed, tmp_path):
    events, _, out = streamed
    chunks = [e for e in events if isinstance(e, VideoChunk)]
    pieces = _decode(_joined(chunks[0].init, [c.path for c in chunks], tmp_path / "all.mp4"))
    final = _decode(out)
    assert len(final) == events[-1].report["video"]["frames"] == 500
    assert pieces.shape == final.shape and np.array_equal(pieces, final)
    # The pieces tile the video: each starts where the one before ended.
    assert sum(c.duration_s for c in chunks) == pytest.approx(20.0, abs=0.05)
    assert all(abs(b.start_s - (a.start_s + a.duration_s)) < 1e-6 for a, b in zip(chunks, chunks[1:]))


def test_the_render_report_is_the_same_as_without_streaming(streamed, pipeline, speech_20s, tmp_path):
    events, _, _ = streamed
    streamed_report = events[-1].report
    plain = pipeline.render(EXAMPLES / "grace_hopper.jpg", speech_20s, tmp_path / "plain.mp4",
                            RenderSettings(max_size=256)).report

    def layout(value):  # the keys of every level, and the length of every list
        if isinstance(value, dict):
            return {k: layout(v) for k, v in value.items() if k not in ("path", "timings_s")}
        return len(value) if isinstance(value, list) else type(value).__name__

    assert layout(plain) == layout(streamed_report)
    assert set(plain["timings_s"]) == set(streamed_report["timings_s"])
    for report in (plain, streamed_report):
        assert report["identity"]["summary"]["frames_within_threshold"] == 500


def test_windows_cover_the_recording_on_the_frame_grid():
    for duration in (3.0, mw.WHOLE_UP_TO_S, 8.04, 20.0, 61.3, 600.0):
        windows = mw.plan_windows(duration, 25.0)
        assert windows[0].start_s == 0 and windows[-1].end_s == duration
        assert all(a.end_s == b.start_s for a, b in zip(windows, windows[1:]))
        for w in windows:
            assert w.from_s <= w.start_s < w.end_s <= w.to_s <= duration
            for t in (w.start_s, w.from_s) + ((w.end_s,) if w.end_s < duration else ()):
                assert abs(t * 25 - round(t * 25)) < 1e-6  # on a frame boundary
            if w.end_s < duration:  # margins both sides, except at the recording's ends
                assert w.to_s - w.end_s == pytest.approx(mw.MARGIN_S, abs=0.04)
        if duration > mw.WHOLE_UP_TO_S:
            assert windows[0].end_s == mw.FIRST_WINDOW_S
            assert max(w.end_s - w.start_s for w in windows) < mw.WINDOW_S + mw.SHORTEST_LAST_S
    transcript = mw.plan_windows(61.3, 25.0, transcript=True)
    assert [w.use_transcript for w in transcript] == [False, True] and transcript[1].to_s == 61.3


@pytest.fixture(scope="module")
def tracks(speech_20s):
    """The 20 s recording's track planned window by window, and planned from its whole analysis."""
    from portraittalk.analysis.speech import analyze_speech
    from portraittalk.motion.plan import plan_motion

    clip = load_audio(speech_20s)
    settings = RenderSettings()
    n = round(clip.duration_s * settings.fps)
    windows = mw.plan_windows(clip.duration_s, settings.fps)
    stitcher = mw.MotionStitcher(windows, n, settings, None)
    for w in windows:
        stitcher.add(analyze_speech(w.clip(clip), settings.fps, None))
    whole = plan_motion(analyze_speech(clip, settings.fps, None), n, settings, None)
    edges = [round(w.start_s * settings.fps) for w in windows[1:]]
    return stitcher, whole, edges


def test_motion_does_not_jump_at_a_window_edge(tracks):
    stitcher, whole, edges = tracks
    assert edges and stitcher.ready_frames == stitcher.n_frames
    track = stitcher.track
    near = np.zeros(track.n_frames - 1, bool)
    for e in edges:
        near[e - 2:e + int(mw.CROSSFADE_S * track.fps) + 2] = True
    # Blinks, gaze and head drift come from the seed alone: the same in every window's plan (and
    # a saccade may fall on an edge, as anywhere).
    seeded = ("blink", "gaze_x", "gaze_y")
    for channel in seeded:
        assert np.array_equal(getattr(track, channel), getattr(whole, channel)), channel
    for channel in set(MotionTrack.CHANNELS) - set(seeded):
        steps = np.abs(np.diff(getattr(track, channel)))
        if not steps[~near].any():
            assert not steps[near].any(), channel  # still channels stay still across the edges
            continue
        # A step at an edge is no larger than the channel's own motion elsewhere, or than the step the
        # whole recording's plan makes there (a lip closure may open right at an edge).
        own = np.abs(np.diff(getattr(whole, channel)))[near].max()
        assert steps[near].max() <= max(steps[~near].max(), own) + 1e-6, channel
    # The mouth follows the speech as closely as the whole recording's analysis makes it.
    for channel in ("jaw_open", "lip_close"):
        a, b = getattr(track, channel), getattr(whole, channel)
        assert np.corrcoef(a, b)[0, 1] > 0.9 and np.abs(a - b).mean() < 0.05, channel


def test_stitched_analysis_describes_the_whole_recording(tracks):
    stitcher, _, _ = tracks
    speech = stitcher.speech
    n = stitcher.n_frames
    assert all(len(getattr(speech, k)) == n for k in ("energy", "voicing", "pitch", "speech"))
    assert speech.phones[0].start == 0 and speech.phones[-1].end == pytest.approx(n / stitcher.fps, abs=0.01)
    assert all(a.end == pytest.approx(b.start, abs=1e-3) for a, b in zip(speech.phones, speech.phones[1:]))
    assert 0.6 < speech.speech_ratio < 1.0 and speech.method == "forced-alignment"
    # The words (the subtitles) run on the recording's clock, in order, none said twice at an edge.
    words = speech.words
    assert len(words) >= 40 and all(a.end <= b.start + 1e-3 for a, b in zip(words, words[1:]))
    assert words[0].start < 1.0 and words[-1].end > n / stitcher.fps - 1.0
    assert speech.text.startswith("And Mr. John Dashwood")


def test_a_short_recording_is_analysed_whole_as_before():
    from portraittalk.analysis.speech import analyze_speech
    from portraittalk.motion.plan import plan_motion

    clip_path = EXAMPLES / "librivox_0920.wav"
    if not clip_path.is_file():
        pytest.skip("examples/librivox_0920.wav is not in this checkout")
    clip = load_audio(clip_path)
    settings = RenderSettings()
    n = round(clip.duration_s * settings.fps)
    windows = mw.plan_windows(clip.duration_s, settings.fps)
    assert windows == [mw.whole_recording(clip.duration_s)]
    analysis = analyze_speech(clip, settings.fps, None)
    stitcher = mw.MotionStitcher(windows, n, settings, None)
    stitcher.add(analysis)
    assert stitcher.ready_frames == n and stitcher.speech is analysis
    expected = plan_motion(analysis, n, settings, None)
    for channel in MotionTrack.CHANNELS:
        assert np.array_equal(getattr(stitcher.track, channel), getattr(expected, channel)), channel


def test_lips_stay_continuous_on_the_redetected_frames_at_window_edges(streamed, face_analyzer):
    events, _, out = streamed
    frames = _decode(out)
    edges = [round(w.start_s * 25) for w in mw.plan_windows(20.0, 25.0)[1:]]
    box = events[-1].report["input"]["face"]["box"]
    gaps = {}
    for e in edges:
        for i in range(e - 6, e + 14):
            lm = face_analyzer.mesh_in_box(np.ascontiguousarray(frames[i]), tuple(box))
            assert lm is not None, f"no face re-detected on frame {i}"
            gaps[i] = fm.mouth_gap_ratio(lm)
    # The expected opening from the track, on the same frames: the mouth on screen follows it
    # through each edge (measured from the video, with the detector's own noise).
    from portraittalk.motion.track import expected_mouth_opening
    expected = expected_mouth_opening(events[-1].motion)
    idx = sorted(gaps)
    measured = np.array([gaps[i] for i in idx])
    assert np.corrcoef(measured, expected[idx])[0, 1] > 0.6
    # No jump: the opening changes at an edge by no more than its largest change elsewhere nearby.
    for e in edges:
        around = [abs(gaps[i + 1] - gaps[i]) for i in range(e - 6, e + 13)]
        at_edge = max(abs(gaps[i + 1] - gaps[i]) for i in range(e - 1, e + 1))
        assert at_edge <= max(around) and at_edge < 0.15


def test_the_page_handler_streams_pieces_then_the_finished_video(pipeline, speech_20s, tmp_path):
    import app
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    service = RenderService(pipeline, ServerSettings(result_cache=tmp_path / "results", result_cache_entries=4))
    handlers = app.Handlers(service)
    controls = dict(transcript="", prompt="", max_size=128)
    outputs = list(handlers.generate(str(EXAMPLES / "grace_hopper.jpg"), str(speech_20s), None, **controls))
    states = [o[-1]["value"] for o in outputs[:-1]]
    assert len(states) >= 5  # a state per piece, while the video was being made
    pieces = [json.loads(s)["pieces"] for s in states]
    assert all(len(b) == len(a) + 1 for a, b in zip(pieces, pieces[1:]))
    first = json.loads(states[0])
    assert first["mime"].startswith('video/mp4; codecs="avc1.') and first["mime"].endswith('mp4a.40.2"')
    assert Path(first["init"]).is_file() and all(Path(p).is_file() for p in pieces[-1])
    final_video = outputs[-1][1]
    final_state = json.loads(outputs[-1][-1])
    assert final_state["final"] == final_video and Path(final_video).is_file()
    assert final_state["id"] == first["id"]
    # The same request again comes from the cache: the finished video at once, nothing streamed.
    again = list(handlers.generate(str(EXAMPLES / "grace_hopper.jpg"), str(speech_20s), None, **controls))
    assert len(again) == 1 and again[0][1] == final_video
