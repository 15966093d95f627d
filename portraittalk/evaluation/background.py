"""Background kept and flicker, outside the head, on a small grey copy of each frame
(docs/METRICS.md)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

from ..contracts import Box

WORK_LONG_SIDE = 320  # background SSIM and flicker run on a grey copy this large
# The head (hair, ears, neck) around the face-mesh box, as fractions of the box's size.
HEAD_MARGIN = {"side": 0.5, "top": 0.6, "bottom": 0.5}
MIN_BACKGROUND_FRACTION = 0.05  # below this much background the background metrics are skipped


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity (Wang et al. 2004; 11×11 Gaussian, σ = 1.5) of two grey images."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the pixels where ``mask`` is true."""
    return float(ssim_map(a, b)[mask].mean()) if mask.any() else float("nan")


def head_mask(shape: tuple[int, int], boxes: Iterable[Box | None], scale: float = 1.0) -> np.ndarray:
    """True on the head (face-mesh box widened for hair, ears and neck) of any given box."""
    mask = np.zeros(shape, bool)
    h, w = shape
    for box in boxes:
        if box is None:
            continue
        x0, y0, x1, y1 = (v * scale for v in box)
        bw, bh = x1 - x0, y1 - y0
        xa = int(max(0, math.floor(x0 - HEAD_MARGIN["side"] * bw)))
        xb = int(min(w, math.ceil(x1 + HEAD_MARGIN["side"] * bw)))
        ya = int(max(0, math.floor(y0 - HEAD_MARGIN["top"] * bh)))
        yb = int(min(h, math.ceil(y1 + HEAD_MARGIN["bottom"] * bh)))
        mask[ya:yb, xa:xb] = True
    return mask


class BackgroundMeter:
    """SSIM against the portrait and flicker, frame by frame, outside the head here and in
    the portrait. Flicker needs the two frames before, so frames come in order."""

    def __init__(self, portrait_rgb: np.ndarray, portrait_box: Box, video_size: tuple[int, int],
                 compare_with_portrait: bool) -> None:
        self.portrait_box = portrait_box
        self.scale = min(1.0, WORK_LONG_SIDE / max(video_size))
        self.work_size = (max(8, round(video_size[0] * self.scale)), max(8, round(video_size[1] * self.scale)))
        self.portrait_grey = (self._small(cv2.cvtColor(portrait_rgb, cv2.COLOR_RGB2GRAY))
                              if compare_with_portrait else None)
        self._history: list[tuple[np.ndarray, np.ndarray]] = []  # last two (small grey, background mask)

    def _small(self, grey: np.ndarray) -> np.ndarray:
        return cv2.resize(grey, self.work_size, interpolation=cv2.INTER_AREA) if self.scale < 1 else grey

    def measure(self, grey: np.ndarray, box: Box | None) -> tuple[float, float]:
        """(SSIM, flicker) of one full-size grey frame whose face is in ``box``; NaN where not measured."""
        grey = self._small(grey)
        background = ~head_mask((grey.shape[0], grey.shape[1]), [box, self.portrait_box], self.scale)
        ssim = flicker = np.nan
        if self.portrait_grey is not None and background.mean() >= MIN_BACKGROUND_FRACTION:
            ssim = masked_ssim(grey, self.portrait_grey, background)
        if len(self._history) == 2:
            (g2, m2), (g1, m1) = self._history
            both = background & m1 & m2
            if both.mean() >= MIN_BACKGROUND_FRACTION:
                second = grey.astype(np.float32) - 2 * g1.astype(np.float32) + g2.astype(np.float32)
                flicker = float(np.abs(second)[both].mean())
        self._history = (self._history + [(grey, background)])[-2:]
        return ssim, flicker


def background_section(curves: Mapping[str, np.ndarray], compared: bool) -> dict[str, Any]:
    """The report's background part, from the per-frame ``ssim`` and ``flicker`` curves."""
    ssim = curves["ssim"][np.isfinite(curves["ssim"])]
    flick = curves["flicker"][np.isfinite(curves["flicker"])]
    # Only finite values are left, so plain rounding suffices.
    return {
        "compared_with_portrait": bool(compared and ssim.size),
        "ssim_mean": round(float(ssim.mean()), 4) if ssim.size else None,
        "ssim_min": round(float(ssim.min()), 4) if ssim.size else None,
        "flicker": round(float(flick.mean()), 3) if flick.size else None,
        "flicker_max": round(float(flick.max()), 3) if flick.size else None,
    }
