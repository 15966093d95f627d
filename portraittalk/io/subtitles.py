"""Subtitles from the spoken words: cues, WebVTT / SRT files, and captions burned into a video.

A cue is a run of words shown together: it ends at a sentence's end, before a pause of
``CUE_PAUSE_S``, or before it would grow past ``CUE_CHARS`` characters or ``CUE_SECONDS``;
it is on screen from its first word's start to its last word's end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..analysis.speech.words import join_words
from ..contracts import WordSegment
from .audio import ffmpeg_exe
from .video import VideoEncodingError

CUE_CHARS = 42  # the usual broadcast line length
CUE_SECONDS = 5.0
CUE_PAUSE_S = 0.6
_SENTENCE_END = tuple(".!?…。！？")


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def cues_from_words(words: Sequence[WordSegment]) -> list[Cue]:
    cues: list[Cue] = []
    run: list[WordSegment] = []

    def close() -> None:
        if run:
            cues.append(Cue(round(run[0].start, 3), round(run[-1].end, 3), join_words([w.text for w in run])))
            run.clear()

    for w in words:
        if not w.text.strip():
            continue
        if run and (w.start - run[-1].end >= CUE_PAUSE_S or w.end - run[0].start > CUE_SECONDS
                    or len(join_words([*(r.text for r in run), w.text])) > CUE_CHARS):
            close()
        run.append(w)
        if w.text.endswith(_SENTENCE_END):
            close()
    close()
    return cues


def _stamp(t: float, comma: bool) -> str:
    ms = max(0, int(round(t * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def to_webvtt(cues: Sequence[Cue]) -> str:
    blocks = [f"{_stamp(c.start, False)} --> {_stamp(c.end, False)}\n{c.text}" for c in cues]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def to_srt(cues: Sequence[Cue]) -> str:
    return "\n\n".join(f"{i}\n{_stamp(c.start, True)} --> {_stamp(c.end, True)}\n{c.text}"
                       for i, c in enumerate(cues, 1)) + ("\n" if cues else "")


def write_subtitles(path: str | Path, cues: Sequence[Cue]) -> Path:
    """WebVTT or SRT, by the file's suffix (.vtt / .srt)."""
    from .paths import write_file

    path = Path(path)
    return write_file(path, to_srt(cues) if path.suffix.lower() == ".srt" else to_webvtt(cues))


@contextlib.contextmanager
def subtitle_file(cues: Sequence[Cue]) -> Iterator[Path | None]:
    """A temporary SRT file of the cues for the encoder (None when there are none)."""
    if not cues:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="portraittalk-subs-") as folder:
        yield write_subtitles(Path(folder) / "words.srt", cues)


def _font_folder() -> str | None:
    """DejaVu Sans from matplotlib (a mediapipe dependency), so captions render without system fonts."""
    try:
        import matplotlib
    except ImportError:
        return None
    folder = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    return str(folder) if (folder / "DejaVuSans.ttf").is_file() else None


def burn_in(video: str | Path, subtitles: str | Path, out: str | Path) -> Path:
    """A copy of ``video`` with the subtitles file (.srt / .vtt) drawn into the picture (libass),
    the sound copied as it is: for players and sites that hide soft subtitles. Glyphs DejaVu
    Sans lacks (Chinese, Japanese) need a system font."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="portraittalk-burn-") as folder:
        name = "words" + Path(subtitles).suffix.lower()
        shutil.copyfile(subtitles, Path(folder) / name)
        style = "FontName=DejaVu Sans,FontSize=20,Outline=2,Shadow=0,MarginV=24"
        fonts = _font_folder()
        # run inside the folder: the filter graph then names the file without any path to escape
        graph = f"subtitles={name}" + (f":fontsdir='{_escape(fonts)}'" if fonts else "") + f":force_style='{style}'"
        fd, tmp = tempfile.mkstemp(prefix=".captions-", suffix=".mp4", dir=out.parent)
        os.close(fd)
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(Path(video).resolve()),
             "-map", "0:v:0", "-map", "0:a?", "-vf", graph, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
             "-pix_fmt", "yuv420p", "-c:a", "copy", "-movflags", "+faststart", "-f", "mp4", tmp],
            cwd=folder, capture_output=True, check=False)
    if proc.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        log = proc.stderr.decode("utf-8", "replace")
        raise VideoEncodingError(f"Drawing the captions into the video failed: {log.strip()[-200:]}", log)
    os.replace(tmp, out)
    return out


def _escape(path: str) -> str:
    """A path inside a quoted filter option."""
    return path.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
