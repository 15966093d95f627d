"""`python -m portraittalk.contact_sheet VIDEO OUT.png`: a labelled grid of frames to look at.

Frames are taken evenly (or every `--every` frames), optionally cropped to a box
(`--crop x0,y0,x1,y1`, e.g. the face box from SCORES.json) so mouth and eyes are visible.
Bad input ends, like the main CLI, in one sentence and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError, PortraitTalkError
from .io.paths import check_output_path, write_file
from .io.video import probe_video, read_frames

Crop = tuple[int, int, int, int]


def contact_sheet(video: str | Path, out: str | Path, count: int = 24, every: int | None = None,
                  crop: Crop | None = None, tile_width: int = 240, columns: int = 6) -> Path:
    if Path(out).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"The contact sheet '{out}' needs a .png or .jpg name.")
    if not Path(video).is_file():
        raise InputError(f"The video file '{video}' does not exist; check the path.")
    try:
        probe_video(video)
    except (OSError, ValueError):
        raise InputError(f"'{Path(video).name}' is not a video PortraitTalk can read; "
                         "please give an MP4, MOV, WebM or AVI file.") from None
    out = check_output_path(out, "sheet.png", inputs=[video])
    frames = list(read_frames(video))
    if not frames:
        raise InputError(f"'{Path(video).name}' has no frames to show.")
    idx = list(range(0, len(frames), every)) if every else \
        sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))})
    tiles = []
    for i in idx:
        f = frames[i]
        if crop:
            x0, y0, x1, y1 = crop
            f = f[max(0, y0):y1, max(0, x0):x1]
            if f.size == 0:
                h, w = frames[i].shape[:2]
                raise InputError(f"The crop {x0},{y0},{x1},{y1} lies outside the video's {w}×{h} frames.")
        h = round(tile_width * f.shape[0] / f.shape[1])
        t = cv2.resize(f, (tile_width, h), interpolation=cv2.INTER_AREA).copy()
        cv2.putText(t, str(i), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(t)
    th = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, th - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], 1) for i in range(0, len(tiles), columns)]
    _, encoded = cv2.imencode(Path(out).suffix, cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return write_file(out, encoded.tobytes())


def parse_crop(text: str | None) -> Crop | None:
    """"x0,y0,x1,y1" as four whole numbers with x0 < x1 and y0 < y1, or one sentence."""
    if not text:
        return None
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"The crop '{text}' is not four whole numbers x0,y0,x1,y1 (for example 100,80,400,420).") \
            from None
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"The crop '{text}' is empty: x1 must be right of x0 and y1 below y0.")
    return x0, y0, x1, y1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--every", type=int, default=None)
    ap.add_argument("--crop", default=None, help="x0,y0,x1,y1")
    ap.add_argument("--columns", type=int, default=6)
    a = ap.parse_args(argv)
    try:
        print(contact_sheet(a.video, a.out, max(1, a.count), a.every and max(1, a.every), parse_crop(a.crop),
                            columns=max(1, a.columns)))
    except PortraitTalkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
