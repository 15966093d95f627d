"""The mouth painter: colours measured from the photo, the opening painted and nothing else, seals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from portraittalk.analysis import face as fm
from portraittalk.analysis.face import mouth_gap_ratio
from portraittalk.contracts import FrameControls
from portraittalk.engines.warp.mouth import inner_lip_polygon, measure_mouth, paint_mouth, seal_opening
from portraittalk.engines.warp.renderer import WarpRenderer

from .conftest import EXAMPLES, load_rgb


def _luma(rgb) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ [0.299, 0.587, 0.114]


@pytest.fixture(scope="module")
def portraits(face_analyzer):
    """name → (rgb, face, renderer): Grace Hopper with closed lips, Eileen Collins showing teeth."""
    out = {}
    for name in ("grace_hopper.jpg", "astronaut_eileen_collins.jpg"):
        rgb = load_rgb(EXAMPLES / name)
        face = face_analyzer.analyze(rgb)
        out[name] = rgb, face, WarpRenderer(rgb, face)
    return out


def _polygon_mask(shape, poly: np.ndarray, grow: int) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


def test_inner_lip_polygon_goes_round_the_opening_once():
    lm = np.zeros((478, 2))
    lm[fm.INNER_UPPER] = np.c_[np.arange(11), np.zeros(11)]
    lm[fm.INNER_LOWER] = np.c_[np.arange(11), np.full(11, 3.0)]
    lm[[fm.INNER_UPPER[0], fm.INNER_UPPER[-1]]] = [[0, 1.5], [10, 1.5]]  # the corners both lips share
    poly = inner_lip_polygon(lm)
    assert poly.shape == (20, 2)  # 11 upper points, 9 lower ones without the shared corners
    # 8 × 3 between the inner points plus a 1 × 3 triangle at each corner, traversed once.
    assert cv2.contourArea(poly.astype(np.float32)) == pytest.approx(27.0)


def test_closed_lips_have_no_opening_and_colours_follow_the_skin(portraits):
    rgb, face, _ = portraits["grace_hopper.jpg"]
    look = measure_mouth(rgb, face.landmarks)
    assert not look.has_open_mouth and look.src_upper_mask is None
    assert _luma(look.teeth_rgb) > _luma(look.tongue_rgb) > _luma(look.cavity_rgb)
    # A warmer photo gets warmer teeth, not the same blue-white ones.
    warm = np.clip(rgb * [1.12, 1.0, 0.88], 0, 255).astype(np.uint8)
    warm_look = measure_mouth(warm, face.landmarks)
    ratio = lambda c: c[0] / c[2]
    assert ratio(warm_look.teeth_rgb) > ratio(look.teeth_rgb) + 0.02


def test_an_open_mouth_is_split_into_upper_and_lower_teeth(portraits):
    rgb, face, _ = portraits["astronaut_eileen_collins.jpg"]
    look = measure_mouth(rgb, face.landmarks)
    assert look.has_open_mouth
    upper, lower = look.src_upper_mask > 0, look.src_lower_mask > 0
    assert upper.sum() > 20 and lower.sum() > 20 and not (upper & lower).any()
    assert np.nonzero(upper)[0].mean() < np.nonzero(lower)[0].mean()
    inside = _polygon_mask(rgb.shape, inner_lip_polygon(face.landmarks), 1)
    assert inside[upper | lower].all()
    # The teeth colour is the photo's own: as bright as the brightest part of the opening.
    assert _luma(look.teeth_rgb) >= np.percentile(_luma(rgb[upper | lower]), 60)


def test_a_mouth_at_rest_is_not_repainted(portraits):
    _, _, r = portraits["grace_hopper.jpg"]
    out = r.region.copy()
    paint_mouth(out, r.region, r.rig.pose(FrameControls()), r.look, r.rig.mouth_w)
    assert np.array_equal(out, r.region)


def test_the_opening_is_painted_dark_with_teeth_and_nothing_around_it_changes(portraits):
    _, _, r = portraits["grace_hopper.jpg"]
    rig_out = r.rig.pose(FrameControls(jaw_open=0.5))
    out = r.region.copy()
    paint_mouth(out, r.region, rig_out, r.look, r.rig.mouth_w)
    changed = np.abs(out.astype(int) - r.region).max(2) > 0
    opening = _polygon_mask(out.shape, inner_lip_polygon(rig_out.landmarks), 1)
    assert changed.sum() > 100 and not (changed & ~opening).any()
    luma = _luma(out)
    top, bottom = rig_out.landmarks[fm.UPPER_LIP_INNER], rig_out.landmarks[fm.LOWER_LIP_INNER]
    column = luma[int(np.ceil(top[1])):int(bottom[1]), int(round(top[0]))]
    third = max(1, len(column) // 3)
    assert column[:third].max() > 1.5 * column[third:].min()  # upper teeth above a dark cavity
    assert column.min() < 0.5 * _luma(r.look.teeth_rgb)


def test_the_tongue_rises_inside_the_opening_only(portraits):
    _, _, r = portraits["grace_hopper.jpg"]
    rig_out = r.rig.pose(FrameControls(jaw_open=0.5))
    low, high = r.region.copy(), r.region.copy()
    paint_mouth(low, r.region, rig_out, r.look, r.rig.mouth_w, tongue=0.0)
    paint_mouth(high, r.region, rig_out, r.look, r.rig.mouth_w, tongue=1.0)
    diff = np.abs(high.astype(int) - low).max(2) > 2
    assert diff.sum() > 20
    assert not (diff & ~_polygon_mask(low.shape, inner_lip_polygon(rig_out.landmarks), 1)).any()
    # Where the pictures differ, the raised tongue is what shows.
    to_tongue = lambda img: np.linalg.norm(img[diff].astype(float) - r.look.tongue_rgb, axis=1).mean()
    assert to_tongue(high) < to_tongue(low)


def test_a_squeezed_opening_is_sealed_with_the_skin_around_it():
    skin = np.array([190, 140, 120], np.uint8)
    img = np.tile(skin, (40, 60, 1))
    img[19:21, 10:50] = 250  # what a closing mouth squeezes into a thin bright strip
    opening = np.zeros((40, 60), np.float32)
    opening[19:21, 10:50] = 1.0
    gy, gx = np.mgrid[0:40, 0:60].astype(np.float32)
    target = np.array([[10, 19], [49, 19], [49, 20], [10, 20]], np.float64)

    still_open = img.copy()
    seal_opening(still_open, gx, gy, opening, target)  # the opening is where it was: kept
    assert np.array_equal(still_open, img)

    shut = img.copy()
    seal_opening(shut, gx, gy, opening, target, closed=True)
    assert np.abs(shut[19:21, 12:48].astype(int) - skin).max() < 12
    assert np.array_equal(shut[:15], img[:15])


def test_lips_closing_over_teeth_seal_the_squeezed_teeth_away(face_analyzer, portraits, monkeypatch):
    from portraittalk.engines.warp import renderer

    _, face, r = portraits["astronaut_eileen_collins.jpg"]
    shut = r.render(FrameControls(lip_close=1.0))
    lm = face_analyzer.mesh_in_box(shut.rgb, face.box)
    assert lm is not None and mouth_gap_ratio(lm) < 0.06
    monkeypatch.setattr(renderer, "seal_closed_lips", lambda *args: None)
    unsealed = r.render(FrameControls(lip_close=1.0)).rgb
    ys, xs = np.nonzero(np.abs(shut.rgb.astype(int) - unsealed).max(2))
    assert len(ys) > 20
    (x0, y0), (x1, y1) = inner_lip_polygon(shut.landmarks).min(0), inner_lip_polygon(shut.landmarks).max(0)
    assert (xs >= x0 - 3).all() and (xs <= x1 + 3).all() and (ys >= y0 - 3).all() and (ys <= y1 + 3).all()
    # The speckled strip of squeezed teeth becomes smooth lip between the closed lips.
    assert _luma(shut.rgb[ys, xs]).std() < 0.9 * _luma(unsealed[ys, xs]).std()
