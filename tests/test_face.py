"""Face analysis on real portraits and pictures made from them: mesh found, largest face chosen,
clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from portraittalk.analysis.face import estimate_yaw_degrees, eye_open_ratio, mouth_gap_ratio
from portraittalk.errors import InputError

from .conftest import EXAMPLES, input_file, load_rgb, present_samples


@pytest.mark.parametrize("name", ["grace_hopper.jpg", "astronaut_eileen_collins.jpg"])
def test_examples_have_a_frontal_face(face_analyzer, name):
    rgb = load_rgb(EXAMPLES / name)
    face = face_analyzer.analyze(rgb)
    assert face.landmarks.shape == (478, 3)
    x0, y0, x1, y1 = face.box
    h, w = rgb.shape[:2]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert abs(estimate_yaw_degrees(face.landmarks)) < 15
    assert 0.15 < eye_open_ratio(face.landmarks) < 0.6
    # Irises lie between the eye corners.
    assert face.landmarks[468, 0] < face.landmarks[473, 0]


def test_closed_and_open_mouths_are_told_apart(face_analyzer):
    closed = face_analyzer.analyze(load_rgb(EXAMPLES / "grace_hopper.jpg"))
    smiling = face_analyzer.analyze(load_rgb(EXAMPLES / "astronaut_eileen_collins.jpg"))
    assert mouth_gap_ratio(closed.landmarks) < 0.05
    assert mouth_gap_ratio(smiling.landmarks) > 0.08


@pytest.mark.parametrize("ref", ["no_face.jpg", *present_samples("images/coffee_no_face.png")])
def test_no_face_is_a_clear_error(face_analyzer, generated, ref):
    flat = np.full((300, 400, 3), 128, np.uint8)
    with pytest.raises(InputError, match="No face"):
        face_analyzer.analyze(flat)
    with pytest.raises(InputError, match="front-facing"):
        face_analyzer.analyze(load_rgb(input_file(ref, generated)))


@pytest.mark.parametrize("ref", ["two_faces.jpg", *present_samples("images/greenscreen_two_faces_glasses.jpg")])
def test_two_faces_pick_the_largest_and_say_so(face_analyzer, generated, ref):
    rgb = load_rgb(input_file(ref, generated))
    face = face_analyzer.analyze(rgb)
    assert face.faces_found >= 2
    assert any("largest" in w for w in face.warnings)


@pytest.mark.parametrize("ref", ["small_face.jpg", *present_samples("images/biden_official_portrait_small_face.jpg")])
def test_small_face_in_a_full_length_portrait(face_analyzer, generated, ref):
    rgb = load_rgb(input_file(ref, generated))
    face = face_analyzer.analyze(rgb)
    x0, y0, x1, y1 = face.box
    assert y1 < rgb.shape[0] * 0.35  # the head, near the top of a standing figure
    assert (x1 - x0) < rgb.shape[1] * 0.5


# the generated case: Grace Hopper's head turned 60° by warping her face mesh in 3-D, in grayscale
@pytest.mark.parametrize("ref", ["turned_head_gray.png", *present_samples("images/cameraman_profile_gray.png")])
def test_profile_is_flagged(face_analyzer, generated, ref):
    face = face_analyzer.analyze(load_rgb(input_file(ref, generated)))
    assert abs(estimate_yaw_degrees(face.landmarks)) > 35
    assert any("turned" in w for w in face.warnings)


@pytest.mark.parametrize("ref", ["two_faces.jpg", *present_samples("images/greenscreen_two_faces_glasses.jpg")])
def test_faces_are_numbered_from_the_left_and_any_can_be_chosen(face_analyzer, generated, ref):
    from portraittalk.analysis.face import faces_left_to_right

    rgb = load_rgb(input_file(ref, generated))
    boxes = [f.box for f in faces_left_to_right(face_analyzer.detect_faces(rgb))]
    assert len(boxes) >= 2 and [b[0] for b in boxes] == sorted(b[0] for b in boxes)
    largest = face_analyzer.analyze(rgb)
    for number, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        face = face_analyzer.analyze(rgb, number)
        assert face.number == number and face.faces_found == len(boxes)
        # The mesh is fitted to that face: its nose tip lies inside that face's box.
        nose_x, nose_y = face.landmarks[1, :2]
        assert x0 <= nose_x <= x1 and y0 <= nose_y <= y1
        assert not face.warnings or not any("faces were found" in w for w in face.warnings)  # chosen: no note
    assert largest.number == max(range(1, len(boxes) + 1),
                                 key=lambda n: (boxes[n - 1][2] - boxes[n - 1][0]) * (boxes[n - 1][3] - boxes[n - 1][1]))
    assert f"face {largest.number} from the left" in " ".join(largest.warnings)
    with pytest.raises(InputError, match=f"There is no face {len(boxes) + 1} in the portrait: it has {len(boxes)} faces"):
        face_analyzer.analyze(rgb, len(boxes) + 1)


def test_a_face_number_beyond_a_single_face_is_a_clear_error(face_analyzer):
    rgb = load_rgb(EXAMPLES / "grace_hopper.jpg")
    assert face_analyzer.analyze(rgb, 1).number == 1
    with pytest.raises(InputError, match="There is no face 2 in the portrait: it has one face; choose one of them."):
        face_analyzer.analyze(rgb, 2)
