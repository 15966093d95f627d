"""Dense piecewise-affine warp driven by sparse control points.

The source points (face mesh + a ring around the head + a fixed border) are triangulated
once (Delaunay). For each frame the *target* triangles are rasterised into a triangle-index
image, and every output pixel gets the source position with the same barycentric
coordinates in its source triangle: an exact inverse map, with no iterative inversion and
no seams (neighbouring triangles share vertices, so the map is continuous). Pixels whose
control points did not move map to themselves exactly, so the picture outside the moving
area is copied bit for bit.

`backward_map(dst, box)` computes the map inside a box only, so a caller can compute the
whole region coarsely and the parts with fine detail (eyes, mouth) at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

from ...contracts import Box


class PiecewiseAffineWarp:
    def __init__(self, src_points: np.ndarray, size: tuple[int, int], keep_below: int | None = None) -> None:
        """src_points: (N, 2) in pixel coordinates of an image of `size` = (w, h).

        keep_below: use only triangles whose vertices all have an index below this (e.g. the
        face mesh without the outer control points); pixels they do not cover are left out.
        """
        self.src = src_points.astype(np.float64)
        self.size = size
        tri = Delaunay(self.src).simplices.astype(np.int32)  # (T, 3)
        self.tri = tri[(tri < keep_below).all(1)] if keep_below is not None else tri

    def backward_map(self, dst_points: np.ndarray, box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y) over `box` (default: the whole image) for cv2.remap: src warped onto dst."""
        map_x, map_y, _ = self.backward_map_covered(dst_points, box)
        return map_x, map_y

    def backward_map_covered(self, dst_points: np.ndarray, box: Box | None = None):
        """Like `backward_map`, plus a boolean mask of the pixels a (moved) triangle covers."""
        w, h = self.size
        bx0, by0, bx1, by1 = box if box is not None else (0, 0, w, h)
        bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(w, bx1), min(h, by1)
        gx, gy = np.meshgrid(np.arange(bx0, bx1, dtype=np.float32), np.arange(by0, by1, dtype=np.float32))
        map_x, map_y = gx.copy(), gy.copy()
        dst = dst_points.astype(np.float64)
        moved = np.abs(dst - self.src).max(1) > 1e-3
        tris = self.tri[moved[self.tri].any(1)]
        covered = np.zeros(map_x.shape, bool)
        if len(tris) == 0 or bx1 <= bx0 or by1 <= by0:
            return map_x, map_y, covered
        d = dst[tris]  # (T, 3, 2)
        lo, hi = d.min(1), d.max(1)
        inside = (hi[:, 0] >= bx0) & (lo[:, 0] < bx1) & (hi[:, 1] >= by0) & (lo[:, 1] < by1)
        tris, d = tris[inside], d[inside]
        s = self.src[tris]
        # Per-triangle affine dst → src in closed form:  src = s0 + S @ inv(E) @ (p − d0).
        e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        ok = np.abs(det) > 1e-9
        d, s, e1, e2, det = d[ok], s[ok], e1[ok], e2[ok], det[ok]
        if len(d) == 0:
            return map_x, map_y, covered
        inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / det[:, None, None]
        S = np.stack([s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]], 2)  # (T, 2, 2), columns = src edges
        L = S @ inv
        t = s[:, 0] - np.einsum("tij,tj->ti", L, d[:, 0])
        coef = np.concatenate([L.reshape(-1, 4), t], 1).astype(np.float32)  # a00 a01 a10 a11 tx ty

        # Rasterise target triangles (index + 1; 0 = not covered) into the box.
        ids = np.zeros((by1 - by0, bx1 - bx0), np.int32)
        pts = np.round((d - [bx0, by0]) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
        for k in range(len(pts)):
            cv2.fillConvexPoly(ids, pts[k], (k + 1,), lineType=cv2.LINE_8, shift=4)
        sel = ids > 0
        tri_of = ids[sel] - 1
        c = coef[tri_of]
        px, py = gx[sel], gy[sel]
        # Rasterising takes pixels a little outside each triangle; for a triangle squashed
        # nearly flat (lips pressed together, a lid shut) the affine map extrapolates them far
        # away, so every pixel is kept within its source triangle's bounds.
        s_lo, s_hi = s.min(1).astype(np.float32), s.max(1).astype(np.float32)
        map_x[sel] = np.clip(c[:, 0] * px + c[:, 1] * py + c[:, 4], s_lo[tri_of, 0], s_hi[tri_of, 0])
        map_y[sel] = np.clip(c[:, 2] * px + c[:, 3] * py + c[:, 5], s_lo[tri_of, 1], s_hi[tri_of, 1])
        return map_x, map_y, sel


class SmoothWarp:
    """Approximate inverse of the same piecewise-affine warp, for where it is smooth.

    Every grid pixel's barycentric coordinates in the *source* triangulation are computed
    once, so a frame's forward displacement field is one weighted gather; the inverse map
    comes from a few fixed-point steps  B(y) = −D(y + B(y)),  which converge wherever the
    warp stretches by less than 2× — everywhere except across the parting lips and closing
    eyelids, which the caller maps exactly with `PiecewiseAffineWarp` instead.
    """

    ITERATIONS = 4

    def __init__(self, src_points: np.ndarray, size: tuple[int, int]) -> None:
        self.src = src_points.astype(np.float64)
        self.size = size
        w, h = size
        tri = Delaunay(self.src)
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        pts = np.c_[gx.ravel(), gy.ravel()]
        simplex = tri.find_simplex(pts)
        inside = simplex >= 0
        T = tri.transform[np.where(inside, simplex, 0)]
        b = np.einsum("nij,nj->ni", T[:, :2], pts - T[:, 2])
        weights = np.where(inside[:, None], np.c_[b, 1 - b.sum(1)], 0.0)
        vertices = tri.simplices[np.where(inside, simplex, 0)]
        rows = np.repeat(np.arange(len(pts)), 3)
        # Pixels × control points, three non-zeros a row: the field is one sparse product.
        self.weights = csr_matrix((weights.ravel(), (rows, vertices.ravel())), shape=(len(pts), len(self.src)),
                                  dtype=np.float32)
        self.grid = np.dstack([gx, gy]).astype(np.float32)

    def backward_map(self, dst_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.size
        d = (dst_points - self.src).astype(np.float32)
        D = np.asarray(self.weights @ d, np.float32).reshape(h, w, 2)
        B: np.ndarray = -D
        for _ in range(self.ITERATIONS):
            at = self.grid + B
            B = -cv2.remap(D, at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        m = self.grid + B
        return np.ascontiguousarray(m[..., 0]), np.ascontiguousarray(m[..., 1])
