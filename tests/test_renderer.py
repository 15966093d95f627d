"""Warp renderer geometry, measured by re-detecting the face mesh on rendered frames."""

from __future__ import annotations

import numpy as np
import pytest

from portraittalk.analysis.face import eye_open_ratio, mouth_gap_ratio
from portraittalk.contracts import FrameControls
from portraittalk.engines.warp.renderer import WarpRenderer

from .conftest import EXAMPLES, load_rgb, sample


@pytest.fixture(scope="module")
def hopper(face_analyzer):
    rgb = load_rgb(EXAMPLES / "grace_hopper.jpg")
    face = face_analyzer.analyze(rgb)
    return rgb, face, WarpRenderer(rgb, face)


def _remesh(face_analyzer, frame, box):
    lm = face_analyzer.mesh_in_box(frame, box)
    assert lm is not None, "the face must still be found on the rendered frame"
    return lm


def test_rest_pose_is_the_portrait_bit_for_bit(hopper):
    rgb, _, r = hopper
    out = r.render(FrameControls()).rgb
    assert out.shape == rgb.shape and np.array_equal(out, rgb)


def test_only_the_head_region_changes(hopper):
    rgb, _, r = hopper
    out = r.render(FrameControls(jaw_open=0.6, head_yaw=3, head_pitch=2, blink=1)).rgb
    x0, y0, x1, y1 = r.region_box
    outside = np.ones(rgb.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], rgb[outside])
    # The border of the region is pinned too: no seam where it is pasted back.
    assert np.abs(out[y0:y1, x0].astype(int) - rgb[y0:y1, x0]).max() <= 1


def test_jaw_opens_the_mouth_monotonically(face_analyzer, hopper):
    rgb, face, r = hopper
    gaps = [mouth_gap_ratio(_remesh(face_analyzer, r.render(FrameControls(jaw_open=j)).rgb, face.box))
            for j in (0, 0.3, 0.6)]
    assert gaps[0] < 0.05
    assert gaps[1] > gaps[0] + 0.08
    assert gaps[2] > gaps[1] + 0.08


def test_lip_closure_wins_over_an_open_jaw(face_analyzer, hopper):
    _, face, r = hopper
    closed = _remesh(face_analyzer, r.render(FrameControls(jaw_open=0.35, lip_close=1.0)).rgb, face.box)
    assert mouth_gap_ratio(closed) < 0.06


@pytest.mark.parametrize("name", ["grace_hopper.jpg", "astronaut_eileen_collins.jpg"])
def test_blink_closes_the_eyes(face_analyzer, name):
    rgb = load_rgb(EXAMPLES / name)
    face = face_analyzer.analyze(rgb)
    r = WarpRenderer(rgb, face)
    ratios = [eye_open_ratio(_remesh(face_analyzer, r.render(FrameControls(blink=b)).rgb, face.box))
              for b in (0, 0.5, 1)]
    # The mesh never reads a shut eye as fully closed (lashes), and glasses blur it further.
    assert ratios[0] > ratios[1] > ratios[2]
    assert ratios[2] < 0.7 * ratios[0]


@pytest.mark.parametrize("name", ["grace_hopper.jpg", "astronaut_eileen_collins.jpg"])
def test_shut_eyes_show_no_specks_of_the_eye_between_the_lids(face_analyzer, name):
    import cv2

    from portraittalk.engines.warp.rig import LEFT_EYE_LOWER, LEFT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER

    rgb = load_rgb(EXAMPLES / name)
    face = face_analyzer.analyze(rgb)
    shut = WarpRenderer(rgb, face).render(FrameControls(blink=1.0))
    for upper, lower in ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER)):
        # Where the lids now meet, with a pixel either side; the skin of the closed lid above it.
        seam = np.zeros(rgb.shape[:2], np.uint8)
        cv2.polylines(seam, [np.round(shut.landmarks[upper]).astype(np.int32)], False, 1, 3)
        cv2.polylines(seam, [np.round(shut.landmarks[lower]).astype(np.int32)], False, 1, 3)
        lid = np.zeros_like(seam)
        eye_h = np.ptp(face.landmarks[upper + lower, 1])
        above = np.concatenate([face.landmarks[upper, :2] - [0, 0.6 * eye_h], shut.landmarks[upper[::-1]]])
        cv2.fillPoly(lid, [np.round(above).astype(np.int32)], 1)
        lid &= ~seam.astype(bool)
        luma = shut.rgb.astype(float) @ [0.299, 0.587, 0.114]
        # The white of the eye or a catchlight squeezed into the seam would be the brightest thing there.
        assert luma[seam > 0].max() <= np.percentile(luma[lid > 0], 99) + 10, name


