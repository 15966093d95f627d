"""Whole-frame looks on real portraits: what each look does, and that it does not flicker."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from portraittalk.engines.warp.looks import NEIGHBOURHOOD_STYLES, PER_PIXEL_STYLES, StyleFilter, available_styles
from portraittalk.errors import InputError

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [REPO / "examples" / "grace_hopper.jpg",
              REPO.parent / "shared" / "samples" / "images" / "grace_hopper_glasses.jpg",
              REPO / "examples" / "astronaut_eileen_collins.jpg",
              REPO.parent / "shared" / "samples" / "images" / "obama_official_portrait.jpg"]
SIDE = 384  # long side for these tests: real content, small enough for two cores


def _portrait() -> np.ndarray:
    for path in CANDIDATES:
        if path.exists():
            bgr = cv2.imread(str(path))
            h, w = bgr.shape[:2]
            s = SIDE / max(h, w)
            small = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            return np.ascontiguousarray(small[:, :, ::-1])
    pytest.skip("no example portrait available")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return _portrait()


@pytest.fixture(scope="module")
def styled(portrait) -> dict[str, np.ndarray]:
    return {name: StyleFilter(name).apply(portrait) for name in available_styles()}


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _texture(rgb: np.ndarray) -> float:
    """Median local standard deviation (5×5): fine texture such as skin pores and fabric,
    unlike edge measures it is not raised by the crisp borders of paint strokes."""
    luma = _luma(rgb)
    mean = cv2.blur(luma, (5, 5))
    return float(np.median(np.sqrt(np.maximum(cv2.blur(luma * luma, (5, 5)) - mean * mean, 0))))


def _frame_diffs(frames: list[np.ndarray]) -> tuple[float, float]:
    """Mean absolute frame-to-frame difference, and the share of pixels that jump ≥ 10 levels."""
    d = [np.abs(b.astype(np.int16) - a).max(axis=2) for a, b in zip(frames, frames[1:])]
    return float(np.mean([x.mean() for x in d])), float(np.mean([(x >= 10).mean() for x in d]))


def test_available_styles():
    assert set(available_styles()) == set(PER_PIXEL_STYLES) | set(NEIGHBOURHOOD_STYLES)
    assert len(available_styles()) == 8


@pytest.mark.parametrize("name", available_styles())
def test_each_look_is_deterministic_and_changes_the_frame(portrait, styled, name):
    out = styled[name]
    assert out.shape == portrait.shape and out.dtype == np.uint8
    assert np.array_equal(out, StyleFilter(name).apply(portrait))
    assert np.abs(out.astype(np.int16) - portrait).mean() > 3


def test_black_and_white_has_no_colour(styled):
    out = styled["black-and-white"].astype(np.int16)
    assert np.abs(out[..., 0] - out[..., 1]).max() == 0 and np.abs(out[..., 1] - out[..., 2]).max() == 0


def test_sepia_is_a_warm_monochrome(portrait, styled):
    out = styled["sepia"].astype(np.int16)
    r, g, b = out[..., 0], out[..., 1], out[..., 2]
    assert ((r >= g) & (g >= b)).mean() > 0.99
    # One hue: the tint is set by brightness alone, so chroma is far below the photo's.
    def chroma(x):
        return float(np.std(x.astype(np.float32) - x.mean(axis=2, keepdims=True)))
    assert chroma(out) < 0.8 * chroma(portrait)


def test_warm_and_cool_shift_the_white_balance(portrait, styled):
    def red_minus_blue(x):
        return float(x[..., 0].astype(np.float32).mean() - x[..., 2].astype(np.float32).mean())
    base = red_minus_blue(portrait)
    assert red_minus_blue(styled["warm"]) > base + 8
    assert red_minus_blue(styled["cool"]) < base - 8


def test_high_contrast_spreads_the_tones(portrait, styled):
    assert _luma(styled["high-contrast"]).std() > 1.07 * _luma(portrait).std()


def test_painting_and_cartoon_flatten_texture(portrait, styled):
    assert _texture(styled["painting"]) < 0.5 * _texture(portrait)
    assert _texture(styled["cartoon"]) < 0.6 * _texture(portrait)
    # Cartoon colours are bolder than the photo's.
    sat = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32).mean()
    assert sat(styled["cartoon"]) > sat(portrait)


def test_pencil_sketch_is_grey_lines_on_paper(styled):
    out = styled["pencil-sketch"].astype(np.int16)
    assert np.abs(out[..., 0] - out[..., 2]).max() <= 16  # only the paper's faint warmth
    luma = _luma(styled["pencil-sketch"])
    assert np.median(luma) > 150  # mostly paper
    assert (luma < 100).mean() > 0.01  # with real dark strokes


@pytest.mark.parametrize("name", available_styles())
def test_strength_blends_the_look(portrait, styled, name):
    assert np.array_equal(StyleFilter(name, 0.0).apply(portrait), portrait)
    full = np.abs(styled[name].astype(np.float32) - portrait).mean()
    half = np.abs(StyleFilter(name, 0.5).apply(portrait).astype(np.float32) - portrait).mean()
    assert 0.3 * full < half < 0.75 * full


@pytest.mark.parametrize("name", available_styles())
def test_still_scene_with_sensor_noise_does_not_flicker(portrait, name):
    rng = np.random.default_rng(0)
    noisy = [np.clip(portrait.astype(np.int16) + rng.integers(-1, 2, portrait.shape), 0, 255).astype(np.uint8)
             for _ in range(3)]
    f = StyleFilter(name)
    out = [f.apply(x) for x in noisy]
    mafd_in, _ = _frame_diffs(noisy)
    mafd_out, jumps = _frame_diffs(out)
    assert mafd_out < 1.5 * mafd_in
    assert jumps < 0.005  # fewer than 0.5 % of pixels jump by 10 levels or more
    # An identical frame gives an identical result (fixed grain and hatching, no randomness).
    assert np.array_equal(f.apply(noisy[0]), out[0])


@pytest.mark.parametrize("name", available_styles())
def test_slowly_moving_face_changes_smoothly(portrait, name):
    h, w = portrait.shape[:2]
    frames = []
    for k in range(3):  # drift of 0.3 px per frame with a slight turn, like a talking head
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.05 * k, 1.0)
        m[0, 2] += 0.3 * k
        frames.append(cv2.warpAffine(portrait, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    f = StyleFilter(name)
    mafd_in, _ = _frame_diffs(frames)
    mafd_out, _ = _frame_diffs([f.apply(x) for x in frames])
    assert mafd_out < 2.0 * mafd_in


def test_sepia_grain_is_fixed_not_redrawn(portrait):
    changed = portrait.copy()
    changed[10:14, 10:14] = 255 - changed[10:14, 10:14]
    f = StyleFilter("sepia")
    diff = np.any(f.apply(changed) != f.apply(portrait), axis=2)
    assert diff[10:14, 10:14].all() and diff.sum() == 16  # only the pixels that changed


@pytest.fixture(scope="module")
def mouth(portrait):
    """The real mesh of the portrait (mediapipe), for the mouth restyling."""
    from portraittalk.analysis.face import FaceAnalyzer
    from portraittalk.engines.warp.looks import _INNER_LOWER, _INNER_UPPER
    lm = FaceAnalyzer().analyze(portrait).landmarks[:, :2].copy()
    # Open the mouth: drop the lower inner lip so the opening is a clear patch of pixels.
    mouth_w = float(np.linalg.norm(lm[_INNER_UPPER[0]] - lm[_INNER_UPPER[-1]]))
    lm[_INNER_LOWER[1:-1], 1] += 0.35 * mouth_w
    poly = np.concatenate([lm[_INNER_UPPER], lm[_INNER_LOWER[::-1][1:-1]]]).astype(np.float32)
    return lm, poly


@pytest.mark.parametrize("name", ["black-and-white", "sepia", "pencil-sketch", "cartoon"])
def test_restyle_mouth_covers_a_natural_coloured_opening(portrait, mouth, name):
    lm, poly = mouth
    f = StyleFilter(name)
    frame = f.apply(portrait)
    # The renderer paints the mouth interior in natural colours: a red tongue / dark cavity.
    inside = np.zeros(portrait.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
    frame[inside > 0] = (170, 60, 60)
    out = f.restyle_mouth(frame, lm)
    core = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    assert core.sum() > 20
    px = out[core].astype(np.int16)
    spread = np.abs(px[:, 0] - px[:, 2]).mean()  # red minus blue
    if name in ("black-and-white", "pencil-sketch"):
        assert spread <= 16  # grey (pencil: paper tint)
    elif name == "sepia":
        assert spread < 60 and (px[:, 0] >= px[:, 1]).all() and (px[:, 1] >= px[:, 2]).all()
    else:
        assert not np.array_equal(out[core], frame[core])
    # Far from the mouth nothing changes.
    far = cv2.dilate(inside, np.ones((41, 41), np.uint8)) == 0
    assert np.array_equal(out[far], frame[far])


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError):
        StyleFilter("watercolour-ish")
    with pytest.raises(InputError):
        StyleFilter("sepia", 1.5)
