"""Property: any bytes given as a portrait or a recording end in a valid result or an InputError.

Hypothesis feeds the two loaders arbitrary bytes and, more usefully, real files of every
accepted (and a few refused) format with bytes flipped, cut off or inserted — the damage
uploads really suffer. Whatever comes in, the loader returns a well-formed Portrait or
AudioClip, or raises the project's own InputError with one sentence; any other exception
is a bug. Runs are derandomized (the same examples every run) and bounded in number.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from portraittalk.contracts import AudioClip, Portrait
from portraittalk.errors import InputError
from portraittalk.io.audio import ANALYSIS_RATE, MIN_DURATION_S, ffmpeg_exe, load_audio, write_wav
from portraittalk.io.image import MIN_SIDE, load_portrait

FUZZ = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _image_seeds() -> dict[str, bytes]:
    """Small real pictures (a gradient with a disc) in accepted and refused formats."""
    y, x = np.mgrid[0:48, 0:40]
    rgb = np.stack([x * 6, y * 5, (x + y) * 3], axis=2).astype(np.uint8)
    rgb[(y - 24) ** 2 + (x - 20) ** 2 < 150] = (210, 160, 130)
    base = Image.fromarray(rgb)
    variants = {
        "jpeg": (base, "JPEG", {"quality": 90}), "png": (base, "PNG", {}),
        "png_rgba": (base.convert("RGBA"), "PNG", {}), "png_palette": (base.convert("P"), "PNG", {"transparency": 0}),
        "png_16bit": (Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)), "PNG", {}),
        "gif": (base, "GIF", {}), "bmp": (base, "BMP", {}), "tiff": (base, "TIFF", {}),
        "tiff_cmyk": (base.convert("CMYK"), "TIFF", {}), "webp": (base, "WEBP", {"quality": 80}),
        "webp_lossless": (base, "WEBP", {"lossless": True}),
        # Formats a portrait is never sent in: refused by content, whatever the damage.
        "ppm": (base, "PPM", {}), "qoi": (base, "QOI", {}), "tga": (base, "TGA", {}), "ico": (base, "ICO", {}),
    }
    seeds = {}
    for name, (image, fmt, kwargs) in variants.items():
        buf = io.BytesIO()
        image.save(buf, fmt, **kwargs)
        seeds[name] = buf.getvalue()
    buf = io.BytesIO()
    base.save(buf, "GIF", save_all=True, append_images=[base.rotate(90), base.rotate(180)], duration=50)
    seeds["gif_animated"] = buf.getvalue()
    return seeds


IMAGE_SEEDS = _image_seeds()


@st.composite
def damaged(draw, seeds: dict[str, bytes]) -> bytes:
    """A seed file with bytes overwritten, a run of bytes inserted, and/or the end cut off."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    # Headers hold the sizes, offsets and counts that break parsers: aim most edits there.
    for _ in range(draw(st.integers(0, 8))):
        limit = len(data) if draw(st.booleans()) else min(len(data), 256)
        pos = draw(st.integers(0, limit - 1))
        data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
    if draw(st.integers(0, 3)) == 0:
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    if draw(st.integers(0, 2)) == 0:
        data = data[: draw(st.integers(1, len(data)))]
    return bytes(data)


def check_portrait(source, max_size: int | None) -> None:
    try:
        portrait = load_portrait(source, max_size=max_size)
    except InputError as err:
        message = str(err)
        assert message and "\n" not in message and message.endswith(".")
        return
    assert isinstance(portrait, Portrait)
    h, w = portrait.rgb.shape[:2]
    assert portrait.rgb.dtype == np.uint8 and portrait.rgb.shape == (h, w, 3)
    assert h % 2 == 0 and w % 2 == 0 and min(h, w) >= MIN_SIDE - 1
    if max_size:
        assert max(h, w) <= max_size