def test_head_turn_moves_the_nose_a_few_pixels(face_analyzer, hopper):
    _, face, r = hopper
    base = _remesh(face_analyzer, r.render(FrameControls()).rgb, face.box)
    turned = _remesh(face_analyzer, r.render(FrameControls(head_yaw=5)).rgb, face.box)
    shift = turned[1, 0] - base[1, 0]
    face_w = face.box[2] - face.box[0]
    assert 0.01 * face_w < abs(shift) < 0.15 * face_w


def test_open_mouth_is_dark_inside_with_teeth(face_analyzer, hopper):
    _, face, r = hopper
    frame = r.render(FrameControls(jaw_open=0.5)).rgb
    lm = _remesh(face_analyzer, frame, face.box)
    top, bottom = lm[13, :2], lm[14, :2]
    column = frame[int(top[1]):int(bottom[1]), int(round(top[0]))].astype(float).mean(1)
    assert column.min() < 90  # a dark cavity
    assert column.max() > 120  # lit teeth under the upper lip


def test_portrait_showing_teeth_keeps_them_unstretched(face_analyzer):
    import cv2
    rgb = load_rgb(EXAMPLES / "astronaut_eileen_collins.jpg")
    face = face_analyzer.analyze(rgb)
    r = WarpRenderer(rgb, face)
    assert r.look.has_open_mouth
    out = r.render(FrameControls(jaw_open=0.5)).rgb
    x0, y0, x1, y1 = r.region_box
    src, dst = rgb[y0:y1, x0:x1].astype(float), out[y0:y1, x0:x1].astype(float)
    upper = cv2.erode((r.look.src_upper_mask > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert upper.sum() > 10
    # Upper teeth stay where they were (fixed to the skull), pixel for pixel.
    assert np.abs(src[upper] - dst[upper]).mean() < 12
    # Lower teeth moved down with the jaw as a block: the same pixels, shifted, not stretched.
    lower = cv2.erode((r.look.src_lower_mask > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    shift = r.rig.pose(FrameControls(jaw_open=0.5)).jaw_shift
    assert shift[1] > 3
    ys, xs = np.nonzero(lower)
    moved = dst[np.clip(np.round(ys + shift[1]).astype(int), 0, dst.shape[0] - 1),
                np.clip(np.round(xs + shift[0]).astype(int), 0, dst.shape[1] - 1)]
    assert np.abs(src[ys, xs] - moved).mean() < 25


@pytest.mark.parametrize("name", ["images/mona_lisa_painting_lowres.jpg", "images/stefan_beard_beanie_lowres.jpg",
                                  "images/biden_official_portrait_small_face.jpg"])
def test_hard_portraits_render_and_still_read_as_faces(face_analyzer, name):
    rgb = load_rgb(sample(name))
    face = face_analyzer.analyze(rgb)
    r = WarpRenderer(rgb, face)
    frame = r.render(FrameControls(jaw_open=0.8, head_yaw=2)).rgb
    lm = face_analyzer.mesh_in_box(frame, face.box)
    assert lm is not None
    assert mouth_gap_ratio(lm) > mouth_gap_ratio(face.landmarks) + 0.04
