"""Stream RGB frames into a browser-playable MP4 (H.264 yuv420p + AAC, faststart).

Frames go straight into an ffmpeg pipe as they are rendered, so memory stays flat in
the clip length. The audio is cut to the video's length so the two tracks end together:
when the caller says how many frames will come (``frames=``), it is encoded in the same
ffmpeg run; otherwise it is muxed in a second, cheap pass (the video stream is copied).

With ``segments=`` the same encoder also writes the video as it goes: fragmented-MP4 pieces
(an ``init.mp4`` then ``seg-NNNNN.m4s``) listed in an HLS playlist as each one completes,
for a player that starts before the render ends. One encode feeds both outputs, so the
pieces and the final MP4 hold the very same frames.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..errors import PortraitTalkError
from .audio import INPUT_GUARD, ffmpeg_exe, ffmpeg_file, probe_audio, split_ffmpeg_fields
from .paths import discard, publish, temporary_beside

# x264 options for rendered talking heads, chosen by measurement on the example portrait
# (docs/PERFORMANCE.md): diamond motion search and the fastest subpixel refinement cost 18 %
# less CPU at 1024 px (13.2 vs 16.1 ms a frame) at the same PSNR (40.4 dB), for 31 % more bytes.
RENDER_X264 = "me=dia:subme=1"

# Sample rates the AAC encoder (and browsers) accept; anything else is resampled.
_AAC_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}


class VideoEncodingError(PortraitTalkError):
    """ffmpeg could not write the video; ``log`` holds ffmpeg's own messages."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class SegmentPlan:
    """Where the encoder writes the streamed pieces, and how long they are: a short first
    one, so that playback can start early, then ``then_s`` each (a key frame starts each)."""

    folder: Path
    first_s: float = 1.0
    then_s: float = 2.0

    PLAYLIST = "stream.m3u8"
    INIT = "init.mp4"  # the fragmented MP4's header: codecs and sizes, no frames

    def keyframe_expr(self) -> str:
        return f"expr:gte(t,{self.first_s:g}+{self.then_s:g}*n_forced)"


@dataclass(frozen=True)
class Segment:
    """One finished piece of a streamed video (fragmented MP4 media, played after the plan's INIT)."""

    index: int
    path: Path
    start_s: float
    duration_s: float


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float
    n_frames: int
    duration_s: float  # n_frames / fps
    video_codec: str
    pix_fmt: str
    audio_codec: str | None
    audio_duration_s: float | None  # decoded length of the audio track (edit lists applied)


