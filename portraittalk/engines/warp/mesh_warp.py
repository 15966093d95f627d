"""Dense piecewise-affine warp driven by sparse control points.

The source points (face mesh + a ring around the head + a fixed border) are triangulated
once (Delaunay). For each frame every *target* triangle is rasterised, and each output pixel
gets the source position with the same barycentric coordinates in its source triangle: an
exact inverse map, with no iterative inversion and no seams (neighbouring triangles share
vertices, so the map is continuous). Pixels whose control points did not move map to
themselves exactly, so the picture outside the moving area is copied bit for bit.

`backward_map(dst, box)` computes the map inside a box only, so a caller can compute the
whole region coarsely and the parts with fine detail (eyes, mouth) at full resolution.

The per-pixel loops are compiled with numba (``cache=True``: compiled once per machine, then
loaded from the package's ``__pycache__``); they release the GIL, so a render can overlap
with other threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.spatial import Delaunay

from ...contracts import Box

# A pixel belongs to a target triangle when its centre lies at most this far (px) outside it:
# neighbours overlap on their shared edge, so no pixel between them is missed.
EDGE_GROWTH_PX = 0.01


class PiecewiseAffineWarp:
    def __init__(self, src_points: np.ndarray, size: tuple[int, int], keep_below: int | None = None) -> None:
        """src_points: (N, 2) in pixel coordinates of an image of `size` = (w, h).

        keep_below: use only triangles whose vertices all have an index below this (e.g. the
        face mesh without the outer control points); pixels they do not cover are left out.
        """
        self.src = np.ascontiguousarray(src_points, np.float64)
        self.size = size
        tri = Delaunay(self.src).simplices.astype(np.int32)  # (T, 3)
        self.tri = np.ascontiguousarray(tri[(tri < keep_below).all(1)] if keep_below is not None else tri)

    def backward_map(self, dst_points: np.ndarray, box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y) over `box` (default: the whole image) for cv2.remap: src warped onto dst."""
        map_x, map_y, _ = self.backward_map_covered(dst_points, box)
        return map_x, map_y

    def backward_map_covered(self, dst_points: np.ndarray,
                             box: Box | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like `backward_map`, plus a boolean mask of the pixels a (moved) triangle covers."""
        w, h = self.size
        bx0, by0, bx1, by1 = box if box is not None else (0, 0, w, h)
        bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(w, bx1), min(h, by1)
        bw, bh = max(0, bx1 - bx0), max(0, by1 - by0)
        map_x = np.broadcast_to(np.arange(bx0, bx0 + bw, dtype=np.float32), (bh, bw)).copy()
        map_y = np.broadcast_to(np.arange(by0, by0 + bh, dtype=np.float32)[:, None], (bh, bw)).copy()
        covered = np.zeros((bh, bw), bool)
        self.map_into(dst_points, map_x, map_y, covered, (bx0, by0))
        return map_x, map_y, covered

    def map_into(self, dst_points: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, covered: np.ndarray,
                 origin: tuple[int, int] = (0, 0)) -> None:
        """Overwrite, in place, the pixels of the maps that a moved target triangle covers
        (``origin``: the image pixel of the maps' [0, 0]) and mark them in ``covered``."""
        _fill_inverse_map(self.src, np.ascontiguousarray(dst_points, np.float64), self.tri,
                          float(origin[0]), float(origin[1]), map_x, map_y, covered, EDGE_GROWTH_PX)


@njit(cache=True, inline="always")
def _moved(src: np.ndarray, dst: np.ndarray, i: int) -> bool:
    return abs(dst[i, 0] - src[i, 0]) > 1e-3 or abs(dst[i, 1] - src[i, 1]) > 1e-3


@njit(cache=True, nogil=True)
def _fill_inverse_map(src: np.ndarray, dst: np.ndarray, tri: np.ndarray, x0: float, y0: float,
                      map_x: np.ndarray, map_y: np.ndarray, covered: np.ndarray, grow: float) -> None:
    h, w = map_x.shape
    for k in range(tri.shape[0]):
        i0, i1, i2 = tri[k, 0], tri[k, 1], tri[k, 2]
        if not (_moved(src, dst, i0) or _moved(src, dst, i1) or _moved(src, dst, i2)):
            continue
        ax, ay = dst[i0, 0] - x0, dst[i0, 1] - y0
        bx, by = dst[i1, 0] - x0, dst[i1, 1] - y0
        cx, cy = dst[i2, 0] - x0, dst[i2, 1] - y0
        lo_x, hi_x = int(np.floor(min(ax, bx, cx) - grow)), int(np.ceil(max(ax, bx, cx) + grow))
        lo_y, hi_y = int(np.floor(min(ay, by, cy) - grow)), int(np.ceil(max(ay, by, cy) + grow))
        if hi_x < 0 or hi_y < 0 or lo_x >= w or lo_y >= h:
            continue
        e1x, e1y, e2x, e2y = bx - ax, by - ay, cx - ax, cy - ay
        det = e1x * e2y - e1y * e2x
        if abs(det) <= 1e-9:
            continue
        # The affine map target → source: src = s0 + S @ inv(E) @ (p − d0).
        i00, i01, i10, i11 = e2y / det, -e2x / det, -e1y / det, e1x / det
        s0x, s0y = src[i0, 0], src[i0, 1]
        s1x, s1y = src[i1, 0] - s0x, src[i1, 1] - s0y
        s2x, s2y = src[i2, 0] - s0x, src[i2, 1] - s0y
        l00, l01 = s1x * i00 + s2x * i10, s1x * i01 + s2x * i11
        l10, l11 = s1y * i00 + s2y * i10, s1y * i01 + s2y * i11
        # A pixel taken a little outside a triangle squashed nearly flat (lips pressed together,
        # a lid shut) would be extrapolated far away: keep it within the source triangle's bounds.
        lo_sx, hi_sx = min(src[i0, 0], src[i1, 0], src[i2, 0]), max(src[i0, 0], src[i1, 0], src[i2, 0])
        lo_sy, hi_sy = min(src[i0, 1], src[i1, 1], src[i2, 1]), max(src[i0, 1], src[i1, 1], src[i2, 1])
        # Inward unit normals of the three edges; inside = within `grow` of every edge's inner side.
        sgn = 1.0 if det > 0 else -1.0
        n0x, n0y = -(by - ay) * sgn, (bx - ax) * sgn
        n1x, n1y = -(cy - by) * sgn, (cx - bx) * sgn
        n2x, n2y = -(ay - cy) * sgn, (ax - cx) * sgn
        len0, len1, len2 = np.hypot(n0x, n0y), np.hypot(n1x, n1y), np.hypot(n2x, n2y)
        n0x, n0y, n1x, n1y, n2x, n2y = n0x / len0, n0y / len0, n1x / len1, n1y / len1, n2x / len2, n2y / len2
        o0 = grow - n0x * ax - n0y * ay
        o1 = grow - n1x * bx - n1y * by
        o2 = grow - n2x * cx - n2y * cy
        for y in range(max(lo_y, 0), min(hi_y + 1, h)):
            for x in range(max(lo_x, 0), min(hi_x + 1, w)):
                if n0x * x + n0y * y + o0 >= 0 and n1x * x + n1y * y + o1 >= 0 and n2x * x + n2y * y + o2 >= 0:
                    qx, qy = x - ax, y - ay
                    map_x[y, x] = min(max(s0x + l00 * qx + l01 * qy, lo_sx), hi_sx)
                    map_y[y, x] = min(max(s0y + l10 * qx + l11 * qy, lo_sy), hi_sy)
                    covered[y, x] = True


class SmoothWarp:
    """Approximate inverse of the same piecewise-affine warp, for where it is smooth.

    Every grid pixel's barycentric coordinates in the *source* triangulation are computed
    once, so a frame's forward displacement field D is one weighted gather; the inverse map
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
        # Three control points and their weights per pixel (zero weights outside the mesh).
        self.weights = np.where(inside[:, None], np.c_[b, 1 - b.sum(1)], 0.0).astype(np.float32)
        self.vertices = tri.simplices[np.where(inside, simplex, 0)].astype(np.int32)
        self._grid = (gx.astype(np.float32), gy.astype(np.float32))

    def displacement(self, dst_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy), each (h, w) float32: the inverse map minus the identity."""
        w, h = self.size
        d = np.ascontiguousarray(dst_points - self.src, np.float32)
        dx, dy = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
        _smooth_inverse(self.vertices, self.weights, d, self.ITERATIONS, dx, dy)
        return dx, dy

    def backward_map(self, dst_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = self.displacement(dst_points)
        return self._grid[0] + dx, self._grid[1] + dy


@njit(cache=True, nogil=True, fastmath=True)
def _smooth_inverse(vertices: np.ndarray, weights: np.ndarray, d: np.ndarray, iterations: int,
                    out_x: np.ndarray, out_y: np.ndarray) -> None:
    h, w = out_x.shape
    fx = np.empty((h, w), np.float32)  # the forward displacement D
    fy = np.empty((h, w), np.float32)
    for y in range(h):
        for x in range(w):
            p = y * w + x
            v0, v1, v2 = vertices[p, 0], vertices[p, 1], vertices[p, 2]
            w0, w1, w2 = weights[p, 0], weights[p, 1], weights[p, 2]
            fx[y, x] = w0 * d[v0, 0] + w1 * d[v1, 0] + w2 * d[v2, 0]
            fy[y, x] = w0 * d[v0, 1] + w1 * d[v1, 1] + w2 * d[v2, 1]
    bx, by = -fx, -fy
    nx, ny = np.empty_like(bx), np.empty_like(by)
    right, bottom = np.float32(w - 1), np.float32(h - 1)
    for _ in range(iterations):
        for y in range(h):
            for x in range(w):
                # D sampled bilinearly at y + B(y), edges replicated.
                px = min(max(np.float32(x) + bx[y, x], np.float32(0.0)), right)
                py = min(max(np.float32(y) + by[y, x], np.float32(0.0)), bottom)
                x0, y0 = min(int(px), w - 2), min(int(py), h - 2)
                ax, ay = px - x0, py - y0
                w00, w01, w10, w11 = (1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay
                nx[y, x] = -(fx[y0, x0] * w00 + fx[y0, x0 + 1] * w01 + fx[y0 + 1, x0] * w10 + fx[y0 + 1, x0 + 1] * w11)
                ny[y, x] = -(fy[y0, x0] * w00 + fy[y0, x0 + 1] * w01 + fy[y0 + 1, x0] * w10 + fy[y0 + 1, x0 + 1] * w11)
        bx, nx = nx, bx
        by, ny = ny, by
    out_x[:] = bx
    out_y[:] = by