@FUZZ
@given(data=st.binary(max_size=2048), max_size=st.sampled_from([None, 256]))
def test_portrait_loader_any_bytes(data, max_size):
    check_portrait(data, max_size)


@settings(FUZZ, max_examples=400)
@given(data=damaged(IMAGE_SEEDS), max_size=st.sampled_from([None, 64, 256]))
def test_portrait_loader_damaged_files(data, max_size):
    check_portrait(data, max_size)


def test_every_undamaged_seed_loads_or_is_refused_by_format():
    refused = {"ppm", "qoi", "tga", "ico"}
    for name, data in IMAGE_SEEDS.items():
        if name in refused:
            with pytest.raises(InputError, match="not an image PortraitTalk can read"):
                load_portrait(data)
        else:
            assert load_portrait(data).size == (40, 48), name


def test_content_decides_not_the_file_name(tmp_path):
    png = tmp_path / "portrait.wav"  # a PNG wearing the wrong name
    png.write_bytes(IMAGE_SEEDS["png"])
    assert np.array_equal(load_portrait(png).rgb, load_portrait(IMAGE_SEEDS["png"]).rgb)
    text = tmp_path / "portrait.png"  # text wearing a picture's name
    text.write_text("<html><body>not a picture</body></html>")
    with pytest.raises(InputError, match="not an image"):
        load_portrait(text)


# ------------------------------------------------------------------------------------------
# Recordings
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_seeds(tmp_path_factory) -> dict[str, bytes]:
    """0.6 s of a voice-like signal in the formats people upload."""
    folder = tmp_path_factory.mktemp("audio_seeds")
    t = np.arange(int(0.6 * ANALYSIS_RATE)) / ANALYSIS_RATE
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 3 * t)) / ANALYSIS_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    src = write_wav(folder / "src.wav", 0.3 * voice, ANALYSIS_RATE)
    seeds = {"wav": src.read_bytes()}
    for ext, args in [("mp3", []), ("m4a", ["-c:a", "aac"]), ("ogg", ["-c:a", "libvorbis"]), ("flac", []),
                      ("opus", ["-c:a", "libopus"]), ("webm", ["-c:a", "libopus"]), ("aiff", []),
                      ("caf", []), ("wav24", ["-c:a", "pcm_s24le", "-f", "wav"]),
                      ("wavf32", ["-c:a", "pcm_f32le", "-f", "wav", "-ac", "2"])]:
        out = folder / f"seed.{ext}"
        done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                               *args, str(out)], capture_output=True, check=False)
        if done.returncode == 0:
            seeds[ext] = out.read_bytes()
    assert len(seeds) >= 6, "the bundled ffmpeg should write these common formats"
    return seeds


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio_fuzz")


def check_recording(path: Path) -> None:
    try:
        clip = load_audio(path, max_duration_s=30.0)
    except InputError as err:
        message = str(err)
        assert message and "\n" not in message and message.endswith(".")
        return
    assert isinstance(clip, AudioClip) and clip.sample_rate == ANALYSIS_RATE
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert np.isfinite(clip.samples).all() and np.abs(clip.samples).max(initial=0) <= 1.0
    assert MIN_DURATION_S <= clip.duration_s <= 30.0 + 1e-3


@settings(FUZZ, max_examples=60, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".mp3", ".bin"]))
def test_audio_loader_any_bytes(audio_folder, data, suffix):
    path = audio_folder / f"any{suffix}"
    path.write_bytes(data)
    check_recording(path)


@settings(FUZZ, max_examples=150, suppress_health_check=list(HealthCheck))
@given(data=st.data(), suffix=st.sampled_from([".wav", ".mp3", ".m4a", ".ogg", ".bin"]))
def test_audio_loader_damaged_files(audio_seeds, audio_folder, data, suffix):
    path = audio_folder / f"damaged{suffix}"  # the name may lie about the content
    path.write_bytes(data.draw(damaged(audio_seeds)))
    check_recording(path)
