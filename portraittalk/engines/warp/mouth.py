"""Paints the inside of the mouth where the lips part.

A portrait with closed lips has no mouth interior to stretch, and stretching the teeth of a
smiling portrait looks wrong, so the opening between the inner lips is always repainted:

* a dark cavity, darker towards the back (distance from the lips), with a tongue hint at
  the bottom that rises for TH/L;
* upper teeth whose edge stays fixed to the skull and lower teeth carried by the jaw; so
  the visible amount of each changes with jaw and lips, as in a real mouth;
* if the portrait already shows teeth, those real teeth are reused: the upper half of the
  original opening travels rigidly with the skull and the lower half with the jaw, never
  stretched; only newly exposed space is painted.

Colours are taken from the portrait (skin tone for cavity/tongue, the real teeth when
visible) so the interior matches the photo's white balance and exposure.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ...analysis import face as fm
from .rig import RigOutput


@dataclass
class MouthAppearance:
    """Colours and the portrait's own mouth opening, measured once per portrait."""

    teeth_rgb: np.ndarray  # (3,) float
    cavity_rgb: np.ndarray
    tongue_rgb: np.ndarray
    has_open_mouth: bool  # the portrait itself shows an opening (teeth or cavity)
    src_open_area: float  # area of the portrait's own inner-lip polygon, px²
    src_upper_mask: np.ndarray | None  # (h, w) float32 masks of the source opening halves
    src_lower_mask: np.ndarray | None


# Lips parted by at most this many pixels show no teeth; they fade in over a further
# TEETH_RAMP mouth widths (see paint_mouth).
THIN_OPENING_PX = 2.0
TEETH_RAMP = 0.02
# Shading of the synthetic teeth: darker gaps between teeth, lower row in the shade of the
# upper, upper row shaded by the lip just above it.
TOOTH_GAP_DARKEN = 0.15
LOWER_TEETH_SHADE = 0.75
LIP_SHADOW = 0.15


def inner_lip_polygon(landmarks: np.ndarray) -> np.ndarray:
    """Closed polygon of the inner lip contour (upper corner→corner, lower back)."""
    return np.concatenate([landmarks[fm.INNER_UPPER, :2], landmarks[fm.INNER_LOWER[::-1][1:-1], :2]])


