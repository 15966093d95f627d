"""Audio decoding: every common format/rate/channel layout → mono 16 kHz matching the source."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from portraittalk.errors import InputError
from portraittalk.io.audio import ANALYSIS_RATE, ffmpeg_exe, load_audio, parse_audio_stream, write_wav

from .conftest import EXAMPLES, SAMPLES


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 16 kHz mono speech clip, the first 6 s of a real recording: the JFK developer sample or,
    without the samples, the LibriVox example."""
    folder = tmp_path_factory.mktemp("audio_src")
    path = folder / "source.wav"
    speech = SAMPLES / "audio" / "jfk_inaugural_en_16k.wav"
    if not speech.is_file():
        speech = EXAMPLES / "librivox_0870.wav"
    _ffmpeg("-i", str(speech), "-t", "6", "-c:a", "pcm_s16le", str(path))
    reference = load_audio(path).samples
    return path, reference


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 80) -> tuple[float, int]:
    """Peak normalised cross-correlation within ±max_lag samples (codecs may shift a little)."""
    n = min(len(a), len(b)) - 2 * max_lag
    a0 = a[max_lag:max_lag + n]
    best = (-1.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        b0 = b[max_lag + lag:max_lag + lag + n]
        c = float(np.dot(a0, b0) / (np.linalg.norm(a0) * np.linalg.norm(b0) + 1e-12))
        best = max(best, (c, lag))
    return best


# (file name, ffmpeg encoding args, expected original rate, channels, codec, min correlation)
FORMATS = [
    ("s16_44k_stereo.wav", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"], 44100, 2, "pcm_s16le", 0.999),
    ("s24_48k_6ch.wav", ["-ar", "48000", "-ac", "6", "-c:a", "pcm_s24le"], 48000, 6, "pcm_s24le", 0.999),
    ("f32_96k_mono.wav", ["-ar", "96000", "-c:a", "pcm_f32le"], 96000, 1, "pcm_f32le", 0.999),
    ("u8_8k_mono.wav", ["-ar", "8000", "-c:a", "pcm_u8"], 8000, 1, "pcm_u8", 0.99),
    ("s16_22k_3ch.wav", ["-ar", "22050", "-ac", "3", "-c:a", "pcm_s16le"], 22050, 3, "pcm_s16le", 0.999),
    ("speech.mp3", ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"], 44100, 2, "mp3", 0.99),
    ("speech.m4a", ["-ar", "48000", "-c:a", "aac", "-b:a", "128k"], 48000, 1, "aac", 0.99),
    ("speech.ogg", ["-ar", "32000", "-ac", "2", "-c:a", "libvorbis"], 32000, 2, "vorbis", 0.99),
    ("speech.opus", ["-c:a", "libopus", "-b:a", "64k"], 48000, 1, "opus", 0.99),
    ("speech.flac", ["-ar", "24000", "-c:a", "flac", "-sample_fmt", "s32"], 24000, 1, "flac", 0.999),
]


@pytest.mark.parametrize("name,args,rate,channels,codec,min_corr", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_decodes_to_the_same_mono_16k_speech(source, tmp_path, name, args, rate, channels, codec, min_corr):
    src_path, reference = source
    encoded = tmp_path / name
    _ffmpeg("-i", str(src_path), *args, str(encoded))

    clip = load_audio(encoded)

    assert clip.sample_rate == 16000
    assert clip.samples.ndim == 1 and clip.samples.dtype == np.float32
    assert abs(clip.duration_s - len(reference) / ANALYSIS_RATE) <= 0.010
    assert (clip.original_rate, clip.original_channels, clip.codec) == (rate, channels, codec)
    assert np.abs(clip.samples).max() <= 1.0
    corr, lag = _best_correlation(reference, clip.samples)
    assert corr >= min_corr, f"correlation {corr:.3f} at lag {lag}"
    assert abs(lag) <= 0.005 * ANALYSIS_RATE  # no audible shift against the source


def test_audio_track_of_a_video_is_used(source, tmp_path):
    src_path, reference = source
    video = tmp_path / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-i", str(src_path), "-shortest",
            "-c:v", "libx264", "-c:a", "aac", str(video))
    clip = load_audio(video)
    corr, _ = _best_correlation(reference, clip.samples)
    assert corr > 0.95


def _write_float_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """WAVE_FORMAT_IEEE_FLOAT (format 3) by hand: the stdlib writes PCM only."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def test_nan_inf_dc_offset_and_overshoot_are_cleaned(tmp_path):
    t = np.arange(16000) / 16000
    signal = 0.3 + 1.5 * np.sin(2 * np.pi * 220 * t)  # DC offset and peaks beyond ±1
    signal[100:110] = np.nan
    signal[200] = np.inf
    path = tmp_path / "dirty.wav"
    _write_float_wav(path, signal, 16000)

    clip = load_audio(path)

    assert np.isfinite(clip.samples).all()
    assert np.abs(clip.samples).max() <= 1.0
    assert abs(float(clip.samples.mean())) < 0.01
    assert clip.codec == "pcm_f32le"


def test_write_wav_round_trip(tmp_path):
    t = np.arange(8000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, -tone * 0.5], axis=1)
    path = write_wav(tmp_path / "tone.wav", stereo, 16000)
    clip = load_audio(path)
    assert (clip.original_rate, clip.original_channels, clip.codec) == (16000, 2, "pcm_s16le")
    assert len(clip.samples) == 8000
    # ffmpeg's downmix averages the two channels
    np.testing.assert_allclose(clip.samples, (tone - tone * 0.5) / 2 - ((tone - tone * 0.5) / 2).mean(), atol=2e-3)


# -- errors ---------------------------------------------------------------------------------

def _message(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.endswith(".")
    return message


def test_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not a recording")
    with pytest.raises(InputError) as excinfo:
        load_audio(path)
    assert "could not be read as audio" in _message(excinfo)


def test_damaged_m4a_is_rejected(source, tmp_path):
    full = tmp_path / "full.m4a"
    _ffmpeg("-i", str(source[0]), "-c:a", "aac", str(full))
    damaged = tmp_path / "damaged.m4a"
    damaged.write_bytes(full.read_bytes()[:2000])  # the index (moov atom) is missing
    with pytest.raises(InputError) as excinfo:
        load_audio(damaged)
    assert "damaged" in _message(excinfo)


def test_image_and_silent_video_have_no_audio_track(tmp_path):
    video = tmp_path / "silent.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-t", "1", "-c:v", "libx264", str(video))
    image = tmp_path / "still.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(image))
    for path in (video, image):
        with pytest.raises(InputError) as excinfo:
            load_audio(path)
        assert "no audio track" in _message(excinfo)


def test_empty_zero_length_and_too_short(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        load_audio(empty)
    assert "empty" in _message(excinfo)

    no_samples = write_wav(tmp_path / "zero.wav", np.zeros(0), 16000)
    with pytest.raises(InputError) as excinfo:
        load_audio(no_samples)
    assert "no sound" in _message(excinfo)

    short = write_wav(tmp_path / "short.wav", 0.1 * np.ones(int(0.2 * 44100)), 44100)
    with pytest.raises(InputError) as excinfo:
        load_audio(short)
    assert "0.20 s" in _message(excinfo)


def test_longer_than_limit_names_the_limit(source):
    with pytest.raises(InputError) as excinfo:
        load_audio(source[0], max_duration_s=2.5)
    message = _message(excinfo)
    assert "2.5 s" in message and "6.0 s" in message
    assert load_audio(source[0], max_duration_s=6.0).duration_s == pytest.approx(6.0, abs=0.01)


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_audio(tmp_path / "nope.mp3")
    assert "not found" in _message(excinfo)


def test_stream_line_parsing():
    log = (
        "Input #0, wav, from 'x.wav':\n  Duration: 00:01:02.50, bitrate: 6912 kb/s\n"
        "  Stream #0:0: Audio: pcm_s24le ([1][0][0][0] / 0x0001), 48000 Hz, 6 channels, s32 (24 bit), 6912 kb/s\n"
    )
    info = parse_audio_stream(log)
    assert (info.codec, info.sample_rate, info.channels, info.duration_s) == ("pcm_s24le", 48000, 6, 62.5)
    info = parse_audio_stream(
        "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, 5.1(side), fltp, 128 kb/s (default)\n")
    assert (info.codec, info.sample_rate, info.channels) == ("aac", 44100, 6)
    assert parse_audio_stream("  Stream #0:0: Video: h264 (High), yuv420p, 64x64\n") is None
