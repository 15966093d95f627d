"""Whole-frame looks for the warp engine: colour grades and painterly filters.

Two kinds of look, with different costs:

* **per-pixel grades** (black-and-white, sepia, warm, cool, high-contrast): a colour lookup
  table per channel, plus for sepia a vignette and film grain that are FIXED per frame size
  (generated once from a constant seed), so a still scene stays bit-identical from frame to
  frame. A few milliseconds per frame: apply them to every rendered frame.
* **neighbourhood filters** (painting, pencil-sketch, cartoon): OpenCV's edge-preserving
  filters plus a soft Kuwahara filter, a colour-dodge drawing or soft colour bands. They
  cost hundreds of milliseconds per frame on two cores, so the warp engine styles the
  portrait ONCE and warps the styled portrait: strokes and pencil lines then move with the
  face instead of being redrawn every frame. The only pixels the warp does not carry are
  the repainted mouth interior, restyled per frame by :meth:`StyleFilter.restyle_mouth`
  with the look's per-pixel part.

Every step is a continuous function of the input: soft instead of hard quantisation,
tanh instead of binary edge thresholds, variance-weighted instead of arg-min Kuwahara,
a regularised colour dodge, fixed (not per-frame) noise textures. A one-level change of
the input therefore never flips a pixel into another colour band, which is what makes
naive cartoon and oil-paint filters flicker. OpenCV's own ``oilPainting`` (a histogram
mode) and ``pencilSketch`` (its hatching follows the input's noise) are not used for that
reason: under ±1-level noise they changed 9 % and 3 % of the pixels of a still portrait by
10 levels or more from frame to frame.

``strength`` (0…1) blends the look over the original frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from ...errors import InputError

PER_PIXEL_STYLES = ("black-and-white", "sepia", "warm", "cool", "high-contrast")
NEIGHBOURHOOD_STYLES = ("painting", "pencil-sketch", "cartoon")
# Neighbourhood filters run at this long side (and are upsampled back), so strokes have the
# same size relative to the picture at any resolution and the cost is bounded; a small face
# raises the working size (up to the frame's own) and shrinks the strokes, so eyes and mouth
# stay readable.
FILTER_SIDE = 640
MAX_FILTER_SIDE = 1280
FACE_DETAIL_PX = 230  # face size (px, at the working scale) from which strokes have full size
TEXTURE_SEED = 20240601  # grain and hatching patterns are part of the look, the same in every video
PAPER_RGB = np.array([255.0, 251.0, 242.0], np.float32)  # pencil paper, slightly warm white
# mediapipe inner-lip contour (upper corner→corner, then lower), as in face.py.
_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
_INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]


def available_styles() -> list[str]:
    return list(PER_PIXEL_STYLES + NEIGHBOURHOOD_STYLES)


# --------------------------------------------------------------------------------------
# Lookup tables (256 × 1 × 3, uint8), built once.

def _to_u8(x: np.ndarray) -> np.ndarray:
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
        r = g = b = _s_curve(x, 0.15)
    elif name == "sepia":
        # Faded print: lifted blacks, creamy highlights, warm mid-tones.
        y = 0.08 + 0.86 * _s_curve(x, 0.1)
        r, g, b = 0.10 + 0.88 * y ** 0.90, 0.07 + 0.82 * y, 0.04 + 0.70 * y ** 1.25
    elif name == "warm":
        r, g, b = np.clip(x ** 0.88 * 1.03, 0, 1), x ** 0.97, x ** 1.18 * 0.94
    elif name == "cool":
        r, g, b = x ** 1.15 * 0.95, x ** 1.02, np.clip(x ** 0.88 * 1.03, 0, 1)
    elif name == "high-contrast":
        r = g = b = _s_curve(x, 0.45)
    elif name == "saturate":  # applied to HSV saturation
        r = g = b = np.clip(x * 1.15, 0, 1)
    else:  # pragma: no cover - guarded by StyleFilter
        raise KeyError(name)
    return np.stack([_to_u8(r), _to_u8(g), _to_u8(b)], axis=-1).reshape(256, 1, 3)


def _blend_lut(lut: np.ndarray, strength: float) -> np.ndarray:
    ident = np.repeat(np.arange(256, dtype=np.float32).reshape(256, 1, 1), 3, axis=2)
    return np.clip(np.round(ident + strength * (lut.astype(np.float32) - ident)), 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def _vignette_and_grain(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed per frame size: a soft darkening towards the corners and a film-grain field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((xx - (w - 1) / 2) / (w / 2), (yy - (h - 1) / 2) / (h / 2)) / np.sqrt(2)
    vignette = (1.0 - 0.45 * np.clip(r, 0, 1) ** 2.2).astype(np.float32)
    noise = np.random.default_rng(TEXTURE_SEED).normal(0.0, 1.0, (h, w)).astype(np.float32)
    # The grain size follows the frame size.
    grain: np.ndarray = cv2.GaussianBlur(noise, (0, 0), max(0.5, 0.6 * max(h, w) / 1024))
    grain *= 5.0 / (grain.std() + 1e-6)  # ≈ ±5 levels
    return vignette, grain


@lru_cache(maxsize=8)
def _hatching(h: int, w: int) -> np.ndarray:
    """Fixed pencil-stroke texture: noise smeared along the 45° diagonal, zero mean, unit std."""
    noise = np.random.default_rng(TEXTURE_SEED + 1).normal(0.0, 1.0, (h, w)).astype(np.float32)
    n = max(5, int(round(15 * max(h, w) / FILTER_SIDE)) | 1)
    stroke = np.eye(n, dtype=np.float32)[::-1] / n
    tex = cv2.filter2D(noise, -1, stroke, borderType=cv2.BORDER_REFLECT)
    return (tex - tex.mean()) / (tex.std() + 1e-6)


# --------------------------------------------------------------------------------------
# Neighbourhood filters, on an image already at the working size.

def _soft_kuwahara(img: np.ndarray, radius: int, sharpness: float = 8.0) -> np.ndarray:
    """Kuwahara painting filter with soft weights: each pixel takes the mean colour of four
    overlapping neighbourhoods (up-left, up-right, …), weighted by 1/(1+variance)^(q/2),
    so flat regions win and edges stay sharp; unlike the arg-min original it is smooth in
    the input (no flicker)."""
    f = img.astype(np.float32)
    sigma = (radius + 1) / 2.5
    mean = cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    var = np.maximum(cv2.GaussianBlur(f * f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) - mean * mean, 0).sum(2)
    h, w = img.shape[:2]
    off = radius / 2 + 0.5
    num = np.zeros_like(f)
    den = np.zeros((h, w), np.float32)
    for dy in (-off, off):
        for dx in (-off, off):
            shift = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
            m = cv2.warpAffine(mean, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            v = cv2.warpAffine(var, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            wt = (1.0 + v) ** (-sharpness / 2)
            num += m * wt[..., None]
            den += wt
    return np.clip(num / den[..., None], 0, 255).astype(np.uint8)


def _saturate(img: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = cv2.LUT(hsv[..., 1], _lut("saturate")[:, 0, 0])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _painting(img: np.ndarray, detail: float) -> np.ndarray:
    # Edge-preserving smoothing flattens skin and cloth; the Kuwahara pass turns the rest
    # into broad strokes with crisp borders; richer colour, like pigment.
    smooth = cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=20 * detail, sigma_r=0.15)
    return _saturate(_soft_kuwahara(smooth, max(1, round(2 * detail))))


def _pencil_tone(gray: np.ndarray, hatch: np.ndarray) -> np.ndarray:
    """Graphite shading of darker tones with the fixed hatching texture (1 = paper)."""
    dark = np.clip(1.3 * (1.0 - gray / 255.0), 0.0, 1.0)
    return 1.0 - 0.35 * dark * np.clip(0.6 + 0.4 * hatch, 0.0, 1.5)


def _pencil(img: np.ndarray, detail: float) -> np.ndarray:
    # Colour-dodge drawing (grey ÷ blurred negative) draws outlines and leaves flat areas
    # white; the +40 keeps dark flat areas from dividing ~0 by ~0 (there, a one-level change
    # would swing the result by tens of levels). A light edge-preserving pass first keeps
    # JPEG noise and skin texture from turning into scribbles.
    img = cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=10 * detail, sigma_r=0.1)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(255.0 - gray, (0, 0), max(3.0, 10.0 * detail))
    dodge = np.clip((gray + 40.0) / (255.0 - blur + 40.0), 0.0, 1.0)
    tone = dodge ** 2.2 * _pencil_tone(gray, _hatching(*gray.shape))
    return np.clip(tone[..., None] * PAPER_RGB, 0, 255).astype(np.uint8)


def _soft_quantise(x: np.ndarray, step: float, width: float = 0.25) -> np.ndarray:
    """Staircase with smooth risers: flat bands like a hard quantiser, but a small input
    change moves the output by a small amount even at a band edge."""
    q = x / step
    base = np.floor(q)
    t = np.clip((q - base - (0.5 - width)) / (2 * width), 0, 1)
    return (base + t * t * (3 - 2 * t)) * step


def _cartoon_colours(img: np.ndarray) -> np.ndarray:
    """The per-pixel part of the cartoon look: lightness in 7 soft bands, bolder colour."""
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] = _soft_quantise(lab[..., 0], 255.0 / 7)
    lab[..., 1:] = 128 + (lab[..., 1:] - 128) * 1.25
    return cv2.cvtColor(np.clip(np.round(lab), 0, 255).astype(np.uint8), cv2.COLOR_Lab2RGB)


def _cartoon(img: np.ndarray, detail: float) -> np.ndarray:
    smooth = cv2.edgePreservingFilter(img, flags=cv2.RECURS_FILTER, sigma_s=50 * detail, sigma_r=0.4)
    smooth = cv2.bilateralFilter(smooth, max(3, round(7 * detail)) | 1, 40, 7 * detail)
    flat = _cartoon_colours(smooth).astype(np.float32)
    # Ink lines: difference of Gaussians of the smoothed image with a soft (tanh)
    # threshold; only edges darker than a small margin get ink, so skin texture does not
    # turn into specks.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    sigma = 1.5 * max(0.6, detail)
    dog = cv2.GaussianBlur(gray, (0, 0), sigma) - 0.985 * cv2.GaussianBlur(gray, (0, 0), 1.6 * sigma) + 0.005
    ink = cv2.GaussianBlur(np.where(dog >= 0.0, 1.0, 1.0 + np.tanh(40.0 * dog)).astype(np.float32), (0, 0), 0.6)
    return np.clip(flat * ink[..., None], 0, 255).astype(np.uint8)


_NEIGHBOURHOOD = {"painting": _painting, "pencil-sketch": _pencil, "cartoon": _cartoon}


# --------------------------------------------------------------------------------------

@dataclass
class StyleFilter:
    """A whole-frame look. `apply` is deterministic: the same frame in gives the same frame out."""

    name: str
    strength: float = 1.0
    face_size: float | None = None  # long side of the face box in frame pixels, when known
    _lut_blended: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.name not in available_styles():
            raise InputError(f"Unknown look '{self.name}'; choose one of: {', '.join(available_styles())}.")
        if not (np.isfinite(self.strength) and 0.0 <= self.strength <= 1.0):
            raise InputError(f"The look strength must be between 0 and 1 (got {self.strength!r}).")
        self.strength = float(self.strength)
        if self.face_size is not None and not (np.isfinite(self.face_size) and self.face_size > 0):
            self.face_size = None
        if self.per_pixel:
            self._lut_blended = _blend_lut(_lut(self.name), self.strength)

    @property
    def per_pixel(self) -> bool:
        """True for the cheap colour grades (apply to every frame); False for the
        neighbourhood filters (style the portrait once, warp it, `restyle_mouth` per frame)."""
        return self.name in PER_PIXEL_STYLES

    def apply(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The styled frame: (H, W, 3) uint8 RGB in, a new array of the same shape out."""
        frame = _check_frame(frame_rgb)
        if self.strength == 0.0:
            return frame.copy()
        if self.per_pixel:
            return self._grade(frame, (0, 0), (frame.shape[0], frame.shape[1]))
        return self._neighbourhood(frame)

    def restyle_mouth(self, frame_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Frame with the mouth opening (inner-lip polygon of the 478-point mesh, full-frame
        pixels) restyled by the look's per-pixel part; for a frame rendered from the
        styled portrait, whose mouth interior was painted in natural colours."""
        frame = _check_frame(frame_rgb).copy()
        if self.strength == 0.0:
            return frame
        pts = np.asarray(landmarks, np.float32)[:, :2]
        poly = np.concatenate([pts[_INNER_UPPER], pts[_INNER_LOWER[::-1][1:-1]]])
        H, W = frame.shape[:2]
        mouth_w = float(np.linalg.norm(pts[_INNER_UPPER[0]] - pts[_INNER_UPPER[-1]]))
        pad = int(np.ceil(0.15 * mouth_w)) + 3
        x0, y0 = np.floor(poly.min(0)).astype(int) - pad
        x1, y1 = np.ceil(poly.max(0)).astype(int) + pad
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return frame
        # Mask: the opening grown by a little, feathered, so no natural-coloured rim remains.
        opening = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(opening, [np.round((poly - [x0, y0]) * 4).astype(np.int32)], (255,), cv2.LINE_AA, shift=2)
        grow = max(1, int(round(0.02 * mouth_w)))
        grown = cv2.dilate(opening, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        mask = cv2.GaussianBlur(grown.astype(np.float32) / 255.0, (0, 0), max(0.8, 0.02 * mouth_w))
        crop = frame[y0:y1, x0:x1]
        styled = self._pixel_part(crop, (x0, y0), (H, W)).astype(np.float32)
        out = crop.astype(np.float32) + mask[..., None] * (styled - crop)
        frame[y0:y1, x0:x1] = np.clip(np.round(out), 0, 255).astype(np.uint8)
        return frame

    # ------------------------------------------------------------------------------------
    def _pixel_part(self, crop: np.ndarray, origin: tuple[int, int], full_hw: tuple[int, int]) -> np.ndarray:
        """The look restricted to what a pixel can do on its own (used for the mouth)."""
        if self.per_pixel:
            return self._grade(crop, origin, full_hw)
        if self.name == "painting":
            styled = _saturate(crop)
        elif self.name == "cartoon":
            styled = _cartoon_colours(crop)
        else:  # pencil-sketch: tone from grey, the same hatching as the full filter
            gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
            hatch = _hatching(*full_hw)[origin[1]:origin[1] + crop.shape[0], origin[0]:origin[0] + crop.shape[1]]
            tone = (0.25 + 0.75 * (gray / 255.0) ** 0.7) * _pencil_tone(gray, hatch)
            styled = np.clip(tone[..., None] * PAPER_RGB, 0, 255).astype(np.uint8)
        return self._blend(crop, styled)

    def _grade(self, frame: np.ndarray, origin: tuple[int, int], full_hw: tuple[int, int]) -> np.ndarray:
        if self.name in ("black-and-white", "sepia"):
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if self.name == "sepia":
                vignette, grain = _vignette_and_grain(*full_hw)
                x0, y0 = origin
                sl = np.s_[y0:y0 + frame.shape[0], x0:x0 + frame.shape[1]]
                g = gray.astype(np.float32) * vignette[sl] + grain[sl]
                gray = np.clip(np.round(g), 0, 255).astype(np.uint8)
            return self._blend(frame, cv2.LUT(cv2.merge([gray, gray, gray]), _lut(self.name)))
        if self.name == "high-contrast":
            # Richer colour first (a 3×3 mix towards/away from grey), then the S-curve.
            s = 1.0 + 0.3 * self.strength
            luma = np.array([0.299, 0.587, 0.114], np.float32)
            mix = (np.eye(3, dtype=np.float32) * s + (1 - s) * np.outer(np.ones(3, np.float32), luma))
            frame = cv2.transform(frame, mix)
        lut = self._lut_blended
        assert lut is not None  # built in __post_init__ for every per-pixel look
        return cv2.LUT(frame, lut)

    def _neighbourhood(self, frame: np.ndarray) -> np.ndarray:
        H, W = frame.shape[:2]
        long_side = max(H, W)
        face = self.face_size if self.face_size and self.face_size > 0 else 0.4 * long_side
        scale = max(FILTER_SIDE / long_side, FACE_DETAIL_PX / face)
        scale = min(1.0, scale, MAX_FILTER_SIDE / long_side)
        detail = float(np.clip(face * scale / FACE_DETAIL_PX, 0.3, 1.0))
        small = frame if scale >= 1.0 else cv2.resize(
            frame, (max(8, round(W * scale)), max(8, round(H * scale))), interpolation=cv2.INTER_AREA)
        styled = _NEIGHBOURHOOD[self.name](np.ascontiguousarray(small), detail)
        if scale < 1.0:
            styled = cv2.resize(styled, (W, H), interpolation=cv2.INTER_CUBIC)
        return self._blend(frame, styled)

    def _blend(self, original: np.ndarray, styled: np.ndarray) -> np.ndarray:
        if self.strength >= 1.0:
            return styled
        return cv2.addWeighted(original, 1.0 - self.strength, styled, self.strength, 0)


def _check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame)
