"""The "warp" engine: animates the portrait itself, frame by frame, on the CPU.

Per frame: the rig moves the mesh (mouth, eyes, brows, head pose) → control points (mesh,
a ring around the head that follows the head pose, a fixed border) → a piecewise-affine
inverse map computed at ≤ `work_size` px → upsampled and applied to the full-resolution
face region → the mouth opening is repainted → the region is pasted back into the
untouched full frame. Only a square region around the head is ever touched, and its border
is pinned, so background, shoulders and the rest of the picture stay bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ...analysis import face as fm
from ...contracts import Box, FaceAnalysis, FrameControls
from .mesh_warp import PiecewiseAffineWarp, SmoothWarp
from .mouth import measure_mouth, paint_mouth, seal_closed_lips, seal_opening
from .rig import LEFT_EYE_LOWER, LEFT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER, FaceRig, RigOutput

# Eye contours with their brows (mediapipe FACEMESH_*_EYE / *_EYEBROW sets, plus irises).
_RIGHT_EYE_AREA = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,
                   46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 468, 469, 470, 471, 472)
_LEFT_EYE_AREA = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
                  276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 473, 474, 475, 476, 477)
# mediapipe's FACEMESH_FACE_OVAL landmark set.
_FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251,
              284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)


# Eye openings as closed polygons (upper lid corner → corner, lower lid back).
_EYE_OPENINGS = [upper + lower[::-1][1:-1] for upper, lower in ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER),
                                                               (LEFT_EYE_UPPER, LEFT_EYE_LOWER))]
# Eyes closed further than this are sealed (see seal_opening); below it the opening is wide
# enough to show what is inside cleanly.
_SEAL_BLINK = 0.3
_CLOSED_BLINK = 0.85  # past this the lids meet: nothing of the eye shows between them


def draw_lash_line(image: np.ndarray, lid: np.ndarray, rgb: np.ndarray, alpha: float) -> None:
    """Blend a soft line of colour ``rgb`` along the lid polyline ``lid`` (pixels) into ``image``."""
    width = float(np.linalg.norm(lid[-1] - lid[0]))
    thickness = max(1, int(round(0.045 * width)))
    pad = thickness + 2
    x0, y0 = np.maximum(np.floor(lid.min(0)).astype(int) - pad, 0)
    x1, y1 = np.ceil(lid.max(0)).astype(int) + pad + 1
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.polylines(cover, [np.round((lid - [x0, y0]) * 16).astype(np.int32)], False, (255,), thickness,
                  lineType=cv2.LINE_AA, shift=4)
    a = (cover.astype(np.float32) / 255.0 * alpha)[..., None]
    patch = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (patch * (1 - a) + np.asarray(rgb, np.float32) * a + 0.5).astype(np.uint8)


@dataclass
class RenderedFrame:
    rgb: np.ndarray  # (H, W, 3) uint8, the full portrait frame
    landmarks: np.ndarray  # (478, 2) where the rig put the mesh, full-frame pixels
    box: Box  # face box in full-frame pixels (for identity scoring)


class WarpRenderer:
    REGION_SCALE = 2.5  # region side / face size: room for hair, ears, neck and head motion

    def __init__(self, portrait: np.ndarray, face: FaceAnalysis, work_size: int = 192) -> None:
        self.portrait = portrait
        H, W = portrait.shape[:2]
        lm = face.landmarks.astype(np.float64)
        x0, y0 = lm[:, :2].min(0)
        x1, y1 = lm[:, :2].max(0)
        side = self.REGION_SCALE * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.05 * side
        rx0, ry0 = int(max(0, math.floor(cx - side / 2))), int(max(0, math.floor(cy - side / 2)))
        rx1, ry1 = int(min(W, math.ceil(cx + side / 2))), int(min(H, math.ceil(cy + side / 2)))
        self.origin = np.array([rx0, ry0], np.float64)
        self.region_box = (rx0, ry0, rx1, ry1)
        self.region = np.ascontiguousarray(portrait[ry0:ry1, rx0:rx1])
        rh, rw = self.region.shape[:2]
        self.scale = min(1.0, work_size / max(rw, rh))
        self.work_size = (max(2, round(rw * self.scale)), max(2, round(rh * self.scale)))

        local = lm.copy()
        local[:, :2] -= self.origin
        self.rig = FaceRig(local)
        self.look = measure_mouth(self.region, local)
        # What lies inside the portrait's eye openings (iris, white), to seal it away in a blink.
        eyes_open = np.zeros((rh, rw), np.uint8)
        for idx in _EYE_OPENINGS:
            cv2.fillPoly(eyes_open, [np.round(local[idx, :2] * 16).astype(np.int32)], (1,), lineType=cv2.LINE_8,
                         shift=4)
        self._eyes_open = eyes_open.astype(np.float32)
        # Lash colour per eye (the darkest third of the upper lid margin): a shut eye shows it
        # as a line where the lids meet.
        self._lash_rgb = []
        for upper in (RIGHT_EYE_UPPER, LEFT_EYE_UPPER):
            xy = np.round(local[upper, :2]).astype(int)
            xy = np.clip(xy, 0, [rw - 1, rh - 1])
            margin = self.region[xy[:, 1], xy[:, 0]].astype(np.float32)
            darkest = margin[np.argsort(margin.sum(1))[: max(1, len(margin) // 3)]]
            self._lash_rgb.append(darkest.mean(0))

        # Control points beyond the mesh: a ring around the head that follows head pose,
        # and the region border, pinned.
        oval = local[list(_FACE_OVAL), :2]
        centre = oval.mean(0)
        rel = oval - centre
        ex, ey = self.rig.ex, self.rig.ey
        half_x = np.abs(rel @ ex).max()
        half_y = np.abs(rel @ ey).max()
        ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        ry = np.where(np.sin(ang) > 0, 1.7, 1.45) * half_y  # further below (neck) than above (hair)
        ring = centre + np.outer(np.cos(ang) * 1.38 * half_x, ex) + np.outer(np.sin(ang) * ry, ey)
        inset = 0.03 * max(rw, rh)
        keep = (ring[:, 0] > inset) & (ring[:, 0] < rw - inset) & (ring[:, 1] > inset) & (ring[:, 1] < rh - inset)
        self.ring = ring[keep]
        self.ring_z = float(np.median(local[list(_FACE_OVAL), 2]))
        n = 10
        t = np.linspace(0, 1, n, endpoint=False)
        bw, bh = rw - 1, rh - 1
        self.border = np.concatenate([
            np.c_[t * bw, np.zeros(n)], np.c_[np.full(n, bw), t * bh],
            np.c_[bw - t * bw, np.full(n, bh)], np.c_[np.zeros(n), bh - t * bh],
        ])
        src_points = np.concatenate([self.rig.src[:, :2], self.ring, self.border])
        # The whole region is warped on a coarse grid (the map is smooth there) and the
        # eyes and mouth, where it bends sharply, at full resolution.
        self.coarse = SmoothWarp(src_points * self.scale, self.work_size)
        self.fine = PiecewiseAffineWarp(src_points, (rw, rh), keep_below=len(lm))
        gy, gx = np.mgrid[0:rh, 0:rw].astype(np.float32)
        self._region_grid = (gx, gy)

    def _detail_boxes(self, src: np.ndarray, dst: np.ndarray, eyes: bool) -> list[tuple[int, int, int, int]]:
        """Boxes (region pixels) around the mouth, and the eyes while the lids move."""
        W = self.rig.mouth_w
        boxes = []
        areas: list[tuple[Sequence[int], float, float, float]] = [
            (fm.OUTER_UPPER + fm.OUTER_LOWER, 0.3 * W, 0.3 * W, 0.35 * W)]
        if eyes:
            areas += [(_RIGHT_EYE_AREA, 0.25 * W, 0.45 * W, 0.25 * W), (_LEFT_EYE_AREA, 0.25 * W, 0.45 * W, 0.25 * W)]
        for idx, mx, up, down in areas:
            pts = np.concatenate([src[list(idx)], dst[list(idx)]])
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            boxes.append((int(x0 - mx), int(y0 - up), int(np.ceil(x1 + mx)), int(np.ceil(y1 + down))))
        return boxes

    def posed_mesh(self, controls: FrameControls) -> tuple[np.ndarray, Box]:
        """Where one frame's controls put the mesh, and its box, in full-frame pixels (no pixels rendered)."""
        return self._full_frame_mesh(self.rig.pose(controls))

    def _full_frame_mesh(self, rig_out: RigOutput) -> tuple[np.ndarray, Box]:
        lm_full = rig_out.landmarks + self.origin.astype(np.float32)
        lo = np.floor(lm_full.min(0)).astype(int)
        hi = np.ceil(lm_full.max(0)).astype(int)
        return lm_full, (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))

    def render(self, controls: FrameControls) -> RenderedFrame:
        rig_out = self.rig.pose(controls)
        ring_shift = self.rig.head_point_shift(
            self.ring, controls.head_yaw, controls.head_pitch, controls.head_roll, self.ring_z) * 0.9
        dst = np.concatenate([rig_out.landmarks, self.ring + ring_shift, self.border])
        dx, dy = self.coarse.displacement(dst * self.scale)
        gx, gy = self._region_grid
        rh, rw = self.region.shape[:2]
        if self.scale < 1.0:
            # Upsample the displacement (not the map) so unmoved pixels stay exactly in place.
            dx = cv2.resize(dx / self.scale, (rw, rh), interpolation=cv2.INTER_LINEAR)
            dy = cv2.resize(dy / self.scale, (rw, rh), interpolation=cv2.INTER_LINEAR)
        map_x, map_y = gx + dx, gy + dy
        # Closing lids fold the map sharply; open eyes (gaze, brows) are smooth enough for the coarse grid.
        blink = controls.blink
        eyes = blink > 0.02
        for x0, y0, x1, y1 in self._detail_boxes(self.fine.src[:478], rig_out.landmarks, eyes):
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(rw, x1), min(rh, y1)
            if x1 > x0 and y1 > y0:
                self.fine.map_into(dst, map_x[y0:y1, x0:x1], map_y[y0:y1, x0:x1],
                                   np.zeros((y1 - y0, x1 - x0), bool), (x0, y0))
        frame = self.portrait.copy()
        rx0, ry0, rx1, ry1 = self.region_box
        out_region = frame[ry0:ry1, rx0:rx1]  # warped straight into the frame, repainted there
        cv2.remap(self.region, map_x, map_y, cv2.INTER_LINEAR, dst=out_region, borderMode=cv2.BORDER_REPLICATE)
        seal_closed_lips(out_region, map_x, map_y, rig_out, self.look)
        if blink > _SEAL_BLINK:
            for idx in _EYE_OPENINGS:
                seal_opening(out_region, map_x, map_y, self._eyes_open, rig_out.landmarks[idx], margin=4,
                             closed=blink > _CLOSED_BLINK)
        if blink > _CLOSED_BLINK:
            strength = min(1.0, (blink - _CLOSED_BLINK) / (1.0 - _CLOSED_BLINK))
            for upper, lash in zip((RIGHT_EYE_UPPER, LEFT_EYE_UPPER), self._lash_rgb):
                draw_lash_line(out_region, rig_out.landmarks[upper], lash, 0.8 * strength)
        paint_mouth(out_region, self.region, rig_out, self.look, self.rig.mouth_w, controls.tongue)
        lm_full, box = self._full_frame_mesh(rig_out)
        return RenderedFrame(frame, lm_full, box)
