"""Two talking-face videos as one MP4 to share: side by side at the same height, each labelled,
with one sound track and a caption row of each video's key metrics under it.

ffmpeg does the work in one run: each video is scaled to the common height and converted to a
common frame rate (the higher of the two), the shorter one holds its last frame until the longer
one ends, the two are stacked, and a picture holding the labels and the caption row (drawn with
Pillow's built-in font) is laid over them. Measured against composing the frames with moviepy,
this took a fraction of the CPU time, so moviepy is not used.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from ..io.audio import INPUT_GUARD, ffmpeg_exe, ffmpeg_file
from ..io.paths import discard, publish, temporary_beside
from ..io.video import VideoEncodingError, probe_video
from .report import COMPARE_ROWS, with_unit

MAX_HEIGHT = 720  # the common height: the smaller video's, never above this
# The caption row: short names for three of the comparison table's rows.
CAPTION = (("identity_mean_cosine", "identity"), ("sync_confidence", "lip sync"), ("av_offset_ms", "offset"))
BACKGROUND = (24, 24, 32)
TEXT = (255, 255, 255)
MUTED = (190, 190, 205)


@dataclass(frozen=True)
class Panel:
    """One side: the video, its label and the caption under it."""

    video: Path
    label: str
    caption: str


def caption(summary: Mapping[str, Any]) -> str:
    """"identity 0.982 · lip sync 0.71 · offset +0 ms" from an evaluation summary."""
    formats = {key: (unit, spec) for key, _, unit, _, spec in COMPARE_ROWS}
    # "n/a" rather than the table's dash: Pillow's built-in font has no dash glyph.
    return " · ".join(f"{name} {with_unit(summary.get(key), formats[key][1], formats[key][0])}".replace("—", "n/a")
                      for key, name in CAPTION)


def side_by_side_video(left: Panel, right: Panel, out: str | Path, audio: str | Path | None = None) -> Path:
    """Write the two panels as one MP4 at ``out``; the sound is ``audio``, else the left video's
    sound track, else the right one's."""
    out = Path(out)
    infos = []
    for panel in (left, right):
        try:
            infos.append(probe_video(panel.video))
        except (OSError, ValueError):
            raise InputError(f"'{panel.video.name}' is not a video PortraitTalk can read; "
                             "please use an MP4, MOV, WebM or AVI file.") from None
        if infos[-1].n_frames < 1 or infos[-1].fps <= 0:
            raise InputError(f"'{panel.video.name}' has no frames; please choose another video.")
    height = min(MAX_HEIGHT, *(i.height for i in infos)) // 2 * 2
    widths = [max(2, round(i.width * height / i.height / 2) * 2) for i in infos]
    fps = max(i.fps for i in infos)
    duration = max(i.duration_s for i in infos)
    with tempfile.TemporaryDirectory(prefix="portraittalk-side-") as folder:
        overlay = Path(folder) / "labels.png"
        Image.fromarray(labels_picture((left, right), widths, height)).save(overlay)
        inputs = [left.video, right.video, overlay]
        if audio is not None:
            inputs.append(Path(audio))
            sound: int | None = 3
        else:  # the first video that has a sound track
            sound = next((k for k, info in enumerate(infos) if info.audio_codec), None)
        scaled = [f"[{k}:v]scale={w}:{height},setsar=1,fps={fps:g},"
                  f"tpad=stop_mode=clone:stop_duration={duration - info.duration_s + 1 / fps:.4f}[v{k}]"
                  for k, (w, info) in enumerate(zip(widths, infos))]
        graph = ";".join(scaled + [f"[v0][v1]hstack=inputs=2,pad={sum(widths)}:ih+{caption_height(height)}:0:0[s]",
                                   "[s][2:v]overlay=0:0,format=yuv420p[v]"])
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
        for path in inputs:
            cmd += [*INPUT_GUARD, "-i", ffmpeg_file(path)]
        cmd += ["-filter_complex", graph, "-map", "[v]"]
        if sound is not None:
            cmd += ["-map", f"{sound}:a:0", "-c:a", "aac", "-b:a", "160k"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-r", f"{fps:g}",
                "-t", f"{duration:.4f}", "-movflags", "+faststart", "-f", "mp4"]
        partial = temporary_beside(out, ".encoding-")  # the output appears only when complete
        try:
            proc = subprocess.run([*cmd, ffmpeg_file(partial)], capture_output=True, check=False)
            if proc.returncode != 0:
                log = proc.stderr.decode("utf-8", "replace")
                raise VideoEncodingError(f"Making the side-by-side video failed: {log.strip().splitlines()[-1:]}",
                                         log)
            return publish(partial, out)
        finally:
            discard(partial)


def caption_height(video_height: int) -> int:
    return max(44, round(video_height * 0.12)) // 2 * 2


def labels_picture(panels: tuple[Panel, Panel], widths: list[int], height: int) -> np.ndarray:
    """RGBA picture as large as the result: each panel's label over its top-left corner and its
    caption in the row under the videos (on two lines when one would be too small to read);
    transparent elsewhere. Both sides use the same font sizes."""
    rows = caption_height(height)
    pad = max(4, rows // 10)
    label_size = min(_fitting_size(p.label, w // 2, rows // 3) for p, w in zip(panels, widths))
    lines = [[p.caption] for p in panels]
    caption_size = min(_fitting_size(p.caption, w - 2 * pad, rows * 2 // 5) for p, w in zip(panels, widths))
    if caption_size < rows // 4:  # too small on one line: break after the first "·" that passes half way
        lines = [_two_lines(p.caption) for p in panels]
        caption_size = min(_fitting_size(line, w - 2 * pad, rows // 3)
                           for ls, w in zip(lines, widths) for line in ls)
    label_font, caption_font = ImageFont.load_default(size=label_size), ImageFont.load_default(size=caption_size)
    picture = Image.new("RGBA", (sum(widths), height + rows), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, height, sum(widths), height + rows), fill=BACKGROUND + (255,))
    x = 0
    for panel, width, text_lines in zip(panels, widths, lines):
        box = draw.textbbox((x + 2 * pad, 2 * pad), panel.label, font=label_font)
        draw.rounded_rectangle((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), radius=pad,
                               fill=BACKGROUND + (200,))
        draw.text((x + 2 * pad, 2 * pad), panel.label, font=label_font, fill=TEXT + (255,))
        draw.multiline_text((x + width // 2, height + rows // 2), "\n".join(text_lines), font=caption_font,
                            fill=MUTED + (255,), anchor="mm", align="center")
        if x:
            draw.line((x, height, x, height + rows), fill=MUTED + (255,), width=1)
        x += width
    return np.asarray(picture)


def _fitting_size(text: str, width: int, size: int) -> int:
    """``size``, or the smaller font size at which ``text`` fits in ``width`` pixels."""
    length = ImageFont.load_default(size=size).getlength(text)
    return size if length <= width else max(8, math.floor(size * width / length))


def _two_lines(text: str) -> list[str]:
    parts = text.split(" · ")
    half = len(text) / 2
    cut = next((k for k in range(1, len(parts)) if len(" · ".join(parts[:k])) >= half), len(parts) - 1)
    return [" · ".join(parts[:cut]), " · ".join(parts[cut:])]
