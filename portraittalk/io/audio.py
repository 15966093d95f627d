"""Decode any speech recording into mono 16 kHz float32 with the bundled ffmpeg.

ffmpeg does the format work (WAV of any depth, MP3, AAC/M4A, Ogg Vorbis/Opus, FLAC,
even the audio track of a video); we read the original rate, channel count and codec
from the stream line ffmpeg prints, e.g.
``Stream #0:0: Audio: pcm_s24le ([1][0][0][0] / 0x0001), 48000 Hz, 6 channels, s32 (24 bit)``.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import wave
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..contracts import AudioClip
from ..errors import InputError
from .paths import scratch_folder, write_file

ANALYSIS_RATE = 16000
MIN_DURATION_S = 0.3
_DECODE_TIMEOUT_S = 600

# ffmpeg opens a user's file only as one of these containers (detected by content), and only
# from the local file itself: playlist formats (HLS, DASH, concat) that would make it read
# other files or URLs, and the many exotic demuxers, never parse uploaded bytes. Image
# demuxers stay so that a photo given as the recording is reported as having no audio track.
AUDIO_DEMUXERS = (
    "wav", "w64", "aiff", "caf", "au", "mp3", "aac", "ac3", "eac3", "flac", "ogg", "wv", "ape",
    "amr", "amrnb", "amrwb", "mov", "matroska", "asf", "avi", "flv", "mpeg", "mpegts",
)
_IMAGE_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "gif", "gif_pipe", "bmp_pipe", "tiff_pipe")
INPUT_GUARD = ["-protocol_whitelist", "file",
               "-format_whitelist", ",".join(AUDIO_DEMUXERS + _IMAGE_DEMUXERS)]

# ffmpeg channel-layout names that are not "N channels" or "X.Y".
_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "quad(side)": 4, "hexagonal": 6,
    "octagonal": 8, "hexadecagonal": 16, "cube": 8, "binaural": 2, "22.2": 24,
}


@dataclass
class AudioStreamInfo:
    """What ffmpeg reports about the first audio stream of a file."""

    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None  # container duration, when the format states one


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (never a system ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_file(path: str | Path) -> str:
    """A file path as ffmpeg must be given it: ffmpeg reads "pipe:0.wav" (any name with a
    colon) as a protocol, so every path goes through the file protocol, absolute."""
    return "file:" + os.path.abspath(path)


def load_audio(source: str | Path, max_duration_s: float | None = None) -> AudioClip:
    """Decode ``source`` to mono float32 at 16 kHz, cleaned (no NaN, no DC, within ±1).

    Raises :class:`InputError` for files that are not audio, have no audio track, are
    damaged, empty, shorter than 0.3 s or longer than ``max_duration_s``.
    """
    path = Path(source)
    name = path.name
    if not path.is_file():
        raise InputError(f"The audio file '{name}' was not found; please choose the recording again.")
    if path.stat().st_size == 0:
        raise InputError(f"'{name}' is empty (0 bytes); please upload the recording again.")

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *INPUT_GUARD, "-i", ffmpeg_file(path),
           "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if max_duration_s is not None:
        # Decode only a little past the limit: enough to know it is too long, while
        # memory stays bounded for an hour-long upload.
        cmd += ["-t", f"{max_duration_s + 1.0:.3f}"]
    # rematrix_maxval=1 keeps the downmix from exceeding full scale (ffmpeg's default
    # stereo → mono sums at +3 dB, which would clip loud recordings).
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", str(ANALYSIS_RATE),
            "-rematrix_maxval", "1.0", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(f"Decoding '{name}' took too long; please upload a shorter or simpler audio file.") from None
    log = proc.stderr.decode("utf-8", "replace")
    info = parse_audio_stream(log)

    if info is None:
        if "Input #0" in log and "Stream #" in log:
            raise InputError(f"'{name}' has no audio track; please upload a speech recording (WAV, MP3, M4A, OGG or FLAC).")
        raise InputError(f"'{name}' could not be read as audio (it is damaged or not a sound file); "
                         "please upload a WAV, MP3, M4A, OGG or FLAC recording.")
    if proc.returncode != 0:
        raise InputError(f"'{name}' is damaged and could not be decoded; "
                         "please export the recording again and re-upload it.")

    samples = np.frombuffer(proc.stdout, dtype="<f4")
    if samples.size == 0:
        raise InputError(f"'{name}' contains no sound (zero length); please upload a recording with speech in it.")
    duration = samples.size / ANALYSIS_RATE
    if max_duration_s is not None and duration > max_duration_s + 0.5 / ANALYSIS_RATE:
        stated = info.duration_s if info.duration_s and info.duration_s > max_duration_s else duration
        raise InputError(
            f"The recording is {clock(stated)} long but the limit is {clock(max_duration_s)}; "
            "please trim it or upload a shorter clip.")
    if duration < MIN_DURATION_S:
        raise InputError(
            f"The recording is only {duration:.2f} s long; please upload at least {MIN_DURATION_S:g} s of speech.")

    return AudioClip(samples=clean_samples(samples), sample_rate=ANALYSIS_RATE, source_path=str(path),
                     original_rate=info.sample_rate, original_channels=info.channels, codec=info.codec)


def clean_samples(samples: np.ndarray) -> np.ndarray:
    """Replace NaN/inf with silence, remove the DC offset, keep within [-1, 1]."""
    x = np.nan_to_num(np.asarray(samples, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    x -= x.mean()
    return np.clip(x, -1.0, 1.0).astype(np.float32)


@contextmanager
def muxable_audio(clip: AudioClip) -> Iterator[Path]:
    """The file whose sound goes into the video: the original recording, or a cleaned copy.

    A floating-point recording may hold NaN or infinite samples; ``load_audio`` cleans them
    for analysis, but the AAC encoder refuses them outright. For such a file this yields a
    16-bit WAV copy (original rate, at most two channels, bad samples silenced) that is
    deleted when the block ends. Integer and compressed formats cannot hold such samples
    and are yielded untouched.
    """
    source = Path(clip.source_path)
    if not clip.codec.startswith("pcm_f"):
        yield source
        return
    with scratch_folder(prefix="portraittalk-sound-") as folder:
        cleaned = folder / "sound.wav"
        had_bad_samples = _write_finite_copy(source, cleaned, clip)
        yield cleaned if had_bad_samples else source


def _write_finite_copy(source: Path, dest: Path, clip: AudioClip) -> bool:
    """Stream ``source`` into a 16-bit WAV with non-finite samples silenced, chunk by chunk
    (memory stays flat in the length); True when any sample was NaN or infinite."""
    channels = 1 if clip.original_channels == 1 else 2
    rate = clip.original_rate if 8000 <= clip.original_rate <= 192000 else 48000
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", *INPUT_GUARD,
           "-i", ffmpeg_file(source), "-map", "0:a:0", "-vn", "-sn", "-dn", "-t", f"{clip.duration_s + 1.0:.3f}",
           "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(rate), "pipe:1"]
    frame_bytes = 4 * channels
    had_bad = False
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc, \
            wave.open(str(dest), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        pending = b""
        assert proc.stdout is not None  # stdout=PIPE
        while True:
            chunk = proc.stdout.read(1 << 20)
            if not chunk:
                break
            pending += chunk
            usable = len(pending) - len(pending) % frame_bytes
            block, pending = pending[:usable], pending[usable:]
            x = np.frombuffer(block, dtype="<f4")
            finite = np.isfinite(x)
            if not finite.all():
                had_bad = True
                x = np.where(finite, x, 0.0)
            wav.writeframes(np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
    return had_bad


def probe_audio(source: str | Path) -> AudioStreamInfo | None:
    """Stream info of the first audio stream of a file, or None when it has none."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *INPUT_GUARD, "-i", ffmpeg_file(source)],
                          capture_output=True, timeout=60, check=False)
    return parse_audio_stream(proc.stderr.decode("utf-8", "replace"))


