"""The dense warps behind the warp engine: exact inverse maps, and the smooth approximation of them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from portraittalk.analysis import face as fm
from portraittalk.engines.warp.mesh_warp import PiecewiseAffineWarp, SmoothWarp

from .conftest import EXAMPLES, load_rgb

SIZE = (96, 80)  # w, h


def _points(w: int = SIZE[0], h: int = SIZE[1]) -> np.ndarray:
    """A jittered grid of inner points plus the image border (fixed in every test)."""
    rng = np.random.default_rng(3)
    gx, gy = np.meshgrid(np.linspace(20, w - 21, 5), np.linspace(18, h - 19, 4))
    inner = np.c_[gx.ravel(), gy.ravel()] + rng.uniform(-3, 3, (gx.size, 2))
    t = np.linspace(0, 1, 8, endpoint=False)
    bw, bh = w - 1, h - 1
    border = np.concatenate([np.c_[t * bw, np.zeros(8)], np.c_[np.full(8, bw), t * bh],
                             np.c_[bw - t * bw, np.full(8, bh)], np.c_[np.zeros(8), bh - t * bh]])
    return np.concatenate([inner, border])


def _grid(w: int = SIZE[0], h: int = SIZE[1]) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def _inner_hull(points: np.ndarray, inset: int = 1, n_inner: int = 20) -> np.ndarray:
    """Pixels at least ``inset`` pixels inside the hull of the inner points."""
    mask = np.zeros(SIZE[::-1], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points[:n_inner]).astype(np.int32)), 1)
    return cv2.erode(mask, np.ones((2 * inset + 1, 2 * inset + 1), np.uint8)) > 0


def test_unmoved_points_map_every_pixel_to_itself():
    src = _points()
    gx, gy = _grid()
    for warp in (PiecewiseAffineWarp(src, SIZE), SmoothWarp(src, SIZE)):
        mx, my = warp.backward_map(src.copy())
        assert np.array_equal(mx, gx) and np.array_equal(my, gy)


def test_piecewise_map_is_the_exact_inverse_of_an_affine_move():
    src = _points()
    n = 20
    A = np.array([[1.06, 0.04], [-0.03, 0.95]])
    t = np.array([2.5, -1.5])
    centre = src[:n].mean(0)
    dst = src.copy()
    dst[:n] = (src[:n] - centre) @ A.T + centre + t
    mx, my = PiecewiseAffineWarp(src, SIZE).backward_map(dst)
    gx, gy = _grid()
    inside = _inner_hull(dst)
    # Where the moved inner triangles cover, the map is the inverse affine transform; pixels
    # rasterised on a triangle's edge are kept within that triangle's source bounds (a pixel or so off).
    p = np.c_[gx[inside], gy[inside]] - centre - t
    expect = p @ np.linalg.inv(A).T + centre
    err = np.hypot(mx[inside] - expect[:, 0], my[inside] - expect[:, 1])
    assert (err < 1e-3).mean() > 0.9 and err.max() < 1.5


def test_a_box_computes_the_same_map_as_the_whole_image():
    src = _points()
    dst = src.copy()
    dst[7] += [3.0, -2.0]
    warp = PiecewiseAffineWarp(src, SIZE)
    mx, my = warp.backward_map(dst)
    box = (30, 20, 70, 60)
    bx, by, covered = warp.backward_map_covered(dst, box)
    assert bx.shape == (40, 40)
    # The same map, up to which of two triangles claims a pixel on their shared edge.
    err = np.hypot(bx - mx[20:60, 30:70], by - my[20:60, 30:70])
    assert (err == 0).mean() > 0.99 and err.max() < 0.5
    # Only the triangles around the moved point are covered, and the point's new place is among them.
    x, y = np.round(dst[7]).astype(int)
    assert covered[y - 20, x - 30] and 0 < covered.mean() < 0.5


def test_keep_below_leaves_the_outer_triangles_out():
    src = _points()
    dst = src + [1.0, 0.0]  # everything moves, border included
    _, _, all_covered = PiecewiseAffineWarp(src, SIZE).backward_map_covered(dst)
    _, _, inner_covered = PiecewiseAffineWarp(src, SIZE, keep_below=20).backward_map_covered(dst)
    assert all_covered.mean() > 0.95
    assert not inner_covered[:5].any() and not inner_covered[:, :5].any()
    assert inner_covered.sum() < all_covered.sum()


def test_a_squashed_triangle_samples_only_inside_its_source():
    src = _points()
    dst = src.copy()
    dst[6, 1] = dst[1, 1] + 0.05  # fold a point almost onto its neighbour's row
    warp = PiecewiseAffineWarp(src, SIZE)
    mx, my, covered = warp.backward_map_covered(dst)
    assert np.isfinite(mx).all() and np.isfinite(my).all()
    lo, hi = src.min(0), src.max(0)
    assert (mx[covered] >= lo[0]).all() and (mx[covered] <= hi[0]).all()
    assert (my[covered] >= lo[1]).all() and (my[covered] <= hi[1]).all()


def test_smooth_warp_inverts_a_translation_and_agrees_with_the_exact_map_on_a_mild_bend():
    src = _points()
    gx, gy = _grid()
    n = 20
    shifted = src.copy()
    shifted[:n] += [2.0, 1.0]
    inside = _inner_hull(shifted, inset=3)
    sx, sy = SmoothWarp(src, SIZE).backward_map(shifted)
    np.testing.assert_allclose(sx[inside], gx[inside] - 2.0, atol=0.1)
    np.testing.assert_allclose(sy[inside], gy[inside] - 1.0, atol=0.1)

    bent = src.copy()
    bent[:n, 0] += 2.0 * np.sin(src[:n, 1] / 15.0)
    ex, ey = PiecewiseAffineWarp(src, SIZE).backward_map(bent)
    sx, sy = SmoothWarp(src, SIZE).backward_map(bent)
    err = np.hypot(sx - ex, sy - ey)
    assert err.max() < 0.75 and np.percentile(err, 99) < 0.1


def test_moving_the_mesh_moves_the_redetected_face_by_as_much(face_analyzer):
    rgb = load_rgb(EXAMPLES / "grace_hopper.jpg")
    face = face_analyzer.analyze(rgb)
    h, w = rgb.shape[:2]
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    src = np.concatenate([face.landmarks[:, :2], corners])
    dst = src.copy()
    dst[:-4] += [6.0, -4.0]
    mx, my = PiecewiseAffineWarp(src, (w, h)).backward_map(dst)
    out = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    before = face_analyzer.mesh_in_box(rgb, face.box)
    after = face_analyzer.mesh_in_box(out, face.box)
    assert before is not None and after is not None
    inner = [fm.NOSE_TIP, fm.MOUTH_LEFT, fm.MOUTH_RIGHT, fm.RIGHT_EYE_INNER, fm.LEFT_EYE_INNER]
    shift = np.median(after[inner, :2] - before[inner, :2], axis=0)
    np.testing.assert_allclose(shift, [6.0, -4.0], atol=1.0)


@pytest.mark.parametrize("size", [(64, 48), (200, 150)])
def test_map_shapes_follow_the_image_size(size):
    w, h = size
    src = _points(w, h)
    dst = src.copy()
    dst[0] += 1.0
    for warp in (PiecewiseAffineWarp(src, size), SmoothWarp(src, size)):
        mx, my = warp.backward_map(dst)
        assert mx.shape == my.shape == (h, w) and mx.dtype == np.float32
