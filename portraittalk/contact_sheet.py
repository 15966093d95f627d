"""`python -m portraittalk.contact_sheet VIDEO OUT.png`: a labelled grid of frames to look at.

Frames are taken evenly (or every `--every` frames), optionally cropped to a box
(`--crop x0,y0,x1,y1`, e.g. the face box from SCORES.json) so mouth and eyes are visible.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from .io.video import read_frames


def contact_sheet(video: str | Path, out: str | Path, count: int = 24, every: int | None = None,
                  crop: tuple[int, int, int, int] | None = None, tile_width: int = 240, columns: int = 6) -> Path:
    frames = list(read_frames(video))
    idx = list(range(0, len(frames), every)) if every else \
        sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))})
    tiles = []
    for i in idx:
        f = frames[i]
        if crop:
            x0, y0, x1, y1 = crop
            f = f[max(0, y0):y1, max(0, x0):x1]
        h = round(tile_width * f.shape[0] / f.shape[1])
        t = cv2.resize(f, (tile_width, h), interpolation=cv2.INTER_AREA).copy()
        cv2.putText(t, str(i), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(t)
    th = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, th - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], 1) for i in range(0, len(tiles), columns)]
    out = Path(out)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--every", type=int, default=None)
    ap.add_argument("--crop", default=None, help="x0,y0,x1,y1")
    ap.add_argument("--columns", type=int, default=6)
    a = ap.parse_args()
    crop = tuple(int(v) for v in a.crop.split(",")) if a.crop else None
    print(contact_sheet(a.video, a.out, a.count, a.every, crop, columns=a.columns))


if __name__ == "__main__":
    main()