_STREAM_RE = re.compile(r"^\s*Stream #0:\d+.*?: Audio: (?P<rest>.*)$", re.MULTILINE)
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def parse_audio_stream(log: str) -> AudioStreamInfo | None:
    """Parse the first input audio stream line of an ffmpeg log (before any "Output #")."""
    head = log.split("Output #", 1)[0]
    match = _STREAM_RE.search(head)
    if match is None:
        return None
    parts = [p.strip() for p in split_ffmpeg_fields(match.group("rest"))]
    codec = parts[0].split(" ", 1)[0] if parts else ""
    rate, channels = 0, 0
    for part in parts[1:]:
        if part.endswith(" Hz"):
            rate = int(part[:-3])
        elif channels == 0 and rate:
            channels = _layout_channels(part)
    duration = None
    dm = _DURATION_RE.search(head)
    if dm:
        duration = int(dm.group(1)) * 3600 + int(dm.group(2)) * 60 + float(dm.group(3))
    return AudioStreamInfo(codec=codec, sample_rate=rate, channels=channels, duration_s=duration)


def split_ffmpeg_fields(text: str) -> list[str]:
    """Split on commas that are not inside parentheses ("yuv420p(tv, bt709)" stays whole)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _layout_channels(layout: str) -> int:
    layout = layout.strip()
    m = re.fullmatch(r"(\d+) channels(?: \(.*\))?", layout)
    if m:
        return int(m.group(1))
    if layout in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[layout]
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\(.*\))?", layout)  # "5.1", "7.1(wide)", "3.0(back)"
    if m:
        return int(m.group(1)) + int(m.group(2))
    return 0


def clock(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d} min"


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write float samples in [-1, 1] ((N,) or (N, channels)) as 16-bit PCM WAV."""
    path = Path(path)
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    pcm = np.clip(np.rint(np.clip(data, -1.0, 1.0) * 32767.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(int(data.shape[1]))
        wav.setsampwidth(2)
        wav.setframerate(int(rate))
        wav.writeframes(pcm.tobytes())
    return write_file(path, buffer.getvalue())  # complete, or not there at all