def measure_mouth(image: np.ndarray, landmarks: np.ndarray) -> MouthAppearance:
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    # Skin tone: median of the cheeks/chin area between mouth and face edge.
    skin_idx = [50, 280, 205, 425, 199, 175, 36, 266]
    skin = np.median(np.stack([img[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))]
                               for x, y in landmarks[skin_idx, :2]]), axis=0)
    luma = float(skin @ [0.299, 0.587, 0.114])
    # Colours follow the skin's white balance, so a warm photo gets warm teeth, not blue ones.
    chroma = skin / (skin.max() + 1e-6)
    exposure = float(np.clip(luma / 150.0, 0.7, 1.1))
    cavity = np.array([0.42, 0.17, 0.16]) * max(70.0, luma) * (0.75 + 0.25 * chroma)
    tongue = np.array([0.80, 0.44, 0.42]) * max(80.0, luma) * (0.8 + 0.2 * chroma)

    poly = inner_lip_polygon(landmarks)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], (255,), lineType=cv2.LINE_AA, shift=4)
    inside = mask > 127
    gap = fm.mouth_gap_ratio(landmarks)
    teeth_default = np.clip(232.0 * exposure * (0.72 + 0.28 * chroma) * [1.0, 0.97, 0.92], 0, 255)
    teeth = teeth_default
    has_open = bool(gap > 0.06 and inside.sum() > 20)
    upper_m = lower_m = None
    if has_open:
        pix = img[inside]
        lum = pix @ [0.299, 0.587, 0.114]
        sat = pix.max(1) - pix.min(1)
        bright = pix[(lum > np.percentile(lum, 70)) & (sat < np.percentile(sat, 60) + 1)]
        if len(bright) >= 5:
            teeth = np.median(bright, axis=0)
        # Split the opening into what the skull carries (upper teeth) and what the jaw
        # carries: at the darkest row of each column (the gap between the rows of teeth),
        # or, where no gap is visible, low in the opening (upper teeth usually show most).
        ys, xs = np.nonzero(inside)
        gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
        teeth_l = float(np.percentile(gray[inside], 80))
        default_y = np.interp(xs, *_sorted_xy(landmarks[fm.INNER_UPPER, :2])) * 0.3 + \
            np.interp(xs, *_sorted_xy(landmarks[fm.INNER_LOWER, :2])) * 0.7
        split = {}
        for x in np.unique(xs):
            col = ys[xs == x]
            n = len(col)
            if n < 4:
                continue
            inner = col[int(n * 0.3):max(int(n * 0.3) + 1, int(n * 0.9))]  # skip the lips' own shadows
            vals = gray[inner, x]
            k = int(np.argmin(vals))
            if vals[k] < 0.6 * teeth_l:
                split[int(x)] = float(inner[k])
        split_x = np.array(sorted(split), float)
        if len(split_x) >= 3:
            split_y = cv2.medianBlur(np.array([split[int(x)] for x in split_x], np.float32)[None], 5)[0] \
                if len(split_x) >= 5 else np.array([split[int(x)] for x in split_x])
            mid_y = np.interp(xs, split_x, split_y)
        else:
            mid_y = default_y
        upper_m = np.zeros((h, w), np.float32)
        lower_m = np.zeros((h, w), np.float32)
        top = ys <= mid_y
        upper_m[ys[top], xs[top]] = 1.0
        lower_m[ys[~top], xs[~top]] = 1.0
    return MouthAppearance(teeth.astype(np.float32), cavity.astype(np.float32), tongue.astype(np.float32),
                           has_open, float(mask.sum()) / 255.0, upper_m, lower_m)