class VideoEncoder:
    """``with VideoEncoder(path, (w, h), fps, audio_path) as enc: enc.write(frame)``.

    ``write`` takes (h, w, 3) uint8 RGB frames. On a clean exit the MP4 appears at
    ``out_path`` (written under a temporary name first, so a failed run never leaves a
    half-written file); on any error the partial output is deleted.
    """

    def __init__(self, out_path: str | Path, size: tuple[int, int], fps: float = 25,
                 audio_path: str | Path | None = None, crf: int = 18, preset: str = "veryfast",
                 frames: int | None = None, subtitles_path: str | Path | None = None,
                 segments: SegmentPlan | None = None, audio_format: tuple[int, int] | None = None,
                 x264_params: str = ""):
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs a positive even frame size, got {width}×{height}")
        self.out_path = Path(out_path)
        self.size = (width, height)
        self.fps = float(fps)
        self.audio_path = Path(audio_path) if audio_path is not None else None
        self.crf = int(crf)
        self.preset = preset
        self.expected_frames = int(frames) if frames else None
        self.subtitles_path = Path(subtitles_path) if subtitles_path is not None else None  # SRT → mov_text track
        self.n_frames = 0
        self._proc: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None
        self._video_tmp: Path | None = None
        self._audio_muxed = False  # True when the audio goes in with the frames (one ffmpeg run)
        self._subtitles_later = False  # True when a streamed encode leaves the subtitles to a copying pass
        self._closed = False
        self.segments = segments
        self._segments_listed = 0
        self.audio_format = audio_format  # (sample rate, channels) when known: no probe of the file
        self.x264_params = x264_params
        if segments is not None and audio_path is not None and not frames:
            raise ValueError("streamed segments with sound need the frame count up front (frames=)")

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> "VideoEncoder":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:  # an interrupt while finishing, too: no ffmpeg and no temporary left
                self.abort()
                raise
        else:
            self.abort()

    def open(self) -> None:
        if self._proc is not None:
            return
        try:
            self._start()
        except BaseException:
            self.abort()
            raise

    def _start(self) -> None:
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        if self.audio_path is not None and not self.audio_path.is_file():
            raise FileNotFoundError(f"audio file not found: {self.audio_path}")
        width, height = self.size
        # One run when the length is known up front: no second pass over the file.
        audio_now = self.audio_path is not None and self.expected_frames is not None
        audio_out = self._audio_output() if audio_now else []
        # Absolute: a streamed encode runs in another folder.
        self._video_tmp = temporary_beside(self.out_path, ".encoding-").resolve()
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{self.fps:g}",
            "-i", "pipe:0",
        ]
        if audio_now:
            assert self.expected_frames is not None
            cmd += self._audio_input(self.expected_frames / self.fps)
        # Subtitles go in with the frames, unless the audio waits for the muxing pass, or the
        # pieces are streamed (HLS takes no mov_text): then they are added in a copying pass.
        with_frames = (audio_now or not self.audio_path) and self.segments is None
        sub_in, sub_out = self._subtitles(2 if audio_now else 1) if with_frames else ([], [])
        self._subtitles_later = self.subtitles_path is not None and self.segments is not None and not with_frames
        cmd += sub_in
        if audio_now or sub_out:
            cmd += ["-map", "0:v:0"] + (["-map", "1:a:0"] if audio_now else []) + sub_out
        cmd += [
            # Convert with the BT.709 matrix and tag it, so players decode the colours back.
            "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
                   "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
            "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
        ]
        # Streamed pieces start on the forced key frames only: no scene-cut key frames between them.
        x264 = ":".join(filter(None, [self.x264_params, "scenecut=0" if self.segments is not None else ""]))
        cmd += ["-x264-params", x264] if x264 else []
        cmd += audio_out
        if self.segments is not None:
            cmd += self._segmented_output(audio_now)
        else:
            if self.audio_path is None or audio_now:
                cmd += ["-movflags", "+faststart"]  # otherwise the muxing pass does it
            cmd += ["-f", "mp4", ffmpeg_file(str(self._video_tmp))]
        self._audio_muxed = audio_now
        self._log_file = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log_file,
                                      cwd=self.segments.folder if self.segments is not None else None)

    def write(self, frame: np.ndarray) -> None:
        """Send one (h, w, 3) uint8 RGB frame to the encoder."""
        if self._proc is None:
            self.open()
        if self._closed:
            raise RuntimeError("VideoEncoder is closed")
        width, height = self.size
        if frame.shape != (height, width, 3):
            raise ValueError(f"frame shape {frame.shape} does not match the video size ({height}, {width}, 3)")
        if frame.dtype != np.uint8:
            raise TypeError(f"frames must be uint8 RGB, got {frame.dtype}")
        try:
            self._stdin().write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):
            self._fail("Encoding the video failed")
        self.n_frames += 1

    def close(self, subtitles_path: str | Path | None = None) -> Path:
        """Finish the video, mux the audio, move it into place; returns ``out_path``.
        ``subtitles_path``: an SRT known only now, added as a mov_text track (in a copying pass)."""
        if self._closed:
            return self.out_path
        if subtitles_path is not None:
            self.subtitles_path, self._subtitles_later = Path(subtitles_path), True
        if self._proc is None:
            self.open()
        try:
            self._stdin().close()
        except (BrokenPipeError, OSError):
            pass
        assert self._proc is not None and self._video_tmp is not None
        if self._proc.wait() != 0:
            self._fail("Encoding the video failed")
        if self.n_frames == 0:
            self._cleanup()
            raise ValueError("no frames were written to the video")
        if self._audio_muxed and self.n_frames != self.expected_frames:
            self._cleanup()
            raise ValueError(f"{self.n_frames} frames were written, {self.expected_frames} were announced")
        try:
            if self.audio_path is not None and not self._audio_muxed:
                self._mux_audio()
            elif self._subtitles_later:
                sub_in, sub_out = self._subtitles(1)
                self._remux(["-i", ffmpeg_file(str(self._video_tmp)), *sub_in, "-map", "0", *sub_out,
                             "-c:v", "copy", "-c:a", "copy"], "Adding the subtitles")
            else:
                publish(self._video_tmp, self.out_path)
        finally:
            self._cleanup()
        self._closed = True
        return self.out_path

    def abort(self) -> None:
        """Stop ffmpeg and delete everything written so far."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()
        self._closed = True

    def new_segments(self) -> list[Segment]:
        """The streamed pieces finished since the last call (after ``close``: all the rest)."""
        if self.segments is None:
            return []
        try:
            lines = (self.segments.folder / SegmentPlan.PLAYLIST).read_text().splitlines()
        except FileNotFoundError:  # before the first piece is complete
            return []
        listed: list[Segment] = []
        start, duration = 0.0, 0.0
        for line in lines:
            if line.startswith("#EXTINF:"):
                duration = float(line[8:].split(",", 1)[0])
            elif line and not line.startswith("#"):
                listed.append(Segment(len(listed), self.segments.folder / line, start, duration))
                start += duration
        fresh = listed[self._segments_listed:]
        self._segments_listed = len(listed)
        return fresh

    # -- internals -------------------------------------------------------------------

    def _segmented_output(self, with_audio: bool) -> list[str]:
        """Output arguments writing the MP4 and the streamed pieces from one encode (ffmpeg's tee
        muxer; run in the plan's folder, so the pieces' names need no escaping)."""
        assert self.segments is not None and self._video_tmp is not None
        self.segments.folder.mkdir(parents=True, exist_ok=True)
        shortest = min(self.segments.first_s, self.segments.then_s)
        hls = ":".join([
            "f=hls", "hls_segment_type=fmp4", "hls_playlist_type=event", "hls_list_size=0",
            # Below the shortest piece, so every forced key frame (and only those) cuts one.
            f"hls_time={shortest / 2:g}", "hls_flags=temp_file+independent_segments",
            f"hls_fmp4_init_filename={SegmentPlan.INIT}", "hls_segment_filename=seg-%05d.m4s"])
        maps = [] if with_audio else ["-map", "0:v:0"]
        final = f"[f=mp4:movflags=+faststart]{_tee_escaped(str(self._video_tmp))}"
        return [*maps, "-force_key_frames", self.segments.keyframe_expr(),
                # The audio waits for the frames it goes with, so each piece holds its own sound.
                "-max_interleave_delta", "0", "-f", "tee", f"{final}|[{hls}]{SegmentPlan.PLAYLIST}"]

    def _audio_input(self, video_duration: float) -> list[str]:
        """ffmpeg arguments reading the audio file, no longer than the video lasts."""
        assert self.audio_path is not None
        return ["-t", f"{video_duration:.6f}", *INPUT_GUARD, "-i", ffmpeg_file(str(self.audio_path))]

    def _stdin(self) -> IO[bytes]:
        assert self._proc is not None and self._proc.stdin is not None
        return self._proc.stdin

    def _audio_output(self) -> list[str]:
        """ffmpeg arguments encoding that audio as AAC a browser plays."""
        if self.audio_format is not None:
            rate, channels = self.audio_format
        else:
            assert self.audio_path is not None
            info = probe_audio(self.audio_path)
            if info is None:
                raise VideoEncodingError(f"The audio file '{self.audio_path.name}' has no audio track to put in "
                                         "the video.")
            rate, channels = info.sample_rate, info.channels
        channels = min(max(channels, 1), 2)  # browsers play mono/stereo AAC everywhere
        rate = rate if rate in _AAC_RATES else 48000
        # 16-bit first: a float recording with NaN/inf samples would stop the AAC encoder.
        return ["-af", "aformat=sample_fmts=s16", "-c:a", "aac", "-b:a", "160k", "-ac", str(channels), "-ar", str(rate)]

    def _mux_audio(self) -> None:
        sub_in, sub_out = self._subtitles(2)
        self._remux(["-i", ffmpeg_file(str(self._video_tmp)), *self._audio_input(self.n_frames / self.fps), *sub_in,
                     "-map", "0:v:0", "-map", "1:a:0", *sub_out, "-c:v", "copy", *self._audio_output()],
                    "Adding the audio track")

    def _remux(self, arguments: list[str], what: str) -> None:
        """A second, copying pass over the encoded video (``arguments``: inputs, maps and codecs),
        published as the output."""
        muxed = temporary_beside(self.out_path, ".muxing-")
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", *arguments,
               "-movflags", "+faststart", "-f", "mp4", ffmpeg_file(muxed)]
        try:
            proc = subprocess.run(cmd, capture_output=True, check=False)
            if proc.returncode != 0:
                log = proc.stderr.decode("utf-8", "replace")
                raise VideoEncodingError(f"{what} failed: {_last_line(log)}", log)
            publish(muxed, self.out_path)
        finally:
            discard(muxed)

    def _subtitles(self, index: int) -> tuple[list[str], list[str]]:
        """(input, output) arguments adding the subtitle file as input ``index``, as a mov_text track."""
        if self.subtitles_path is None:
            return [], []
        return ["-i", ffmpeg_file(str(self.subtitles_path))], ["-map", f"{index}:s:0", "-c:s", "mov_text"]

    def _fail(self, what: str) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()
        log = ""
        if self._log_file is not None:
            self._log_file.seek(0)
            log = self._log_file.read().decode("utf-8", "replace")
        self._cleanup()
        self._closed = True
        raise VideoEncodingError(f"{what}: ffmpeg stopped ({_last_line(log) or 'no message'}).", log)

    def _cleanup(self) -> None:
        discard(self._video_tmp)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _tee_escaped(path: str) -> str:
    """A file name as ffmpeg's tee muxer reads it (its separators and quotes escaped)."""
    return "".join("\\" + c if c in "\\|[]'" else c for c in path)


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# -- reading back ------------------------------------------------------------------------

