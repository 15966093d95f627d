"""Identity scores on real portraits: same person close, different people far, no face flagged."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from PIL import Image

from portraittalk.contracts import Box
from portraittalk.scoring.identity import SAME_PERSON_DISTANCE, IdentityScorer, compare

from . import data
from .conftest import input_file, present_samples

# The reference people of most tests: their portrait, another picture of them with the face
# running off the right edge (None: cut from the portrait), someone else, a photo without anyone.
PEOPLE = {
    "grace_hopper": ("examples/grace_hopper.jpg", None, "examples/astronaut_eileen_collins.jpg", "no_face.jpg"),
    "obama": ("images/obama_official_portrait.jpg", "images/obama_partial_face_cropped.jpg",
              "images/grace_hopper_glasses.jpg", "images/coffee_no_face.png"),
}
ANCHORS = ["grace_hopper", *(["obama"] if present_samples(PEOPLE["obama"][0]) else [])]


@dataclass
class Person:
    rgb: np.ndarray
    box: Box
    descriptor: np.ndarray
    cut_off: np.ndarray
    someone_else: np.ndarray
    no_face: np.ndarray


def _load(ref: str, generated) -> np.ndarray:
    return np.asarray(Image.open(input_file(ref, generated)).convert("RGB"))


@pytest.fixture(scope="module")
def scorer() -> IdentityScorer:
    return IdentityScorer(precision="float32")


@pytest.fixture(scope="module")
def people(scorer, generated):
    """The person of PEOPLE called ``name``, loaded once per module."""
    loaded: dict[str, Person] = {}

    def person(name: str) -> Person:
        if name not in loaded:
            portrait, cut_off, someone_else, no_face = PEOPLE[name]
            rgb = _load(portrait, generated)
            box = scorer.detect_face(rgb)
            assert box is not None
            cut = data.cut_off_face(rgb, box) if cut_off is None else _load(cut_off, generated)
            loaded[name] = Person(rgb, box, scorer.descriptor(rgb, box), cut, _load(someone_else, generated),
                                  _load(no_face, generated))
        return loaded[name]

    return person


@pytest.fixture(scope="module", params=ANCHORS)
def anchor(request, people) -> Person:
    return people(request.param)


def test_torch_network_equals_dlib(scorer, anchor):
    """The PyTorch rebuild of dlib's ResNet gives dlib's own descriptors."""
    import dlib
    import face_recognition_models

    rgb, box = anchor.rgb, anchor.box
    reference_net = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    chips = [scorer.align(rgb, box), scorer.align(anchor.someone_else, None)]
    ours = scorer.embed(chips)
    theirs = np.array([reference_net.compute_face_descriptor(c) for c in chips])
    assert scorer.backend == "torch"
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_same_portrait_is_identical(scorer, anchor):
    rgb, box, descriptor = anchor.rgb, anchor.box, anchor.descriptor
    assert descriptor.shape == (128,)
    score = scorer.score(rgb, box, descriptor, 7)
    assert score.frame == 7 and score.face_found
    assert score.cosine == pytest.approx(1.0, abs=1e-6)
    assert score.distance == pytest.approx(0.0, abs=1e-5)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def test_degraded_copies_stay_the_same_person(scorer, anchor):
    rgb, box, descriptor = anchor.rgb, anchor.box, anchor.descriptor
    h, w = rgb.shape[:2]
    dx, dy = 9, -6
    shifted = cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
    shifted_box = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
    half = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    variants = {
        "jpeg q25": (_jpeg(rgb, 25), box),
        "blur": (cv2.GaussianBlur(rgb, (0, 0), 1.5), box),
        "shifted, box moved": (shifted, shifted_box),
        "shifted, box kept": (shifted, box),  # a box a few pixels off
        "half resolution": (half, tuple(v // 2 for v in box)),
        "brighter": (np.clip(rgb * 1.15 + 12, 0, 255).astype(np.uint8), box),
        "redetected": (_jpeg(rgb, 60), None),
    }
    for name, (image, b) in variants.items():
        score = scorer.score(image, b, descriptor, 0)
        assert score.face_found, name
        # well inside dlib's same-person threshold, not merely under it
        assert score.distance < 0.5 * SAME_PERSON_DISTANCE, (name, score.distance)
        assert score.cosine > 0.97, (name, score.cosine)
    assert scorer.score(shifted, shifted_box, descriptor, 0).distance == pytest.approx(0.0, abs=0.02)


def test_same_person_in_a_different_crop(scorer, anchor):
    descriptor = anchor.descriptor
    partial = anchor.cut_off
    box = scorer.detect_face(partial)
    if box is None:
        pytest.skip("no face found in the partial-face crop")
    score = scorer.score(partial, box, descriptor, 0)
    assert score.distance < SAME_PERSON_DISTANCE


@pytest.mark.parametrize("other, name", [
    ("examples/astronaut_eileen_collins.jpg", "grace_hopper"),
    *present_samples(
        ("images/obama_official_portrait.jpg", "grace_hopper"),
        ("images/biden_official_portrait_small_face.jpg", "grace_hopper"),
        ("images/stefan_beard_beanie_lowres.jpg", "grace_hopper"),
        ("images/grace_hopper_glasses.jpg", "obama"),
        ("images/astronaut_eileen_collins.png", "obama"),
        ("images/biden_official_portrait_small_face.jpg", "obama"),
        ("images/stefan_beard_beanie_lowres.jpg", "obama"),
    ),
])
def test_different_people_are_over_the_threshold(scorer, people, generated, other, name):
    person = people(name)
    descriptor = person.descriptor
    image = _load(other, generated)
    score = scorer.score(image, None, descriptor, 0)
    assert score.face_found
    assert score.distance > SAME_PERSON_DISTANCE
    # and further away than a heavily degraded copy of the same person
    assert score.cosine < scorer.score(_jpeg(person.rgb, 25), person.box, descriptor, 0).cosine


def test_no_face_is_flagged(scorer, anchor):
    coffee = anchor.no_face
    score = scorer.score(coffee, None, anchor.descriptor, 3)
    assert not score.face_found and score.frame == 3
    assert score.distance > SAME_PERSON_DISTANCE  # counted as "not the same person"
    assert scorer.descriptor(coffee, None) is None
    assert scorer.reference([coffee]) is None


def test_multi_reference_and_batched_scoring(scorer, anchor):
    rgb, box, single = anchor.rgb, anchor.box, anchor.descriptor
    partial, grace, coffee = anchor.cut_off, anchor.someone_else, anchor.no_face
    reference = scorer.reference([rgb, partial], [box, None])
    assert reference.shape == (128,)
    # the mean of two pictures of one person sits between them
    assert compare(single, reference, 0).distance < compare(single, scorer.descriptor(partial), 0).distance

    frames = [rgb, coffee, grace, _jpeg(rgb, 50)] * 2
    boxes = [box, None, None, box] * 2
    batched = scorer.score_frames(iter(frames), iter(boxes), reference, batch_size=3)
    assert [s.frame for s in batched.frames] == list(range(8))
    assert [s.face_found for s in batched.frames] == [True, False, True, True] * 2
    summary = batched.summary()
    assert summary["frames"] == 8
    assert summary["frames_within_threshold"] == 4 and summary["frames_over_threshold"] == 4

    # streaming one frame at a time gives the same numbers as the batch
    for frame_score, frame, b in list(zip(batched.frames, frames, boxes))[:4]:
        single_score = scorer.score(frame, b, reference, frame_score.frame)
        assert single_score.face_found == frame_score.face_found
        assert single_score.distance == pytest.approx(frame_score.distance, abs=1e-4)


def test_bfloat16_distances_stay_within_0005_of_float32(scorer, anchor, generated):
    """The faster bfloat16 network scores the same person, another person and a degraded copy
    as float32 does, to 0.005 in descriptor distance (used where the CPU has bfloat16 arithmetic)."""
    fast = IdentityScorer(precision="bfloat16")
    assert fast.precision == "bfloat16" and scorer.precision == "float32"
    reference = scorer.descriptor(anchor.rgb, anchor.box)
    fast_reference = fast.descriptor(anchor.rgb, anchor.box)
    for image, box in [(anchor.rgb, anchor.box), (_jpeg(anchor.rgb, 25), anchor.box), (anchor.someone_else, None),
                       (cv2.GaussianBlur(anchor.rgb, (0, 0), 1.5), anchor.box)]:
        exact = compare(scorer.descriptor(image, box), reference, 0)
        approx = compare(fast.descriptor(image, box), fast_reference, 0)
        assert approx.distance == pytest.approx(exact.distance, abs=0.005)
        assert approx.cosine == pytest.approx(exact.cosine, abs=0.005)


def test_dlib_backend_agrees(anchor):
    rgb, box, descriptor = anchor.rgb, anchor.box, anchor.descriptor
    dlib_scorer = IdentityScorer(backend="dlib")
    assert dlib_scorer.backend == "dlib"
    np.testing.assert_allclose(dlib_scorer.descriptor(rgb, box), descriptor, atol=1e-4)
