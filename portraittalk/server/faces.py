"""The faces of a portrait as the page shows them: every face found outlined and numbered from
the left, the one that will talk in the accent colour, and which face a click on the picture
means."""

from __future__ import annotations

import cv2
import numpy as np

from ..contracts import Box

PREVIEW_SIZE = 512  # long side of the preview picture, in which clicks are read
CHOSEN = (79, 70, 229)  # the page's accent colour
OTHER = (255, 255, 255)


def draw_faces(rgb: np.ndarray, boxes: list[Box], chosen: int) -> np.ndarray:
    """``rgb`` with each box outlined and numbered (1 = the leftmost); face ``chosen`` stands out."""
    image = rgb.copy()
    line = max(2, round(max(image.shape[:2]) / 200))
    scale = max(0.5, max(image.shape[:2]) / 800)
    for number, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        colour = CHOSEN if number == chosen else OTHER
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, line if number == chosen else max(1, line // 2))
        label = str(number)
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, line)
        top = y0 - h - base - 2 * line if y0 - h - base - 2 * line >= 0 else y0  # inside the box at the top edge
        cv2.rectangle(image, (x0, top), (x0 + w + 2 * line, top + h + base + 2 * line), colour, -1)
        cv2.putText(image, label, (x0 + line, top + h + line), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255) if number == chosen else (40, 40, 40), line, cv2.LINE_AA)
    return image


def face_at(boxes: list[Box], x: float, y: float) -> int:
    """The number (1 = the leftmost) of the face a click at (x, y) means: the box it falls in,
    else the nearest one (so a click on a number just above its box counts too)."""

    def distance(box: Box) -> float:
        x0, y0, x1, y1 = box
        return float(np.hypot(max(x0 - x, 0, x - x1), max(y0 - y, 0, y - y1)))

    return 1 + int(np.argmin([distance(b) for b in boxes]))
