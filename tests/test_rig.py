"""Face rig: each motion channel moves its own part of the face and nothing else.

Landmark-level claims use the rig on the mesh FaceAnalyzer finds on the portrait; pixel-level
claims render the portrait at rest and with one channel set, and size effects are measured on
the mesh re-detected on the rendered frame.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from portraittalk.analysis import face as fm
from portraittalk.contracts import FrameControls, MotionTrack
from portraittalk.engines.warp.renderer import WarpRenderer
from portraittalk.engines.warp.rig import (
    BROWS,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LEFT_IRIS,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    RIGHT_IRIS,
    FaceRig,
    head_rotation,
)

from .conftest import EXAMPLES, load_rgb

EYE_CONTOURS = RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER
IRISES = RIGHT_IRIS + LEFT_IRIS
LIPS = fm.OUTER_UPPER + fm.OUTER_LOWER + fm.INNER_UPPER + fm.INNER_LOWER
MOUTH_CHANNELS = {"jaw_open": 0.6, "lip_close": 1.0, "mouth_wide": 1.0, "lip_round": 1.0,
                  "lower_lip_tuck": 1.0, "upper_lip_raise": 1.0, "tongue": 1.0}
# Lip closure, the F/V tuck and the tongue act on an open mouth; the portrait's is closed.
NEEDS_OPEN_JAW = ("lip_close", "lower_lip_tuck", "tongue")


@pytest.fixture(scope="module")
def hopper(face_analyzer):
    rgb = load_rgb(EXAMPLES / "grace_hopper.jpg")
    face = face_analyzer.analyze(rgb)
    return rgb, face, WarpRenderer(rgb, face)


@pytest.fixture(scope="module")
def zones(hopper):
    """Boxes (x0, y0, x1, y1), full-frame pixels, around parts of the face the analyser found."""
    _, face, _ = hopper
    lm = face.landmarks[:, :2]
    face_h = float(lm[fm.CHIN, 1] - lm[fm.FOREHEAD, 1])
    face_w = float(face.box[2] - face.box[0])
    m = 0.05 * face_h

    def around(idx, margin):
        (x0, y0), (x1, y1) = lm[idx].min(0), lm[idx].max(0)
        return x0 - margin, y0 - margin, x1 + margin, y1 + margin

    eyes = around(EYE_CONTOURS + IRISES + BROWS, m)  # both eyes with their brows
    fx0, _, fx1, _ = face.box
    lower_face = (fx0 - 0.1 * face_w, lm[fm.NOSE_TIP, 1] - 0.1 * face_h,
                  fx1 + 0.1 * face_w, lm[fm.CHIN, 1] + 0.4 * face_h)  # mouth, jaw and chin
    return {"eyes": eyes, "eye_openings": around(EYE_CONTOURS + IRISES, m), "lower_face": lower_face,
            "mouth": around(fm.OUTER_UPPER + fm.OUTER_LOWER, 0.1 * face_h), "below_eyes": eyes[3]}


def _inside(box, ys, xs):
    x0, y0, x1, y1 = box
    return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)


def _changed(renderer, base: FrameControls, **channel):
    """Pixels (ys, xs) that one channel changes over ``base``, and by how much (max over RGB)."""
    a = renderer.render(base).rgb.astype(int)
    b = renderer.render(replace(base, **channel)).rgb.astype(int)
    d = np.abs(b - a).max(2)
    ys, xs = np.nonzero(d)
    return ys, xs, d[ys, xs]


def _moved(rig: FaceRig, **channel) -> np.ndarray:
    """Indices of the mesh points one channel moves (by more than a thousandth of a pixel)."""
    rest = rig.pose(FrameControls()).landmarks
    posed = rig.pose(FrameControls(**channel)).landmarks
    return np.flatnonzero(np.abs(posed - rest).max(1) > 1e-3)


# -- landmarks ---------------------------------------------------------------------------------------

def test_frame_controls_are_the_track_channels_and_rest_at_zero():
    track = MotionTrack.still(3, 25.0)
    track.mouth_wide[1] = 0.5
    assert track.frame(0) == FrameControls()
    assert track.frame(1) == FrameControls(mouth_wide=0.5)
    assert tuple(vars(FrameControls())) == MotionTrack.CHANNELS


def test_rest_pose_is_the_source_mesh(hopper):
    _, _, r = hopper
    out = r.rig.pose(FrameControls())
    np.testing.assert_array_equal(out.landmarks, r.rig.src[:, :2].astype(np.float32))
    np.testing.assert_allclose(out.jaw_shift, 0, atol=1e-9)
    np.testing.assert_allclose(out.skull_shift, 0, atol=1e-9)


@pytest.mark.parametrize("channel", sorted(MOUTH_CHANNELS))
def test_mouth_channels_move_no_eye_brow_or_iris_point(hopper, channel):
    _, _, r = hopper
    base = {"jaw_open": 0.5} if channel in NEEDS_OPEN_JAW else {}
    moved = set(_moved(r.rig, **{**base, channel: MOUTH_CHANNELS[channel]}))
    assert moved & set(LIPS), channel
    assert not moved & set(EYE_CONTOURS + IRISES + BROWS), channel


def test_smile_moves_the_corners_and_barely_the_eyes(hopper):
    _, _, r = hopper
    rest = r.rig.pose(FrameControls()).landmarks
    move = np.abs(r.rig.pose(FrameControls(smile=1.0)).landmarks - rest).max(1)
    # The cheeks rise and push the lower lids a little, as in a real smile.
    assert move[EYE_CONTOURS + IRISES + BROWS].max() < 0.1 * move[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT]].min()


@pytest.mark.parametrize("channel", ["blink", "eye_wide"])
def test_lid_channels_move_the_lids_and_not_the_mouth(hopper, channel):
    _, _, r = hopper
    moved = set(_moved(r.rig, **{channel: 1.0}))
    assert set(RIGHT_EYE_UPPER[1:-1] + LEFT_EYE_UPPER[1:-1]) <= moved
    assert not moved & set(LIPS)


def test_gaze_moves_the_irises_only(hopper):
    _, _, r = hopper
    for channel in ("gaze_x", "gaze_y"):
        assert set(_moved(r.rig, **{channel: 1.0})) == set(IRISES), channel
    rest = r.rig.pose(FrameControls()).landmarks
    right = r.rig.pose(FrameControls(gaze_x=1.0)).landmarks
    down = r.rig.pose(FrameControls(gaze_y=1.0)).landmarks
    assert (right[IRISES, 0] > rest[IRISES, 0]).all() and (down[IRISES, 1] > rest[IRISES, 1]).all()


def test_brow_raise_lifts_the_brows_and_leaves_lower_lids_and_mouth(hopper):
    _, _, r = hopper
    moved = set(_moved(r.rig, brow_raise=1.0))
    assert set(BROWS) <= moved
    assert not moved & set(LIPS + RIGHT_EYE_LOWER + LEFT_EYE_LOWER)
    up = r.rig.pose(FrameControls(brow_raise=1.0)).landmarks
    assert (up[BROWS, 1] < r.rig.src[BROWS, 1]).all()


def test_mouth_wide_spreads_and_narrows_the_mouth_and_eye_wide_leaves_it(hopper):
    _, _, r = hopper
    W = r.rig.mouth_w

    def width(**c):
        lm = r.rig.pose(FrameControls(**c)).landmarks
        return float(np.linalg.norm(lm[fm.MOUTH_RIGHT] - lm[fm.MOUTH_LEFT]))

    rest = width()
    assert width(mouth_wide=1.0) > rest + 0.05 * W
    assert width(mouth_wide=-1.0) < rest - 0.04 * W
    posed = r.rig.pose(FrameControls(eye_wide=1.0)).landmarks
    np.testing.assert_array_equal(posed[LIPS], r.rig.pose(FrameControls()).landmarks[LIPS])


def test_blink_shuts_the_eyes_and_eye_wide_opens_them(hopper):
    _, _, r = hopper

    def opening(**c):
        lm = r.rig.pose(FrameControls(**c)).landmarks
        return np.mean([lm[fm.RIGHT_EYE_BOTTOM, 1] - lm[fm.RIGHT_EYE_TOP, 1],
                        lm[fm.LEFT_EYE_BOTTOM, 1] - lm[fm.LEFT_EYE_TOP, 1]])

    rest = opening()
    assert opening(blink=1.0) < 0.15 * rest
    assert 1.2 * rest < opening(eye_wide=1.0) < 1.5 * rest
    assert opening(blink=1.0, eye_wide=1.0) < 0.15 * rest  # a blink still closes wide eyes


def test_jaw_drops_the_lower_lip_and_teeth_but_not_the_skull(hopper):
    _, _, r = hopper
    W = r.rig.mouth_w
    out = r.rig.pose(FrameControls(jaw_open=1.0))
    drop = out.landmarks[fm.LOWER_LIP_INNER, 1] - r.rig.src[fm.LOWER_LIP_INNER, 1]
    assert 0.3 * W < drop < 0.5 * W  # MotionTrack: the lower lip drops ~0.42 mouth widths
    assert 0.2 * W < out.jaw_shift[1] <= drop  # the lower teeth ride on the jaw
    np.testing.assert_allclose(out.skull_shift, 0, atol=1e-9)
    forehead = out.landmarks[fm.FOREHEAD] - r.rig.src[fm.FOREHEAD, :2]
    assert np.abs(forehead).max() < 1e-3


def test_head_rotation_is_a_rotation_and_turns_the_nose_most(hopper):
    _, _, r = hopper
    R = head_rotation(math.radians(4), math.radians(-3), math.radians(2), r.rig.ex, r.rig.ey)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.isclose(np.linalg.det(R), 1.0)
    np.testing.assert_allclose(head_rotation(0, 0, 0, r.rig.ex, r.rig.ey), np.eye(3), atol=1e-12)
    turned = r.rig.pose(FrameControls(head_yaw=5.0)).landmarks - r.rig.src[:, :2]
    # The nose sticks out of the face, so a turn moves it further than the cheek edges.
    assert abs(turned[fm.NOSE_TIP, 0]) > abs(turned[[fm.FACE_EDGE_LEFT, fm.FACE_EDGE_RIGHT], 0]).max()
    assert np.abs(r.rig.head_point_shift(r.rig.src[:5, :2], 0, 0, 0, 0.0)).max() < 1e-6


# -- pixels: every channel changes the part of the picture it names, and no other ---------------------

@pytest.mark.parametrize("channel", sorted(MOUTH_CHANNELS) + ["mouth_wide_narrow"])
def test_mouth_channels_change_the_lower_face_and_never_the_eyes(hopper, zones, channel):
    _, _, r = hopper
    name, value = ("mouth_wide", -1.0) if channel == "mouth_wide_narrow" else (channel, MOUTH_CHANNELS[channel])
    base = FrameControls(jaw_open=0.5) if name in NEEDS_OPEN_JAW else FrameControls()
    ys, xs, d = _changed(r, base, **{name: value})
    assert _inside(zones["mouth"], ys, xs).sum() > 100, "the mouth must change"
    assert (ys > zones["below_eyes"]).all(), "nothing at or above the eyes may change"
    strong = d > 8
    assert _inside(zones["lower_face"], ys[strong], xs[strong]).all()


@pytest.mark.parametrize("channel", ["blink", "eye_wide"])
def test_lid_channels_change_the_eyes_and_never_the_mouth(hopper, zones, channel):
    _, _, r = hopper
    ys, xs, _ = _changed(r, FrameControls(), **{channel: 1.0})
    assert len(ys) > 500
    assert _inside(zones["eyes"], ys, xs).all()


@pytest.mark.parametrize("channel", ["gaze_x", "gaze_y"])
def test_gaze_changes_the_eye_openings_only(hopper, zones, channel):
    _, face, r = hopper
    ys, xs, _ = _changed(r, FrameControls(), **{channel: 1.0})
    assert _inside(zones["eye_openings"], ys, xs).all()
    middle = face.landmarks[fm.NOSE_TIP, 0]
    assert (xs < middle).sum() > 100 and (xs > middle).sum() > 100, "both eyes look"


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_brow_raise_changes_the_brows_and_nothing_below_the_eyes(hopper, zones, value):
    _, face, r = hopper
    ys, xs, d = _changed(r, FrameControls(), brow_raise=value)
    brows = face.landmarks[BROWS, :2]
    (bx0, by0), (bx1, by1) = brows.min(0), brows.max(0)
    assert (_inside((bx0, by0, bx1, by1), ys, xs) & (d > 8)).sum() > 500, "the brows must move"
    assert (ys <= zones["below_eyes"]).all()


def test_smile_changes_the_lower_face_and_barely_above_the_eyes(hopper, zones):
    _, face, r = hopper
    ys, xs, d = _changed(r, FrameControls(), smile=1.0)
    assert _inside(zones["mouth"], ys, xs).sum() > 1000
    eyes = face.landmarks[EYE_CONTOURS, 1]
    assert d[ys > eyes.max()].sum() > 0.9 * d.sum()
    assert d[ys < eyes.min()].sum() < 0.02 * d.sum()


@pytest.mark.parametrize("channel", ["head_yaw", "head_pitch", "head_roll"])
def test_head_pose_moves_the_whole_head_inside_the_animated_region(hopper, zones, channel):
    _, _, r = hopper
    ys, xs, _ = _changed(r, FrameControls(), **{channel: 4.0})
    assert _inside(zones["eyes"], ys, xs).sum() > 1000 and _inside(zones["mouth"], ys, xs).sum() > 1000
    assert _inside(r.region_box, ys, xs).all()


def test_mouth_wide_changes_the_mouth_width_and_eye_wide_leaves_the_mouth(hopper, zones, face_analyzer):
    _, face, r = hopper

    def width(frame):
        lm = face_analyzer.mesh_in_box(frame, face.box)
        assert lm is not None
        return float(np.linalg.norm(lm[fm.MOUTH_RIGHT, :2] - lm[fm.MOUTH_LEFT, :2]))

    rest = width(r.render(FrameControls()).rgb)
    spread = width(r.render(FrameControls(mouth_wide=1.0)).rgb)
    narrowed = width(r.render(FrameControls(mouth_wide=-1.0)).rgb)
    assert spread > rest * 1.03 and narrowed < rest * 0.97, (narrowed, rest, spread)

    ys, xs, _ = _changed(r, FrameControls(), eye_wide=1.0)
    assert not _inside(zones["lower_face"], ys, xs).any(), "wide eyes must not touch the mouth"
