"""Whole-frame looks for the warp engine: colour grades and painterly filters.

Two kinds of look, with different costs and different ways into the renderer:

* **per-pixel grades** (black-and-white, sepia, warm, cool, high-contrast) are a colour
  lookup table per channel, plus for sepia a vignette and film grain that are FIXED per
  frame size (generated once from a constant seed), so a still scene stays bit-identical
  from frame to frame. They cost a few milliseconds per frame and are applied to every
  rendered frame.
* **neighbourhood filters** (painting, pencil-sketch, cartoon) use OpenCV's edge-preserving
  filters (``cv2.stylization``, ``cv2.pencilSketch``, ``cv2.edgePreservingFilter``), which
  cost hundreds of milliseconds per frame on two cores. The warp engine applies them ONCE
  to the portrait and warps the styled portrait, so brush strokes and pencil lines move
  with the face instead of boiling; only the repainted mouth interior is restyled each
  frame with :meth:`StyleFilter.apply_region`.

Every step is a continuous function of the input (soft quantisation, soft edge
thresholds), so a one-level change of the input never flips a pixel to a different colour
band — the source of flicker in naive cartoon filters.

``strength`` (0…1) blends the look over the original frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .errors import InputError

PER_PIXEL_STYLES = ("black-and-white", "sepia", "warm", "cool", "high-contrast")
NEIGHBOURHOOD_STYLES = ("painting", "pencil-sketch", "cartoon")
# Neighbourhood filters run at this long side at most (and are upsampled back): their
# strokes then have the same size relative to the face at any resolution, and the cost
# stays bounded.
FILTER_SIDE = 640
GRAIN_SEED = 20240601  # the grain pattern is part of the look, identical in every video


def available_styles() -> list[str]:
    return list(PER_PIXEL_STYLES + NEIGHBOURHOOD_STYLES)


# --------------------------------------------------------------------------------------
# Lookup tables (256 × 3, uint8), built once.

def _curve(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _s_curve(x: np.ndarray, amount: float) -> np.ndarray:
    """Contrast S-curve on 0…1 that keeps 0, 0.5 and 1 fixed; `amount` 0 = identity."""
    if amount <= 0:
        return x
    k = 1.0 + 9.0 * amount
    s = 1.0 / (1.0 + np.exp(-k * (x - 0.5)))
    lo, hi = 1.0 / (1.0 + np.exp(k * 0.5)), 1.0 / (1.0 + np.exp(-k * 0.5))
    return (s - lo) / (hi - lo)


@lru_cache(maxsize=None)
def _lut(name: str) -> np.ndarray:
    x = np.linspace(0.0, 1.0, 256)
    if name == "black-and-white":
        y = _s_curve(x, 0.15)
        r = g = b = y
    elif name == "sepia":
        # Faded print: lifted blacks, creamy highlights, warm mid-tones.
        y = 0.08 + 0.86 * _s_curve(x, 0.1)
        r = 0.10 + 0.88 * y ** 0.90
        g = 0.07 + 0.82 * y ** 1.00
        b = 0.04 + 0.70 * y ** 1.25
    elif name == "warm":
        r = np.clip(x ** 0.88 * 1.03, 0, 1)
        g = x ** 0.97
        b = x ** 1.18 * 0.94
    elif name == "cool":
        r = x ** 1.15 * 0.95
        g = x ** 1.02
        b = np.clip(x ** 0.88 * 1.03, 0, 1)
    elif name == "high-contrast":
        r = g = b = _s_curve(x, 0.45)
    else:  # pragma: no cover - guarded by StyleFilter
        raise KeyError(name)
    return np.stack([_curve(r), _curve(g), _curve(b)], axis=-1).reshape(256, 1, 3)


def _blend_lut(lut: np.ndarray, strength: float) -> np.ndarray:
    ident = np.repeat(np.arange(256, dtype=np.float32).reshape(256, 1, 1), 3, axis=2)
    return np.clip(np.round(ident + strength * (lut.astype(np.float32) - ident)), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _vignette_and_grain(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed per frame size: a soft darkening towards the corners and a film-grain field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((xx - (w - 1) / 2) / (w / 2), (yy - (h - 1) / 2) / (h / 2)) / np.sqrt(2)
    vignette = (1.0 - 0.45 * np.clip(r, 0, 1) ** 2.2).astype(np.float32)
    rng = np.random.default_rng(GRAIN_SEED)
    grain = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    sigma = max(0.5, 0.6 * max(h, w) / 1024)  # grain size follows the frame size
    grain = cv2.GaussianBlur(grain, (0, 0), sigma)
    grain *= 5.0 / (grain.std() + 1e-6)  # ±5 levels
    return vignette, grain


# --------------------------------------------------------------------------------------
# Neighbourhood filters, on an image already at the working size.

def _painting(img: np.ndarray) -> np.ndarray:
    # Edge-preserving smoothing flattens skin and cloth into patches of colour; OpenCV's
    # oil-paint filter (the most frequent colour in a small window) breaks them into short
    # brush dabs. Small radii keep the eyes and mouth readable.
    smooth = cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=20, sigma_r=0.15)
    oil = cv2.xphoto.oilPainting(smooth, 2, 1, cv2.COLOR_RGB2Lab)
    # Richer colour, like pigment.
    hsv = cv2.cvtColor(oil, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = cv2.LUT(hsv[..., 1], _curve(np.clip(np.linspace(0, 1, 256) * 1.15, 0, 1)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _pencil(img: np.ndarray) -> np.ndarray:
    # Colour-dodge drawing (grey ÷ blurred negative) draws the outlines and leaves flat areas
    # white; OpenCV's pencil sketch adds graphite hatching, in the darker tones only, so
    # flat walls stay clean paper. A light edge-preserving pass first keeps JPEG noise and
    # skin texture from turning into scribbles.
    img = cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=10, sigma_r=0.1)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(255.0 - gray, (0, 0), 10.0)
    dodge = np.clip(gray / np.maximum(255.0 - blur, 1.0), 0.0, 1.0)
    hatch, _ = cv2.pencilSketch(img, sigma_s=60, sigma_r=0.07, shade_factor=0.08)
    shading = 1.0 - 0.5 * (1.0 - hatch.astype(np.float32) / 255.0) * np.clip(3.0 * (1.0 - dodge), 0.0, 1.0)
    tone = dodge ** 1.5 * shading
    paper = np.array([255.0, 251.0, 242.0], np.float32)  # slightly warm white
    return np.clip(tone[..., None] * paper, 0, 255).astype(np.uint8)


def _soft_quantise(x: np.ndarray, step: float, width: float = 0.25) -> np.ndarray:
    """Staircase with smooth risers: flat bands like a hard quantiser, but a small input
    change moves the output by a small amount even at a band edge (no flicker)."""
    q = x / step
    base = np.floor(q)
    t = np.clip((q - base - (0.5 - width)) / (2 * width), 0, 1)
    return (base + t * t * (3 - 2 * t)) * step


def _cartoon(img: np.ndarray) -> np.ndarray:
    smooth = cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=50, sigma_r=0.4)
    smooth = cv2.bilateralFilter(smooth, 7, 40, 7)
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] = _soft_quantise(lab[..., 0], 255.0 / 7)
    lab[..., 1:] = 128 + (lab[..., 1:] - 128) * 1.25  # bolder colours
    flat = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_Lab2RGB).astype(np.float32)
    # Ink lines: difference of Gaussians of the smoothed image with a soft (tanh) threshold,
    # continuous in the input; only edges darker than a small margin get ink, so skin
    # texture does not turn into specks.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    g1 = cv2.GaussianBlur(gray, (0, 0), 1.5)
    g2 = cv2.GaussianBlur(gray, (0, 0), 1.5 * 1.6)
    dog = g1 - 0.985 * g2 + 0.005
    ink = np.where(dog >= 0.0, 1.0, 1.0 + np.tanh(40.0 * dog)).astype(np.float32)
    ink = cv2.GaussianBlur(ink, (0, 0), 0.6)
    return np.clip(flat * ink[..., None], 0, 255).astype(np.uint8)


_NEIGHBOURHOOD = {"painting": _painting, "pencil-sketch": _pencil, "cartoon": _cartoon}


# --------------------------------------------------------------------------------------

@dataclass
class StyleFilter:
    """A whole-frame look; `apply` is deterministic (same frame in → same frame out)."""

    name: str
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in available_styles():
            raise InputError(f"Unknown look '{self.name}'; choose one of: {', '.join(available_styles())}.")
        if not (np.isfinite(self.strength) and 0.0 <= self.strength <= 1.0):
            raise InputError(f"The look strength must be between 0 and 1 (got {self.strength!r}).")
        self._lut = _blend_lut(_lut(self.name), self.strength) if self.per_pixel else None

    @property
    def per_pixel(self) -> bool:
        """True for cheap colour grades (apply to every frame); False for neighbourhood
        filters (style the portrait once, warp it, restyle the mouth per frame)."""
        return self.name in PER_PIXEL_STYLES

    # ------------------------------------------------------------------------------------
    def apply(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The styled frame: (H, W, 3) uint8 RGB in, same shape out."""
        frame = _check_frame(frame_rgb)
        if self.strength == 0.0:
            return frame.copy()
        if self.per_pixel:
            return self._grade(frame, (0, 0, frame.shape[1], frame.shape[0]), frame.shape[:2])
        return self._neighbourhood(frame)

    def apply_region(self, frame_rgb: np.ndarray, box: tuple[int, int, int, int],
                     styled_base: np.ndarray | None = None) -> np.ndarray:
        """Restyle only `box` (x0, y0, x1, y1) of `frame_rgb`; the rest comes from `styled_base`.

        `styled_base` is this look applied to a frame that differs from `frame_rgb` only
        inside `box` (for the warp engine: the styled portrait warped by the renderer, with
        the mouth painted in natural colours). A per-pixel look is exact; a neighbourhood
        filter is computed on the box plus a margin and feathered into the base.
        """
        frame = _check_frame(frame_rgb)
        H, W = frame.shape[:2]
        base = self.apply(frame) if styled_base is None else styled_base.copy()
        x0, y0, x1, y1 = (int(v) for v in box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if x1 <= x0 or y1 <= y0 or self.strength == 0.0:
            if self.strength == 0.0:
                base[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
            return base
        if self.per_pixel:
            base[y0:y1, x0:x1] = self._grade(frame[y0:y1, x0:x1], (x0, y0, x1, y1), (H, W))
            return base
        # Margin: the filters' reach (their spatial sigmas at the working scale).
        m = int(round(0.5 * max(x1 - x0, y1 - y0))) + 8
        cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)
        styled = self._neighbourhood(frame[cy0:cy1, cx0:cx1], scale_ref=max(H, W))
        # Feathered paste: full weight inside the box, fading to the base over part of the margin.
        alpha = np.zeros((cy1 - cy0, cx1 - cx0), np.float32)
        alpha[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = 1.0
        feather = max(2.0, 0.15 * max(x1 - x0, y1 - y0))
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather / 2)
        alpha[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = 1.0
        region = base[cy0:cy1, cx0:cx1].astype(np.float32)
        region += alpha[..., None] * (styled.astype(np.float32) - region)
        base[cy0:cy1, cx0:cx1] = np.clip(np.round(region), 0, 255).astype(np.uint8)
        return base

    # ------------------------------------------------------------------------------------
    def _grade(self, frame: np.ndarray, box: tuple[int, int, int, int], full_hw: tuple[int, int]) -> np.ndarray:
        if self.name in ("black-and-white", "sepia"):
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if self.name == "sepia":
                vignette, grain = _vignette_and_grain(*full_hw)
                x0, y0, x1, y1 = box
                g = gray.astype(np.float32) * (1.0 - self.strength * (1.0 - vignette[y0:y1, x0:x1]))
                g += self.strength * grain[y0:y1, x0:x1]
                gray = np.clip(np.round(g), 0, 255).astype(np.uint8)
            graded = cv2.LUT(cv2.merge([gray, gray, gray]), _lut(self.name))
            if self.strength >= 1.0:
                return graded
            return cv2.addWeighted(frame, 1.0 - self.strength, graded, self.strength, 0)
        if self.name == "high-contrast":
            # More saturation, then the S-curve.
            s = 1.0 + 0.3 * self.strength
            w = np.array([0.299, 0.587, 0.114], np.float32)
            mat = (np.eye(3, dtype=np.float32) * s + (1 - s) * np.outer(np.ones(3), w)).astype(np.float32)
            frame = cv2.transform(frame, mat)
        return cv2.LUT(frame, self._lut)

    def _neighbourhood(self, frame: np.ndarray, scale_ref: int | None = None) -> np.ndarray:
        H, W = frame.shape[:2]
        ref = scale_ref or max(H, W)
        scale = min(1.0, FILTER_SIDE / ref)
        if scale < 1.0:
            small = cv2.resize(frame, (max(8, round(W * scale)), max(8, round(H * scale))),
                               interpolation=cv2.INTER_AREA)
        else:
            small = frame
        styled = _NEIGHBOURHOOD[self.name](np.ascontiguousarray(small))
        if scale < 1.0:
            styled = cv2.resize(styled, (W, H), interpolation=cv2.INTER_CUBIC)
            if self.name != "painting":
                # Keep the frame's own fine detail under lines and flat colour.
                detail = frame.astype(np.float32) - cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
                if self.name == "pencil-sketch":
                    detail = detail.mean(axis=2, keepdims=True)
                styled = np.clip(styled.astype(np.float32) + 0.5 * detail, 0, 255).astype(np.uint8)
        if self.strength >= 1.0:
            return styled
        return cv2.addWeighted(frame, 1.0 - self.strength, styled, self.strength, 0)


def _check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame)
