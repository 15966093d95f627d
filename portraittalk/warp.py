"""Dense piecewise-affine warp driven by sparse control points.

The source points (face mesh + a ring around the head + a fixed border) are triangulated
once (Delaunay). For each frame the *target* triangles are rasterised into a triangle-index
image, and every output pixel gets the source position with the same barycentric
coordinates in its source triangle: an exact inverse map, with no iterative inversion and
no seams (neighbouring triangles share vertices, so the map is continuous). Pixels whose
control points did not move map to themselves exactly, so the picture outside the moving
area is copied bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay


class PiecewiseAffineWarp:
    def __init__(self, src_points: np.ndarray, size: tuple[int, int]) -> None:
        """src_points: (N, 2) in pixel coordinates of an image of `size` = (w, h)."""
        self.src = src_points.astype(np.float64)
        self.size = size
        self.tri = Delaunay(self.src).simplices.astype(np.int32)  # (T, 3)
        w, h = size
        self._grid_x, self._grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def backward_map(self, dst_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps (map_x, map_y) for cv2.remap so that the output shows src warped onto dst."""
        dst = dst_points.astype(np.float64)
        w, h = self.size
        map_x, map_y = self._grid_x.copy(), self._grid_y.copy()
        moved = np.abs(dst - self.src).max(1) > 1e-3
        active = moved[self.tri].any(1)
        if not active.any():
            return map_x, map_y
        tris = self.tri[active]
        # Per-triangle affine dst → src:  src = A @ [x, y, 1].
        d = dst[tris]  # (T, 3, 2)
        s = self.src[tris]
        D = np.concatenate([d, np.ones((len(tris), 3, 1))], axis=2)  # (T, 3, 3)
        det = np.linalg.det(D)
        ok = np.abs(det) > 1e-9
        tris, D, s, d = tris[ok], D[ok], s[ok], d[ok]
        A = np.linalg.solve(D, s).transpose(0, 2, 1)  # (T, 2, 3)

        # Rasterise target triangles (index + 1; 0 = untouched) inside their bounding box.
        lo = np.floor(d.reshape(-1, 2).min(0)).astype(int) - 1
        hi = np.ceil(d.reshape(-1, 2).max(0)).astype(int) + 2
        x0, y0 = max(0, lo[0]), max(0, lo[1])
        x1, y1 = min(w, hi[0]), min(h, hi[1])
        if x1 <= x0 or y1 <= y0:
            return map_x, map_y
        ids = np.zeros((y1 - y0, x1 - x0), np.int32)
        pts = np.round((d - [x0, y0]) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
        for k in range(len(tris)):
            cv2.fillConvexPoly(ids, pts[k], k + 1, lineType=cv2.LINE_8, shift=4)
        sel = ids > 0
        k = ids[sel] - 1
        gx = self._grid_x[y0:y1, x0:x1][sel]
        gy = self._grid_y[y0:y1, x0:x1][sel]
        a = A[k]
        sx = a[:, 0, 0] * gx + a[:, 0, 1] * gy + a[:, 0, 2]
        sy = a[:, 1, 0] * gx + a[:, 1, 1] * gy + a[:, 1, 2]
        sub_x = map_x[y0:y1, x0:x1]
        sub_y = map_y[y0:y1, x0:x1]
        sub_x[sel] = sx
        sub_y[sel] = sy
        return map_x, map_y