def _sorted_xy(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.argsort(pts[:, 0])
    return pts[o, 0], pts[o, 1]


def paint_mouth(out: np.ndarray, src: np.ndarray, rig: RigOutput, look: MouthAppearance, mouth_w: float,
                tongue: float = 0.0) -> None:
    """Repaint the opening between the target inner lips of `out` in place (same frame as src)."""
    h, w = out.shape[:2]
    poly = inner_lip_polygon(rig.landmarks)
    x0, y0 = np.floor(poly.min(0)).astype(int) - 3
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 4
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    bw, bh = x1 - x0, y1 - y0
    # Antialiased mask of the opening; skip when the lips touch.
    ss = 4  # supersampling of the mask edge
    fine = np.zeros((bh * ss, bw * ss), np.uint8)
    cv2.fillPoly(fine, [np.round((poly - [x0, y0]) * ss * 16).astype(np.int32)], (255,),
                 lineType=cv2.LINE_AA, shift=4)
    mask = cv2.resize(fine, (bw, bh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # Fade the painting in as the opening grows beyond the portrait's own, so a frame at
    # rest is the portrait itself (a closed mouth's thin seam is not repainted).
    grown = (mask.sum() - look.src_open_area) / (0.015 * mouth_w ** 2 + 1e-6)
    fade = float(np.clip(grown, 0.0, 1.0))
    if look.has_open_mouth:
        fade = 1.0  # the real teeth are reused, so painting is exact at rest anyway
    if mask.sum() < 1.0 or fade <= 0.0:
        return
    mask *= fade
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    W = mouth_w

    # Cavity, darker away from the lips.
    hard = (mask > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(np.pad(hard, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    depth = np.clip(dist / (0.10 * W + 1e-6), 0, 1)[..., None]
    layer = look.cavity_rgb[None, None] * (1.0 - 0.5 * depth)

    # Tongue: a soft ellipse resting on the floor of the mouth, just behind the lower teeth.
    lower_edge = rig.lower_teeth_edge
    centre_low = lower_edge[len(lower_edge) // 2]
    upper_edge = rig.upper_teeth_edge
    tongue_up = float(np.clip(tongue, 0, 1))
    ty = centre_low[1] + 0.06 * W - tongue_up * 0.10 * W
    tongue_a = np.clip(1.0 - (((gx - centre_low[0]) / (0.30 * W)) ** 2 + ((gy - ty) / (0.10 * W)) ** 2), 0, 1) ** 0.5
    shade = np.clip(0.6 + 0.4 * (gy - (ty - 0.1 * W)) / (0.2 * W), 0.45, 1.0)
    layer = _over(layer, look.tongue_rgb[None, None] * shade[..., None], tongue_a[..., None] * 0.9)

    # Teeth: bands hanging from the skull (upper) and standing on the jaw (lower).
    ux = upper_edge[:, 0]
    o = np.argsort(ux)
    up_y = np.interp(gx, ux[o], upper_edge[o, 1], left=np.nan, right=np.nan)
    lx = lower_edge[:, 0]
    o2 = np.argsort(lx)
    lo_y = np.interp(gx, lx[o2], lower_edge[o2, 1], left=np.nan, right=np.nan)
    mid_x = float(upper_edge[len(upper_edge) // 2, 0])
    half = max(1.0, float(np.ptp(ux)) / 2)
    uu = (gx - mid_x) / half  # −1 … 1 across the teeth
    side_shade = np.clip(1.0 - 0.55 * np.clip(np.abs(uu) - 0.35, 0, 1) / 0.65, 0.35, 1.0)
    # Individual teeth (central and lateral incisors, canines, premolars of a typical arch):
    # darker gaps between them and rounded corners on the biting edge, so the row does not
    # read as one flat band. The arch also curves back, so side teeth look shorter.
    bounds = np.array([-0.78, -0.60, -0.44, -0.23, 0.0, 0.23, 0.44, 0.60, 0.78])
    gaps = np.zeros_like(uu)
    corner = np.zeros_like(uu)
    for g in bounds:
        d = np.abs(uu - g) * half
        gaps = np.maximum(gaps, np.exp(-(d / (0.005 * W + 0.45)) ** 2))
        corner = np.maximum(corner, np.clip(1.0 - d / (0.035 * W + 1.0), 0, 1) ** 2)
    tooth_tex = 1.0 - TOOTH_GAP_DARKEN * gaps
    up_y = up_y - corner * 0.018 * W - 0.03 * W * np.clip(np.abs(uu), 0, 1) ** 2
    soft = 0.8 + 0.004 * W  # anti-aliased edge width in px
    in_arch = np.clip((1.0 - np.abs(uu)) * half / soft, 0, 1)
    # Through lips parted by a pixel or two the teeth would only show as a speckled line; the
    # opening reads as a dark seam instead, and the teeth fade in as it grows.
    gap = float((rig.landmarks[14, :2] - rig.landmarks[13, :2]) @ _mouth_down(rig.landmarks))
    in_arch = in_arch * float(np.clip((gap - THIN_OPENING_PX) / (TEETH_RAMP * W + 1.5), 0.0, 1.0))
    lower_a = np.nan_to_num(np.clip((gy - lo_y) / soft + 0.5, 0, 1)) * in_arch
    lower_a *= np.nan_to_num(np.clip((lo_y + 0.06 * W - gy) / soft, 0, 1))
    lower_col = look.teeth_rgb[None, None] * (LOWER_TEETH_SHADE * side_shade * tooth_tex)[..., None]
    layer = _over(layer, lower_col, lower_a[..., None])
    upper_a = np.nan_to_num(np.clip((up_y - gy) / soft + 0.5, 0, 1)) * in_arch
    # Shadow of the upper lip on the teeth: darker near the lip.
    lip_dist = np.clip(dist / (0.05 * W + 1e-6), 0, 1)
    upper_col = look.teeth_rgb[None, None] * (side_shade * tooth_tex * (1.0 - LIP_SHADOW * (1.0 - lip_dist)))[..., None]
    layer = _over(layer, upper_col, upper_a[..., None])

    # Soften the painted parts to the photo's sharpness.
    layer = cv2.GaussianBlur(layer.astype(np.float32), (0, 0), 0.5 + 0.004 * W)

    # A portrait that shows its own teeth: move the real ones rigidly and keep them on top.
    if look.has_open_mouth and look.src_upper_mask is not None and look.src_lower_mask is not None:
        for shift, m in ((rig.skull_shift, look.src_upper_mask), (rig.jaw_shift, look.src_lower_mask)):
            mx = gx - float(shift[0])
            my = gy - float(shift[1])
            a = cv2.remap(m, mx, my, cv2.INTER_LINEAR, borderValue=(0.0,))
            if a.max() <= 0:
                continue
            col = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            a = cv2.erode(a, np.ones((2, 2), np.uint8)) if a.shape[0] > 4 else a
            layer = _over(layer, col, a[..., None])

    region = out[y0:y1, x0:x1].astype(np.float32)
    a = mask[..., None]
    out[y0:y1, x0:x1] = np.clip(region * (1 - a) + layer * a + 0.5, 0, 255).astype(np.uint8)


def _mouth_down(landmarks: np.ndarray) -> np.ndarray:
    """Unit vector from the upper to the lower lip, square to the line through the mouth corners."""
    across = landmarks[291, :2] - landmarks[61, :2]
    down = np.array([-across[1], across[0]]) / (np.linalg.norm(across) + 1e-9)
    return down if down[1] > 0 else -down


def _over(base: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return base * (1.0 - alpha) + top * alpha


def seal_closed_lips(out: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, rig: RigOutput,
                     look: MouthAppearance) -> None:
    """Where lips close over a portrait's open mouth, hide the squeezed teeth between them.

    The warp squeezes the portrait's own mouth opening into a thin strip when the lips
    close; whatever of it falls outside the new opening would show as a dark, jagged seam,
    so those pixels are inpainted from the lips around them.
    """
    if not look.has_open_mouth or look.src_upper_mask is None:
        return
    seal_opening(out, map_x, map_y, look.src_upper_mask + look.src_lower_mask, inner_lip_polygon(rig.landmarks))


def seal_opening(out: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, src_open: np.ndarray,
                 target: np.ndarray, margin: int = 6, closed: bool = False) -> None:
    """Inpaint, in place, the pixels of ``out`` that show the source opening ``src_open``
    (float mask, source pixels) outside the ``target`` polygon where the opening now is
    (``closed``: everywhere, the opening being shut).

    A closing mouth or eye squeezes what was inside it (teeth, iris, the white of the eye)
    into a strip one or two pixels tall; sampled that thin it reads as a jagged, speckled
    seam, so those pixels are filled from the lips or lids around them instead.
    """
    x0, y0 = np.floor(target.min(0)).astype(int) - margin
    x1, y1 = np.ceil(target.max(0)).astype(int) + margin + 1
    h, w = out.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    leak = cv2.remap(src_open, map_x[y0:y1, x0:x1], map_y[y0:y1, x0:x1], cv2.INTER_LINEAR, borderValue=(0.0,))
    opening = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if not closed:
        cv2.fillPoly(opening, [np.round((target - [x0, y0]) * 16).astype(np.int32)], (1,), lineType=cv2.LINE_8,
                     shift=4)
    bad = ((leak > (0.05 if closed else 0.2)) & (opening == 0)).astype(np.uint8)
    if bad.sum() == 0:
        return
    bad = cv2.dilate(bad, np.ones((2, 2), np.uint8))
    patch = np.ascontiguousarray(out[y0:y1, x0:x1])
    out[y0:y1, x0:x1] = cv2.inpaint(patch, bad, 2, cv2.INPAINT_TELEA)