_VIDEO_RE = re.compile(r"^\s*Stream #0:\d+.*?: Video: (?P<rest>.*)$", re.MULTILINE)
_FRAME_RE = re.compile(r"^frame=(\d+)$", re.MULTILINE)


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, exact frame count and track lengths of a video file.

    Frames are counted by copying the video packets to the null muxer (no decoding);
    the audio length is the number of decoded samples, so edit lists are honoured.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_file(path), "-map", "0:v:0", "-c", "copy",
         "-f", "null", "-progress", "pipe:1", "-nostats", "-"],
        capture_output=True, check=False)
    log = proc.stderr.decode("utf-8", "replace")
    match = _VIDEO_RE.search(log.split("Output #", 1)[0])
    if proc.returncode != 0 or match is None:
        raise ValueError(f"{path.name} has no readable video stream: {_last_line(log)}")
    parts = [p.strip() for p in split_ffmpeg_fields(match.group("rest"))]
    video_codec = parts[0].split(" ", 1)[0]
    pix_fmt = parts[1].split("(", 1)[0].strip() if len(parts) > 1 else ""
    width = height = 0
    fps = 0.0
    for part in parts[1:]:
        size = re.match(r"(\d+)x(\d+)", part)
        if size and not width:
            width, height = int(size.group(1)), int(size.group(2))
        if part.endswith(" fps"):
            fps = float(part[:-4])
    frames = _FRAME_RE.findall(proc.stdout.decode("ascii", "replace"))
    n_frames = int(frames[-1]) if frames else 0

    audio = probe_audio(path)
    audio_duration = None
    if audio is not None:
        audio_duration = _decoded_audio_seconds(path, audio.sample_rate)
    return VideoInfo(width=width, height=height, fps=fps, n_frames=n_frames,
                     duration_s=n_frames / fps if fps else 0.0, video_codec=video_codec, pix_fmt=pix_fmt,
                     audio_codec=audio.codec if audio else None, audio_duration_s=audio_duration)


def _decoded_audio_seconds(path: Path, rate: int) -> float:
    """Decode the first audio track to mono 16-bit PCM and count samples (streamed)."""
    proc = subprocess.Popen(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", ffmpeg_file(path), "-map", "0:a:0",
         "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    n_bytes = 0
    assert proc.stdout is not None
    while chunk := proc.stdout.read(1 << 20):
        n_bytes += len(chunk)
    proc.wait()
    return n_bytes / 2 / rate


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield every frame of a video as (h, w, 3) uint8 RGB."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(ffmpeg_file(path), pix_fmt="rgb24")
    meta = next(reader)
    width, height = meta["size"]
    try:
        for raw in reader:
            yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
