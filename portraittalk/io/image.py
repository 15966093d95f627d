"""Decode a user's portrait file into an upright 8-bit RGB :class:`Portrait`.

Photo formats are accepted by their content, whatever the file is called (JPEG, PNG, WebP,
BMP, TIFF, GIF, AVIF); Pillow's other, rarely used decoders are never run on a user's
bytes. The image is made safe for the rest of the pipeline: EXIF rotation applied,
transparency flattened, high-bit-depth and CMYK data converted to 8-bit sRGB-ish RGB, the
long side capped, and both sides made even because H.264 in yuv420p cannot encode odd
frame sizes. Any file, however malformed, ends either in a :class:`Portrait` or in an
:class:`InputError`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..contracts import Portrait
from ..errors import InputError

# Above this many pixels a file is refused before it is decoded (a "decompression
# bomb" can claim billions of pixels in a few kilobytes).
MAX_PIXELS = 60_000_000
# Smallest usable short side: below this no face detector finds anything.
MIN_SIDE = 32
# Transparent areas are composited over this neutral light grey.
BACKGROUND_RGB = (200, 200, 200)

_SUPPORTED = "JPEG, PNG, WebP, BMP, TIFF or GIF"
# Pillow decoders a portrait may come in (MPO, the multi-picture JPEG of many phones, opens
# through the JPEG one). Detection is by the file's content, never by its extension.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
# Modes Pillow's box-filter `reduce` averages correctly (palette indices must not be averaged).
_REDUCIBLE_MODES = {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}
_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def load_portrait(source: str | Path | bytes, max_size: int | None = None) -> Portrait:
    """Decode ``source`` (a path or the file's bytes) into an even-sized RGB portrait.

    ``max_size`` caps the long side (area downscale); ``original_size`` keeps the
    file's own (upright) size. Every conversion applied is listed in ``notes``.
    """
    data, name = _read_source(source)
    notes: list[str] = []
    with warnings.catch_warnings():
        # Pillow's own bomb warning would fire before our stricter size check.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(io.BytesIO(data), formats=_accepted_formats())
        except Image.DecompressionBombError:
            raise InputError(too_large_message(name)) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise InputError(
                f"'{name}' is not an image PortraitTalk can read; please use a {_SUPPORTED} photo."
            ) from None
        except Exception:  # noqa: BLE001 (a decoder's header parser tripped over hostile bytes)
            raise InputError(_damaged_message(name)) from None

        width, height = image.size
        if width * height > MAX_PIXELS:
            raise InputError(too_large_message(name, width, height))
        if width < 1 or height < 1:
            raise InputError(_damaged_message(name))
        try:
            image = _decode_first_frame(image, max_size, notes)
        except Image.DecompressionBombError:
            raise InputError(too_large_message(name, width, height)) from None
        except InputError:
            raise
        except Exception:  # noqa: BLE001 (decoders raise many types on damaged data: OSError, IndexError, struct.error, …)
            raise InputError(_damaged_message(name)) from None

    try:
        orientation = int(image.getexif().get(0x0112, 1))
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 (a malformed EXIF block raises many types: keep the pixels as stored)
        orientation = 1
    if orientation not in (0, 1):
        notes.append(f"rotated upright from EXIF orientation {orientation}")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    original_size = (int(width), int(height))

    try:
        rgb = _to_rgb8(image, notes)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 (pixel data a colour conversion cannot read is damaged data)
        raise InputError(_damaged_message(name)) from None

    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"'{name}' is only {rgb.shape[1]}×{rgb.shape[0]} pixels, too small to animate; "
            "please use a larger photo (a few hundred pixels on each side)."
        )
    if max_size and max(rgb.shape[:2]) > max_size:
        scale = max_size / max(rgb.shape[:2])
        new_w = max(2, round(rgb.shape[1] * scale))
        new_h = max(2, round(rgb.shape[0] * scale))
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        notes.append(f"downscaled from {original_size[0]}×{original_size[1]} to {new_w}×{new_h}")
    elif rgb.shape[1] != original_size[0] or rgb.shape[0] != original_size[1]:
        # JPEG draft decoding already shrank it below the cap.
        notes.append(f"downscaled from {original_size[0]}×{original_size[1]} to {rgb.shape[1]}×{rgb.shape[0]}")

    h, w = rgb.shape[:2]
    even_h, even_w = h - h % 2, w - w % 2
    if (even_h, even_w) != (h, w):
        rgb = rgb[:even_h, :even_w]
        notes.append(f"trimmed to an even size {even_w}×{even_h} for video encoding")

    return Portrait(rgb=np.ascontiguousarray(rgb, dtype=np.uint8), source_name=name,
                    original_size=original_size, notes=notes)


def _accepted_formats() -> list[str]:
    Image.init()
    return [f for f in ACCEPTED_FORMATS if f in Image.OPEN]


def _decode_first_frame(image: Image.Image, max_size: int | None, notes: list[str]) -> Image.Image:
    """Decode the first frame; for a large picture, shrink it on the way (see below)."""
    n_frames = getattr(image, "n_frames", 1)
    if n_frames > 1:
        notes.append(f"animated or multi-page image ({n_frames} frames): the first frame was used")
        image.seek(0)
    if max_size and image.format == "JPEG":
        # Let the JPEG decoder downscale in the DCT domain (fast, still larger than
        # needed); the exact area downscale happens later.
        image.draft(image.mode, (max_size, max_size))
    image.load()
    if max_size:
        image = _box_reduce(image, max_size)
    return image


def _box_reduce(image: Image.Image, max_size: int) -> Image.Image:
    """Shrink by a whole factor (box average) to no less than ``max_size`` on the long side.

    Converting a near-limit picture at full size would take gigabytes (float alpha
    compositing, 16-bit scaling); the box average is what the final area downscale would
    compute anyway, so the result looks the same.
    """
    factor = max(image.size) // max_size
    if factor < 2:
        return image
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        reduced = image.convert("I").reduce(factor)
        reduced.info["portraittalk_deep_mode"] = mode  # scaled as 16-bit data later
        return reduced
    if mode not in _REDUCIBLE_MODES or "transparency" in image.info:
        # Palette and colour-key transparency: resolve the colours first, then average.
        try:
            image = image.convert("RGBA" if _has_transparency(image) else "RGB")
        except (ValueError, OSError):
            return image  # an unusual colour model: the full-size conversion explains it
    return image.reduce(factor)


def _damaged_message(name: str) -> str:
    return (f"'{name}' is damaged or incomplete and cannot be decoded; "
            "please upload the image again or use another copy.")


def _read_source(source: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "uploaded image"
    else:
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise InputError(f"The image file '{name}' was not found; please choose the portrait file again.")
        data = path.read_bytes()
    if not data:
        raise InputError(f"'{name}' is empty (0 bytes); please upload the portrait again.")
    return data, name


def too_large_message(name: str, width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}×{height} pixels)" if width and height else ""
    return (f"'{name}' is too large{size}; please use an image under {MAX_PIXELS // 1_000_000} megapixels, "
            "for example by resizing it to 2000 pixels on the long side.")


def _to_rgb8(image: Image.Image, notes: list[str]) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8 RGB, scaling (not clipping) deep data."""
    mode = image.info.get("portraittalk_deep_mode", image.mode)
    if mode in _DEEP_MODES:
        gray = _deep_to_uint8(np.asarray(image), mode, notes)
        return np.repeat(gray[:, :, None], 3, axis=2)

    if _has_transparency(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[:, :, 3:4] / 255.0
        if alpha.min() < 1.0:
            background = np.array(BACKGROUND_RGB, np.float32)
            rgb = rgba[:, :, :3] * alpha + background * (1.0 - alpha)
            notes.append("transparent areas were placed on a light grey background")
            return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        return rgba[:, :, :3].astype(np.uint8)

    if mode == "CMYK":
        notes.append("converted from CMYK to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale image")
    converted = _icc_to_srgb(image, notes)
    if converted is None:
        try:
            converted = image.convert("RGB")
        except (ValueError, OSError):
            raise InputError(
                f"This image uses a colour format ({mode}) PortraitTalk cannot convert; "
                "please save it as an RGB JPEG or PNG."
            ) from None
    return np.asarray(converted, dtype=np.uint8)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info)


def _icc_to_srgb(image: Image.Image, notes: list[str]) -> Image.Image | None:
    """Convert through the embedded colour profile when it is not already sRGB."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK", "L"):
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile) or ""
        if "srgb" in description.lower() and image.mode == "RGB":
            return None
        out = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a broken profile: fall back to Pillow's plain conversion
    if out is None:
        return None
    notes.append(f"colour profile '{description.strip()}' converted to sRGB")
    return out


def _deep_to_uint8(values: np.ndarray, mode: str, notes: list[str]) -> np.ndarray:
    """16-bit / 32-bit integer / float grayscale → uint8 by rescaling the value range."""
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, 0.0)
    lo, hi = float(data.min()), float(data.max())
    if mode.startswith("I;16"):
        scaled = data / 65535.0
        notes.append("16-bit grayscale scaled to 8-bit")
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = data
        notes.append("floating-point grayscale (0–1) scaled to 8-bit")
    elif lo >= 0.0 and hi <= 255.0 and mode == "I":
        scaled = data / 255.0
        notes.append("32-bit grayscale with 8-bit values")
    elif lo >= 0.0 and hi <= 65535.0 and mode == "I":
        scaled = data / 65535.0
        notes.append("16-bit grayscale scaled to 8-bit")
    else:
        # Arbitrary range (e.g. scientific float data): stretch to the full range.
        scaled = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
        notes.append(f"{mode}-mode grayscale with range {lo:g}…{hi:g} stretched to 8-bit")
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
