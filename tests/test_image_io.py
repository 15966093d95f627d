"""Portrait decoding: formats, orientation, transparency, bit depth, colour models, limits."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from portraittalk.errors import InputError
from portraittalk.io.image import BACKGROUND_RGB, MAX_PIXELS, load_portrait

from . import data
from .conftest import EXAMPLES, SAMPLES, input_file, present_samples


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real portrait, an even-sized crop around the face: a developer sample or the Hopper example."""
    path = SAMPLES / "images" / "obama_official_portrait.jpg"
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB"))[100:500, 300:620].copy()
    return np.asarray(Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB"))[60:460, 96:416].copy()


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _one_sentence(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.endswith(".")
    return message


@pytest.mark.parametrize("fmt,kwargs,tolerance", [
    ("PNG", {}, 0.0), ("BMP", {}, 0.0), ("TIFF", {}, 0.0), ("WEBP", {"lossless": True}, 0.0),
    ("JPEG", {"quality": 95}, 2.5), ("WEBP", {"quality": 90}, 3.5), ("GIF", {}, 12.0),
])
def test_formats_decode_to_the_same_picture(photo, tmp_path, fmt, kwargs, tolerance):
    path = tmp_path / f"portrait.{fmt.lower()}"
    path.write_bytes(_encode(Image.fromarray(photo), fmt, **kwargs))
    portrait = load_portrait(path)
    assert portrait.rgb.dtype == np.uint8 and portrait.rgb.shape == photo.shape
    assert portrait.size == (photo.shape[1], photo.shape[0]) == portrait.original_size
    assert portrait.source_name == path.name
    assert _mean_abs(portrait.rgb, photo) <= tolerance


def test_bytes_source(photo):
    portrait = load_portrait(_encode(Image.fromarray(photo), "PNG"))
    assert np.array_equal(portrait.rgb, photo)


def test_animated_gif_uses_first_frame(photo, tmp_path):
    first = Image.fromarray(photo)
    second = Image.fromarray(255 - photo)
    path = tmp_path / "anim.gif"
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    portrait = load_portrait(path)
    assert _mean_abs(portrait.rgb, photo) < 12.0
    assert _mean_abs(portrait.rgb, 255 - photo) > 50.0
    assert any("first frame" in n for n in portrait.notes)


@pytest.mark.parametrize("orientation,expected", [
    (3, lambda a: a[::-1, ::-1]),
    (6, lambda a: np.rot90(a, k=-1)),  # stored rotated: the camera was turned 90° clockwise
    (8, lambda a: np.rot90(a, k=1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_is_applied(photo, tmp_path, orientation, expected):
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    portrait = load_portrait(path)
    upright = expected(photo)
    assert portrait.rgb.shape == upright.shape
    assert portrait.original_size == (upright.shape[1], upright.shape[0])
    assert _mean_abs(portrait.rgb, upright) < 2.5
    assert any("EXIF" in n for n in portrait.notes)


def test_rgba_is_composited_over_neutral_background(photo, tmp_path):
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:, : photo.shape[1] // 2] = 0  # left half fully transparent
    alpha[:40, photo.shape[1] // 2:] = 128  # a half-transparent band
    path = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([photo, alpha])).save(path)
    portrait = load_portrait(path)
    half = photo.shape[1] // 2
    assert (portrait.rgb[:, :half] == BACKGROUND_RGB).all()
    assert np.array_equal(portrait.rgb[40:, half:], photo[40:, half:])
    blend = photo[:40, half:].astype(np.float32) * 128 / 255 + np.array(BACKGROUND_RGB) * 127 / 255
    assert np.abs(portrait.rgb[:40, half:] - blend).max() <= 1.0
    assert any("transparent" in n for n in portrait.notes)


def test_la_and_palette_transparency(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    alpha = np.where(np.arange(64) < 32, 0, 255).astype(np.uint8)[None].repeat(48, 0)
    Image.fromarray(np.dstack([gray, alpha])).save(tmp_path / "la.png")
    la = load_portrait(tmp_path / "la.png")
    assert (la.rgb[:, :32] == BACKGROUND_RGB).all()
    assert np.array_equal(la.rgb[:, 32:, 0], gray[:, 32:])

    palette = Image.fromarray(gray).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])  # the darkest colour is transparent
    palette.save(tmp_path / "p.gif", transparency=palette.info["transparency"])
    p = load_portrait(tmp_path / "p.gif")
    assert (p.rgb[:, 0] == BACKGROUND_RGB).all()
    assert p.rgb[:, -1].min() > 240


def test_grayscale_becomes_three_equal_channels(photo, tmp_path):
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    portrait = load_portrait(tmp_path / "gray.png")
    assert portrait.rgb.shape == photo.shape
    assert np.array_equal(portrait.rgb[..., 0], gray)
    assert np.array_equal(portrait.rgb[..., 0], portrait.rgb[..., 2])


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # Pillow reads this as mode I;16
    portrait = load_portrait(tmp_path / "deep.png")
    row = portrait.rgb[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)
    np.testing.assert_allclose(row, ramp[0] / 257.0, atol=1.0)  # linear over the full range
    assert any("16-bit" in n for n in portrait.notes)


def test_16_bit_colour_png(photo, tmp_path):
    deep = photo.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), cv2.cvtColor(deep, cv2.COLOR_RGB2BGR))
    portrait = load_portrait(tmp_path / "deep_rgb.png")
    assert _mean_abs(portrait.rgb, photo) <= 0.5


def test_float_and_32_bit_tiff(tmp_path):
    ramp = np.tile(np.linspace(0.0, 1.0, 128, dtype=np.float32), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "float.tif")
    f = load_portrait(tmp_path / "float.tif")
    np.testing.assert_allclose(f.rgb[0, :, 1], ramp[0] * 255, atol=1.0)

    wide = np.tile(np.linspace(0, 60000, 128).astype(np.int32), (32, 1))
    Image.fromarray(wide).save(tmp_path / "int.tif")
    i = load_portrait(tmp_path / "int.tif")
    np.testing.assert_allclose(i.rgb[0, :, 0], wide[0] / 65535 * 255, atol=1.0)

    hdr = np.tile(np.linspace(-5.0, 20.0, 128, dtype=np.float32), (32, 1))  # arbitrary range: stretched
    Image.fromarray(hdr).save(tmp_path / "hdr.tif")
    h = load_portrait(tmp_path / "hdr.tif")
    assert h.rgb[0, 0, 0] == 0 and h.rgb[0, -1, 0] == 255


def test_cmyk_jpeg(photo, tmp_path):
    path = tmp_path / "print.jpg"
    Image.fromarray(photo).convert("CMYK").save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    portrait = load_portrait(path)
    assert portrait.rgb.shape == photo.shape
    assert _mean_abs(portrait.rgb, photo) < 4.0
    assert any("CMYK" in n for n in portrait.notes)


def test_max_size_area_downscale_and_original_size(tmp_path):
    # A one-pixel checkerboard: area averaging gives flat grey; point sampling would alias.
    board = ((np.indices((1200, 1600)).sum(axis=0) % 2) * 255).astype(np.uint8)
    Image.fromarray(board).save(tmp_path / "board.png")
    portrait = load_portrait(tmp_path / "board.png", max_size=640)
    assert portrait.size == (640, 480)
    assert portrait.original_size == (1600, 1200)
    assert abs(float(portrait.rgb.mean()) - 127.5) < 2.0 and portrait.rgb.std() < 6.0
    assert any("downscaled" in n for n in portrait.notes)


def test_large_jpeg_is_capped(photo, tmp_path):
    big = cv2.resize(photo, (1280, 1600), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.jpg"
    Image.fromarray(big).save(path, quality=95)
    portrait = load_portrait(path, max_size=512)
    assert max(portrait.size) <= 512 and portrait.size[0] % 2 == 0 and portrait.size[1] % 2 == 0
    assert portrait.original_size == (1280, 1600)
    expected = cv2.resize(big, portrait.size, interpolation=cv2.INTER_AREA)
    assert _mean_abs(portrait.rgb, expected) < 3.0


def test_odd_size_is_trimmed_at_right_and_bottom(photo, tmp_path):
    odd = photo[:301, :201]
    Image.fromarray(odd).save(tmp_path / "odd.png")
    portrait = load_portrait(tmp_path / "odd.png")
    assert portrait.size == (200, 300)
    assert portrait.original_size == (201, 301)
    assert np.array_equal(portrait.rgb, odd[:300, :200])
    assert any("even" in n for n in portrait.notes)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width,height", [(9000, 8000), (40000, 40000)])
def test_decompression_bomb_is_refused_before_decoding(width, height):
    assert width * height > MAX_PIXELS
    with pytest.raises(InputError) as excinfo:
        load_portrait(_png_header_only(width, height))
    assert "too large" in _one_sentence(excinfo)


def test_not_an_image_empty_truncated_missing(photo, tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_portrait(b"hello, this is a text file")
    assert "not an image" in _one_sentence(excinfo)

    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        load_portrait(tmp_path / "empty.jpg")
    assert "empty" in _one_sentence(excinfo)

    jpeg = _encode(Image.fromarray(photo), "JPEG", quality=90)
    with pytest.raises(InputError) as excinfo:
        load_portrait(jpeg[: len(jpeg) // 2])
    assert "damaged or incomplete" in _one_sentence(excinfo)

    png = _encode(Image.fromarray(photo), "PNG")
    with pytest.raises(InputError) as excinfo:
        load_portrait(png[: len(png) // 2])
    assert "damaged or incomplete" in _one_sentence(excinfo)

    with pytest.raises(InputError) as excinfo:
        load_portrait(tmp_path / "missing.png")
    assert "not found" in _one_sentence(excinfo)


def test_tiny_image_is_refused():
    with pytest.raises(InputError) as excinfo:
        load_portrait(_encode(Image.new("RGB", (20, 20), "white"), "PNG"))
    assert "20×20" in _one_sentence(excinfo)


PORTRAITS = ["examples/grace_hopper.jpg", "examples/astronaut_eileen_collins.jpg", *data.PICTURES,
             *present_samples(*(f"images/{p.name}" for p in sorted((SAMPLES / "images").glob("*"))))]


@pytest.mark.parametrize("ref", PORTRAITS)
def test_every_test_portrait_loads(generated, ref):
    portrait = load_portrait(input_file(ref, generated), max_size=1024)
    h, w = portrait.rgb.shape[:2]
    assert portrait.rgb.dtype == np.uint8 and portrait.rgb.shape[2] == 3
    assert w % 2 == 0 and h % 2 == 0 and max(w, h) <= 1024
    assert abs(w - portrait.original_size[0]) <= 1 and abs(h - portrait.original_size[1]) <= 1


@pytest.mark.parametrize("ref", ["turned_head_gray.png", *present_samples("images/cameraman_profile_gray.png")])
def test_a_grayscale_portrait_is_noted(generated, ref):
    gray = load_portrait(input_file(ref, generated))
    assert any("grayscale" in n for n in gray.notes)
