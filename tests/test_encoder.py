"""MP4 encoding: H.264 yuv420p + AAC, faststart, exact frame count, audio cut to the video."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from portraittalk.io.audio import ffmpeg_exe, load_audio, write_wav
from portraittalk.io.video import VideoEncoder, VideoEncodingError, probe_video, read_frames

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "samples" / "audio" / "jfk_inaugural_en_16k.wav"


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """Real speech (JFK sample) or, when the shared samples are absent, a synthetic tone burst."""
    if SPEECH.is_file():
        return SPEECH
    t = np.arange(int(11.0 * 16000)) / 16000
    path = tmp_path_factory.mktemp("speech") / "tone.wav"
    return write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0), 16000)


def _frames(n: int, width: int, height: int):
    """Moving colour bars: each frame differs, so a dropped or duplicated frame is visible."""
    x = np.arange(width)
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, :, 0] = ((x + 4 * i) % width * 255 // width)[None, :]
        frame[:, :, 1] = (i * 7) % 256
        frame[height // 4: height // 2, width // 4: width // 2] = (250, 30, 30)
        yield frame


def _encode(path: Path, n: int, size=(160, 120), fps=25.0, audio=None, announce=False) -> Path:
    with VideoEncoder(path, size, fps=fps, audio_path=audio, frames=n if announce else None) as encoder:
        for frame in _frames(n, *size):
            encoder.write(frame)
    return path


# announce=True: the frame count is given up front and the audio goes in during the same run.
@pytest.mark.parametrize("announce", [False, True])
def test_video_with_speech_matches_audio_duration(speech, tmp_path, announce):
    clip = load_audio(speech)
    fps = 25.0
    n = round(clip.duration_s * fps)
    out = _encode(tmp_path / "talk.mp4", n, fps=fps, audio=speech, announce=announce)

    info = probe_video(out)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert (info.width, info.height, info.fps, info.n_frames) == (160, 120, fps, n)
    assert abs(info.duration_s - clip.duration_s) <= 1 / fps
    assert abs(info.audio_duration_s - info.duration_s) <= 1 / fps
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # +faststart: index first, plays while downloading
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("announce", [False, True])
@pytest.mark.parametrize("fps", [24.0, 30.0])
def test_longer_audio_is_cut_to_the_video(speech, tmp_path, fps, announce):
    n = int(2 * fps)
    info = probe_video(_encode(tmp_path / "short.mp4", n, fps=fps, audio=speech, announce=announce))
    assert info.n_frames == n and info.fps == fps
    assert abs(info.audio_duration_s - 2.0) <= 1 / fps


def test_fewer_frames_than_announced_is_an_error_and_leaves_nothing(speech, tmp_path):
    with pytest.raises(ValueError, match="announced"):
        with VideoEncoder(tmp_path / "short.mp4", (160, 120), audio_path=speech, frames=20) as encoder:
            for frame in _frames(10, 160, 120):
                encoder.write(frame)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("announce", [False, True])
def test_multichannel_high_rate_audio_is_muxed(speech, tmp_path, announce):
    surround = tmp_path / "surround.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(speech), "-t", "3", "-ar", "96000", "-ac", "6",
                    "-c:a", "pcm_s24le", str(surround)], check=True)
    info = probe_video(_encode(tmp_path / "surround.mp4", 75, audio=surround, announce=announce))
    assert info.audio_codec == "aac"
    assert abs(info.audio_duration_s - 3.0) <= 1 / 25


def test_without_audio_and_frames_read_back(tmp_path):
    size = (96, 64)
    out = _encode(tmp_path / "silent.mp4", 10, size=size)
    info = probe_video(out)
    assert info.audio_codec is None and info.audio_duration_s is None
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")
    decoded = list(read_frames(out))
    assert len(decoded) == 10
    for original, back in zip(_frames(10, *size), decoded):
        assert back.shape == original.shape and back.dtype == np.uint8
        # crf 18 + 4:2:0 chroma: small error, colours decoded with the tagged BT.709 matrix
        assert np.abs(back.astype(int) - original.astype(int)).mean() < 3.0
    # the saturated red patch keeps its colour (a matrix mismatch would shift it visibly)
    patch = decoded[0][20:28, 30:44].reshape(-1, 3).mean(axis=0)
    assert np.abs(patch - (250, 30, 30)).max() < 8


def test_invalid_sizes_and_frames(tmp_path):
    with pytest.raises(ValueError):
        VideoEncoder(tmp_path / "odd.mp4", (161, 120))
    with VideoEncoder(tmp_path / "v.mp4", (64, 48)) as encoder:
        with pytest.raises(ValueError):
            encoder.write(np.zeros((64, 48, 3), np.uint8))  # transposed
        with pytest.raises(TypeError):
            encoder.write(np.zeros((48, 64, 3), np.float32))
        encoder.write(np.zeros((48, 64, 3), np.uint8))
    assert probe_video(tmp_path / "v.mp4").n_frames == 1


def test_error_inside_block_leaves_no_file(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="renderer failed"):
        with VideoEncoder(out, (64, 48)) as encoder:
            encoder.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("renderer failed")
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_dying_raises_and_deletes_partial_output(tmp_path):
    out = tmp_path / "died.mp4"
    with pytest.raises(VideoEncodingError) as excinfo:
        with VideoEncoder(out, (320, 240)) as encoder:
            encoder.write(np.zeros((240, 320, 3), np.uint8))
            encoder._proc.kill()  # simulate ffmpeg crashing mid-stream
            encoder._proc.wait()
            for frame in _frames(200, 320, 240):
                encoder.write(frame)
    assert "ffmpeg stopped" in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


def test_zero_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        with VideoEncoder(tmp_path / "empty.mp4", (64, 48)):
            pass
    assert list(tmp_path.iterdir()) == []
