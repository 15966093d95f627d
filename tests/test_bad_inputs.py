"""Bad input ends in one clear sentence, never a traceback: the table of cases.

Every case of the table goes through the pipeline (``PortraitTalkPipeline.render``); a
representative subset goes through the CLI (exit code 2 and exactly one ``error: …`` line)
and through the app's API (a ``gr.Error`` sentence, the server still serving afterwards).
Inputs a user may reasonably send (animated GIFs, CMYK, 96 kHz, 6 channels, silence, …)
must make a video, checked on the decoded MP4; the rest must be refused with a sentence
that says what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from portraittalk.errors import InputError
from portraittalk.io.audio import ANALYSIS_RATE, ffmpeg_exe, load_audio, probe_audio, write_wav
from portraittalk.io.video import probe_video, read_frames
from portraittalk.pipeline import RenderResult
from portraittalk.settings import MAX_AUDIO_SECONDS, RenderSettings

from .conftest import EXAMPLES, REPO, SAMPLES, example_file, free_port

FPS = 25.0
SIZE = 256  # small renders keep the table fast; every case still goes through every stage


def one_sentence(message: str) -> str:
    """What a user sees: one line, ending like a sentence, no Python internals."""
    assert "\n" not in message.strip(), message
    assert message.rstrip().endswith((".", ".)")), message
    for internal in ("Traceback", 'File "', "Error:", "Exception", "errno", "0x"):
        assert internal not in message, message
    return message


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ------------------------------------------------------------------------------------------
# Source material: a real portrait and a short real speech clip
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(example_file("grace_hopper.jpg")).convert("RGB")


@pytest.fixture(scope="module")
def speech(folder) -> Path:
    """1.5 s of the bundled LibriVox clip ("he was not an ill…"): speech from the first syllable."""
    path = folder / "speech.wav"
    ffmpeg("-i", str(example_file("librivox_0880.wav")), "-t", "1.5", "-c:a", "pcm_s16le", str(path))
    return path


@pytest.fixture(scope="module")
def speech_samples(speech) -> np.ndarray:
    return load_audio(speech).samples


def render(pipeline, image: Path, audio: Path, out: Path, **settings) -> RenderResult:
    options = dict(max_size=SIZE, score_identity=False, fps=FPS)
    options.update(settings)
    return pipeline.render(image, audio, out, RenderSettings(**options))


def first_frame(result: RenderResult) -> np.ndarray:
    return next(iter(read_frames(result.video_path)))


def upright_at(photo: Image.Image, result: RenderResult) -> np.ndarray:
    """The portrait at the rendered video's size (what frame 0, the rest pose, should show)."""
    w, h = result.report["video"]["size"]
    return np.asarray(photo.resize((w, h), Image.Resampling.BOX))


def assert_playable(result: RenderResult, audio_seconds: float) -> None:
    """A browser-playable MP4 whose picture and sound both last as long as the speech."""
    info = probe_video(result.video_path)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert info.n_frames == result.report["video"]["frames"] == max(1, round(audio_seconds * FPS))
    assert info.audio_duration_s == pytest.approx(info.duration_s, abs=0.05)


# ------------------------------------------------------------------------------------------
# The table: portraits
# ------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    build: Callable[..., Path]  # (folder, photo or speech samples, speech path) → the input file
    error: str | None = None  # a refused input: a phrase its sentence must contain


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size, with a few bytes of data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + chunk(b"IEND", b""))


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _save(folder: Path, name: str, image: Image.Image, **kwargs) -> Path:
    path = folder / name
    image.save(path, **kwargs)
    return path


def _jpeg_bytes(photo: Image.Image) -> bytes:
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _png_with_damaged_data(photo: Image.Image) -> bytes:
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    mid = len(data) // 2
    data[mid:mid + 4096] = bytes(4096)  # zeros over compressed pixel data: CRC and inflate both fail
    return bytes(data)


def _two_faces(photo: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (1024, 600), (90, 90, 90))
    canvas.paste(photo, (0, 0))
    canvas.paste(photo.resize((400, 469)), (560, 60))
    return canvas


def _inverted(photo: Image.Image) -> Image.Image:
    return Image.fromarray(255 - np.asarray(photo))


def _exif_rotated(folder: Path, photo: Image.Image) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the pixels are stored turned left
    return _save(folder, "phone_photo.jpg", photo.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes(),
                 quality=92)


def _palette_with_transparency(photo: Image.Image) -> Image.Image:
    rgba = photo.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:, :40] = 0  # a transparent strip at the left edge, away from the face
    rgba.putalpha(Image.fromarray(alpha))
    return rgba.quantize(colors=255, method=Image.Quantize.FASTOCTREE)


def _sixteen_bit_gray(photo: Image.Image) -> Image.Image:
    gray16 = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    return Image.fromarray(gray16)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><circle cx="100" cy="100" r="80"/></svg>'

IMAGE_ERRORS = [
    Case("text_file", lambda d, p: _write(d, "portrait.jpg", b"Dear visitor, this is a text file."), "not an image"),
    Case("svg_drawing", lambda d, p: _write(d, "face.svg", SVG), "not an image"),
    Case("exotic_format_ppm", lambda d, p: _save(d, "portrait.ppm", p), "not an image"),
    Case("zero_bytes", lambda d, p: _write(d, "empty.png", b""), "empty (0 bytes)"),
    Case("truncated_jpeg", lambda d, p: _write(d, "cut.jpg", _jpeg_bytes(p)[:9000]), "damaged or incomplete"),
    Case("damaged_png_data", lambda d, p: _write(d, "damaged.png", _png_with_damaged_data(p)), "damaged or incomplete"),
    Case("decompression_bomb", lambda d, p: _write(d, "bomb.png", _png_claiming(30000, 30000)), "too large"),
    Case("huge_dimensions", lambda d, p: _write(d, "huge.png", _png_claiming(12000, 9000)), "12000×9000"),
    Case("tiny_image", lambda d, p: _save(d, "icon.png", p.resize((16, 19))), "too small"),
    Case("no_face", lambda d, p: _save(d, "sky.png", Image.fromarray(
        np.tile(np.linspace(40, 220, 320, dtype=np.uint8), (240, 1)))), "No face was found"),
]


@pytest.mark.parametrize("case", IMAGE_ERRORS, ids=lambda c: c.id)
def test_unusable_portrait_is_refused_with_a_sentence(pipeline, folder, photo, speech, case):
    image = case.build(folder, photo)
    out = folder / f"refused_{case.id}.mp4"
    with pytest.raises(InputError) as err:
        render(pipeline, image, speech, out)
    assert case.error in one_sentence(str(err.value))
    assert not out.exists()


_LOAD_IN_CHILD = """
import json, sys
from portraittalk.io.image import load_portrait
p = load_portrait(sys.argv[1], max_size=512)
top = p.rgb[:40].reshape(-1, 3).mean(axis=0).tolist()
# VmHWM: this process's own peak (ru_maxrss would include the parent's, carried across exec).
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"size": p.size, "notes": p.notes, "top": top, "peak_mb": peak_kb / 1024}))
"""


def test_large_transparent_photo_decodes_in_bounded_memory(folder):
    """16 megapixels with an alpha channel (allowed, under the pixel cap): shrunk while decoding,
    so a few such uploads at once cannot exhaust the server's memory."""
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (80, 80, 4), dtype=np.uint8)
    tile[..., 3] = 255
    tile[:8, :, 3] = 0  # a transparent band along the top tenth
    big = np.asarray(Image.fromarray(tile).resize((4000, 4000), Image.Resampling.NEAREST))
    path = folder / "poster.png"
    Image.fromarray(big).save(path, compress_level=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _LOAD_IN_CHILD, str(path)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["size"] == [512, 512]
    assert np.allclose(result["top"], 200, atol=1)  # the transparent band became the grey background
    # Decoding alone holds 64 MB of RGBA; converting at full size took about 1 GB.
    assert result["peak_mb"] < 400, result


def test_no_face_in_a_real_photo(pipeline, folder, speech):
    coffee = SAMPLES / "images" / "coffee_no_face.png"
    if not coffee.is_file():
        pytest.skip("shared sample images are not available")
    with pytest.raises(InputError) as err:
        render(pipeline, coffee, speech, folder / "coffee.mp4")
    assert "front-facing photo" in one_sentence(str(err.value))


def test_animated_gif_and_webp_use_the_first_frame(pipeline, folder, photo, speech):
    frames = [photo, _inverted(photo), _inverted(photo)]
    for name in ("animated.gif", "animated.webp"):
        path = folder / name
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
        result = render(pipeline, path, speech, folder / f"{name}.mp4")
        assert any("first frame" in n for n in result.report["input"]["image"]["notes"])
        shown = first_frame(result)
        expected = upright_at(photo, result)
        assert mean_abs(shown, expected) < 12 < mean_abs(shown, 255 - expected)


@pytest.mark.parametrize("kind", ["cmyk_jpeg", "gray16_png", "palette_transparency_png", "exif_rotated_jpeg"])
def test_unusual_encodings_render_the_same_portrait(pipeline, folder, photo, speech, kind):
    if kind == "cmyk_jpeg":
        path, note, expected = _save(folder, "print.jpg", photo.convert("CMYK"), quality=95), "CMYK", photo
    elif kind == "gray16_png":
        path, note = _save(folder, "scan16.png", _sixteen_bit_gray(photo)), "16-bit"
        expected = photo.convert("L").convert("RGB")
    elif kind == "palette_transparency_png":
        path, note = _save(folder, "palette.png", _palette_with_transparency(photo)), "transparent"
        expected = photo
    else:
        path, note, expected = _exif_rotated(folder, photo), "EXIF", photo
    result = render(pipeline, path, speech, folder / f"{kind}.mp4")
    assert any(note in n for n in result.report["input"]["image"]["notes"]), result.report["input"]["image"]
    w, h = result.report["video"]["size"]
    assert h > w  # upright, like the portrait (512×600)
    shown, want = first_frame(result), upright_at(expected, result)
    if kind == "palette_transparency_png":  # the transparent strip became light grey
        strip = max(1, round(40 * w / 512)) - 1
        assert np.abs(shown[:, :strip].astype(int) - 200).mean() < 12
        shown, want = shown[:, strip + 2:], want[:, strip + 2:]
    assert mean_abs(shown, want) < 12


def test_tiny_face_renders_and_says_it_is_small(pipeline, folder, photo, speech):
    result = render(pipeline, _save(folder, "thumbnail.png", photo.resize((80, 94))), speech, folder / "tiny.mp4")
    assert any("very small" in w for w in result.warnings)
    assert_playable(result, 1.5)


def test_several_faces_report_which_one_talks(pipeline, folder, photo, speech):
    result = render(pipeline, _save(folder, "two_people.jpg", _two_faces(photo), quality=92), speech,
                    folder / "two.mp4", max_size=512)
    face = result.report["input"]["face"]
    assert face["faces_found"] == 2
    note = next(w for w in result.warnings if "faces were found" in w)
    box = [int(v) for v in re.search(r"box \[([\d, ]+)\]", note).group(1).split(",")]
    # The larger face (left half) is the one animated, and the note names the report's face box.
    assert (face["box"][0] + face["box"][2]) / 2 < 256 and box == list(face["box"])
    assert_playable(result, 1.5)


@pytest.mark.parametrize("name,expect", [
    ("cameraman_profile_gray.png", "turned"),  # profile, partly hidden by the camera
    ("mona_lisa_painting_lowres.jpg", None),  # a painting
    ("group_photo_tiny_faces.jpg", "faces were found"),
    ("obama_partial_face_cropped.jpg", None),  # face cut off at the edge
])
def test_hard_real_portraits_work_or_explain(pipeline, folder, speech, name, expect):
    path = SAMPLES / "images" / name
    if not path.is_file():
        pytest.skip("shared sample images are not available")
    try:
        result = render(pipeline, path, speech, folder / f"{path.stem}.mp4")
    except InputError as err:  # explained: acceptable for a hard case, never a crash
        assert "face" in one_sentence(str(err)).lower()
        return
    assert_playable(result, 1.5)
    if expect:
        assert any(expect in w for w in result.warnings), result.warnings


# ------------------------------------------------------------------------------------------
# The table: recordings
# ------------------------------------------------------------------------------------------
def _float_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    data = np.asarray(samples, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
                     + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


def _with_nan(x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float32).copy()
    y[::97] = np.nan
    y[5::211] = np.inf
    y[9::307] = -np.inf
    return y


def _convert(src: Path, dest: Path, *args: str) -> Path:
    ffmpeg("-i", str(src), *args, str(dest))
    return dest


def _truncated_m4a(folder: Path, speech: Path) -> Path:
    full = _convert(speech, folder / "full.m4a", "-c:a", "aac")
    return _write(folder, "cut.m4a", full.read_bytes()[:1500])  # the index (moov) never arrived


def _over_the_limit(folder: Path) -> Path:
    # Telephone-rate silence just past the limit: 16-bit 8 kHz keeps the file small.
    return write_wav(folder / "long_meeting.wav", np.zeros(int((MAX_AUDIO_SECONDS + 5) * 8000), np.float32), 8000)


def _hls_playlist(folder: Path) -> Path:
    # A playlist would make ffmpeg read other files on the server: never followed.
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n{EXAMPLES / 'librivox_0880.wav'}\n#EXT-X-ENDLIST\n"
    return _write(folder, "stream.m3u8", text.encode())


def _silent_video(folder: Path) -> Path:
    path = folder / "screen_recording.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=navy:s=64x64:d=2", "-c:v", "libx264", str(path))
    return path


AUDIO_ERRORS = [
    Case("text_file", lambda d, x, s: _write(d, "recording.wav", b"this is not a recording"), "could not be read as audio"),
    Case("zero_bytes", lambda d, x, s: _write(d, "empty.mp3", b""), "empty (0 bytes)"),
    Case("zero_length_wav", lambda d, x, s: write_wav(d / "nothing.wav", np.zeros(0), 16000), "no sound"),
    Case("garbage_after_header", lambda d, x, s: _write(d, "garbled.wav", b"RIFF\xff\xff\xff\xffWAVEfmt "
                                                         + bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8))),
         "could not be read as audio"),
    Case("truncated_m4a", lambda d, x, s: _truncated_m4a(d, s), "damaged"),
    Case("too_short", lambda d, x, s: write_wav(d / "blip.wav", x[: int(0.2 * ANALYSIS_RATE)], ANALYSIS_RATE), "0.20 s"),
    Case("longer_than_limit", lambda d, x, s: _over_the_limit(d), "the limit is 10:00 min"),
    Case("photo_as_audio", lambda d, x, s: example_file("grace_hopper.jpg"), "no audio track"),
    Case("video_without_sound", lambda d, x, s: _silent_video(d), "no audio track"),
    Case("playlist_pointing_elsewhere", lambda d, x, s: _hls_playlist(d), "could not be read as audio"),
]


@pytest.mark.parametrize("case", AUDIO_ERRORS, ids=lambda c: c.id)
def test_unusable_recording_is_refused_with_a_sentence(pipeline, folder, photo, speech, speech_samples, case):
    audio = case.build(folder, speech_samples, speech)
    out = folder / f"refused_audio_{case.id}.mp4"
    with pytest.raises(InputError) as err:
        render(pipeline, example_file("grace_hopper.jpg"), audio, out)
    assert case.error in one_sentence(str(err.value))
    assert not out.exists()


def _music(folder: Path) -> Path:
    """Three seconds of chords with a beat: music, no voice."""
    t = np.arange(3 * ANALYSIS_RATE) / ANALYSIS_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0, 523.3))
    beat = 0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0)
    return write_wav(folder / "tune.wav", 0.15 * chord * beat, ANALYSIS_RATE)


# (id, build, what must hold: "speaks" = the mouth follows the speech, "idle" = still face +
#  a "no speech" note, "speaks_or_idle" = either, an explained idle face being acceptable)
AUDIO_OK = [
    ("silence", lambda d, x, s: write_wav(d / "silence.wav", np.zeros(2 * ANALYSIS_RATE), ANALYSIS_RATE), "idle"),
    ("very_quiet_-57dBFS", lambda d, x, s: write_wav(d / "quiet.wav", 0.03 * x, ANALYSIS_RATE), "speaks"),
    ("near_silent_-70dBFS", lambda d, x, s: write_wav(d / "whisper.wav", 0.007 * x, ANALYSIS_RATE), "speaks_or_idle"),
    ("clipped_very_loud", lambda d, x, s: write_wav(d / "loud.wav", np.clip(30 * x, -1, 1), ANALYSIS_RATE), "speaks"),
    ("dc_offset", lambda d, x, s: write_wav(d / "dc.wav", np.clip(x + 0.45, -1, 1), ANALYSIS_RATE), "speaks"),
    ("nan_and_inf_samples", lambda d, x, s: _float_wav(d / "daw_export.wav", _with_nan(x), ANALYSIS_RATE), "speaks"),
    ("telephone_8k_mulaw", lambda d, x, s: _convert(s, d / "phone.wav", "-ar", "8000", "-c:a", "pcm_mulaw"), "speaks"),
    ("studio_96k_24bit", lambda d, x, s: _convert(s, d / "studio.wav", "-ar", "96000", "-c:a", "pcm_s24le"), "speaks"),
    ("six_channels", lambda d, x, s: _convert(s, d / "surround.wav", "-ac", "6"), "speaks"),
    ("music_without_speech", lambda d, x, s: _music(d), "speaks_or_idle"),
]


@pytest.mark.parametrize("name,build,expect", AUDIO_OK, ids=[c[0] for c in AUDIO_OK])
def test_difficult_recordings_still_make_a_video(pipeline, folder, speech, speech_samples, name, build, expect):
    audio = build(folder, speech_samples, speech)
    result = render(pipeline, example_file("grace_hopper.jpg"), audio, folder / f"audio_{name}.mp4")
    duration = load_audio(audio).duration_s
    assert_playable(result, duration)
    sound = probe_audio(result.video_path)
    assert sound is not None and 1 <= sound.channels <= 2  # what every browser plays
    jaw = np.asarray(result.motion.jaw_open)
    speaks = jaw.max() > 0.2
    idle = jaw.max() < 0.05 and any("no speech" in w for w in result.warnings)
    assert {"speaks": speaks, "idle": idle, "speaks_or_idle": speaks or idle}[expect], (jaw.max(), result.warnings)


def test_nan_samples_are_silenced_not_turned_into_clicks(pipeline, folder, speech_samples):
    clean = render(pipeline, example_file("grace_hopper.jpg"), _float_wav(folder / "clean_float.wav", speech_samples,
                   ANALYSIS_RATE), folder / "clean_float.mp4")
    broken = render(pipeline, example_file("grace_hopper.jpg"), _float_wav(folder / "nan_float.wav",
                    _with_nan(speech_samples), ANALYSIS_RATE), folder / "nan_float.mp4")
    heard = {name: load_audio(r.video_path).samples for name, r in (("clean", clean), ("nan", broken))}
    rms = {name: float(np.sqrt(np.mean(np.square(x)))) for name, x in heard.items()}
    peak = {name: float(np.abs(x).max()) for name, x in heard.items()}
    # One bad sample in ~60 at full scale would more than double the level and peak at 1.0.
    assert 0.85 < rms["nan"] / rms["clean"] < 1.15, rms
    assert peak["nan"] < 1.2 * peak["clean"] + 0.02, peak


def test_a_far_too_quiet_recording_is_named_as_such(pipeline, folder, speech_samples):
    faint = write_wav(folder / "faint.wav", 0.0003 * speech_samples, ANALYSIS_RATE)  # about −80 dBFS
    result = render(pipeline, example_file("grace_hopper.jpg"), faint, folder / "faint.mp4")
    note = next(w for w in result.warnings if "no speech" in w)
    assert "very quiet" in note and "dBFS" in note and "raise its level" in note
    assert np.asarray(result.motion.jaw_open).max() < 0.05
    silent = write_wav(folder / "zeros.wav", np.zeros(2 * ANALYSIS_RATE), ANALYSIS_RATE)
    result = render(pipeline, example_file("grace_hopper.jpg"), silent, folder / "zeros.mp4")
    no_speech = "The audio contains no speech; the video shows an idle face."
    assert [w for w in result.warnings if "no speech" in w] == [no_speech]


def test_recording_details_are_reported(pipeline, folder, speech):
    audio = _convert(speech, folder / "report_96k_6ch.wav", "-ar", "96000", "-ac", "6", "-c:a", "pcm_s24le")
    result = render(pipeline, example_file("grace_hopper.jpg"), audio, folder / "report.mp4")
    info = result.report["input"]["audio"]
    assert (info["original_rate"], info["original_channels"], info["codec"]) == (96000, 6, "pcm_s24le")


# ------------------------------------------------------------------------------------------
# The table: settings
# ------------------------------------------------------------------------------------------
SETTING_ERRORS = [
    ({"fps": 0}, "'fps' must be between 5 and 60"),
    ({"fps": 10_000}, "'fps' must be between 5 and 60"),
    ({"fps": float("nan")}, "'fps' must be between"),
    ({"max_size": 8}, "'max_size' must be between 64 and 4096"),
    ({"max_size": 100_000}, "'max_size' must be between 64 and 4096"),
    ({"audio_strength": -1.0}, "'audio_strength' must be between 0 and 2"),
    ({"head_motion": float("inf")}, "'head_motion' must be between 0 and 2"),
    ({"blink_rate": 1e300}, "'blink_rate' must be between 0 and 2"),
    ({"diffusion_steps": 0}, "'diffusion_steps' must be between"),
    ({"guidance_scale": 1e9}, "'guidance_scale' must be between"),
    ({"engine": "gif"}, "choose one of: warp, diffusion"),
    ({"seed": -1}, "seed"),
    ({"prompt": "smile " * 1000}, "too long"),
    ({"transcript": "word " * 10_000}, "too long"),
]


@pytest.mark.parametrize("values,error", SETTING_ERRORS, ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else "")
def test_out_of_range_setting_is_refused_before_any_work(pipeline, folder, speech, values, error):
    out = folder / "settings_refused.mp4"
    with pytest.raises(InputError) as err:
        render(pipeline, example_file("grace_hopper.jpg"), speech, out, **values)
    assert error in one_sentence(str(err.value))
    assert not out.exists()


@pytest.mark.parametrize("values", [
    {"transcript": "he was \udcff\udcfe not an ill \x00\x07 disposed"},  # undecodable bytes, control characters
    {"transcript": "zebra quantum " * 1400},  # long (≈20 000 characters, the limit) and wrong
    {"prompt": "slight smile; \udcff\x00 nods"},
    {"seed": 2**63 - 1, "fps": 60},
], ids=["non_utf8_transcript", "transcript_at_the_limit", "non_utf8_prompt", "huge_seed_60fps"])
def test_odd_but_valid_settings_still_make_a_video(pipeline, folder, speech, values):
    result = render(pipeline, example_file("grace_hopper.jpg"), speech, folder / "odd_settings.mp4", **values)
    fps = values.get("fps", FPS)
    info = probe_video(result.video_path)
    assert info.n_frames == round(1.5 * fps) and info.audio_codec == "aac"
    json.dumps(result.report)  # the report can always be written out


# ------------------------------------------------------------------------------------------
# The CLI: exit code 2 and exactly one line on stderr, nothing half-written left behind
# ------------------------------------------------------------------------------------------
def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "portraittalk", "render", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


# A representative subset (each run starts a fresh process); the pipeline table covers the rest.
@pytest.mark.parametrize("case", [
    "zero_byte_portrait", "text_as_audio", "too_short_audio", "fps_zero", "negative_seed",
    "output_is_a_folder", "output_under_a_file", "scores_under_a_file", "motion_is_a_folder",
])
def test_cli_refuses_bad_input_with_one_line(folder, photo, speech, speech_samples, case):
    image, audio = str(example_file("grace_hopper.jpg")), str(speech)
    out = folder / f"cli_{case}.mp4"
    extra: list[str] = []
    expect = {
        "zero_byte_portrait": "empty (0 bytes)", "text_as_audio": "could not be read as audio",
        "too_short_audio": "0.20 s", "fps_zero": "'fps' must be between", "negative_seed": "seed",
        "output_is_a_folder": "folder", "output_under_a_file": "cannot",
        "scores_under_a_file": "cannot", "motion_is_a_folder": "motion.json",
    }[case]
    if case == "zero_byte_portrait":
        image = str(_write(folder, "cli_empty.jpg", b""))
    elif case == "text_as_audio":
        audio = str(_write(folder, "cli_notes.mp3", b"shopping list: eggs, milk"))
    elif case == "too_short_audio":
        audio = str(write_wav(folder / "cli_blip.wav", speech_samples[: int(0.2 * ANALYSIS_RATE)], ANALYSIS_RATE))
    elif case == "fps_zero":
        extra = ["--fps", "0"]
    elif case == "negative_seed":
        extra = ["--seed", "-1"]
    elif case == "output_is_a_folder":
        out = folder / "cli_videos"
        out.mkdir(exist_ok=True)
    elif case == "output_under_a_file":
        out = _write(folder, "cli_plain_file", b"x") / "video.mp4"
    elif case == "scores_under_a_file":  # refused before the render, not after it
        extra = ["--scores", str(_write(folder, "cli_scores_file", b"x") / "scores.json")]
    elif case == "motion_is_a_folder":
        (folder / "cli_motion_dir").mkdir(exist_ok=True)
        extra = ["--motion", str(folder / "cli_motion_dir")]
    done = run_cli("--image", image, "--audio", audio, "--out", str(out), "--max-size", str(SIZE),
                   "--no-identity", *extra)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expect in one_sentence(lines[0][len("error: "):])
    assert not done.stdout.strip()
    leftovers = [p.name for p in folder.glob("**/.*.mp4")] + ([out.name] if out.is_file() else [])
    assert not leftovers


def test_cli_reads_a_non_utf8_transcript_file(folder, speech):
    transcript = _write(folder, "latin1.txt", "he was not an ill disposed young man — café".encode("latin-1", "replace"))
    out = folder / "cli_latin1.mp4"
    done = run_cli("--image", str(example_file("grace_hopper.jpg")), "--audio", str(speech), "--out", str(out),
                   "--transcript", f"@{transcript}", "--max-size", str(SIZE), "--no-identity")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["video"] == str(out)
    assert probe_video(out).n_frames == round(1.5 * FPS)


# ------------------------------------------------------------------------------------------
# The app: the same inputs through its API, answered with a sentence; the server keeps serving
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_client(pipeline, tmp_path_factory):
    gradio_client = pytest.importorskip("gradio_client")
    if not (REPO / "app.py").is_file():
        pytest.skip("app.py is not in this checkout")
    sys.path.insert(0, str(REPO))
    import app
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    service = RenderService(pipeline, ServerSettings(result_cache=tmp_path_factory.mktemp("bad_inputs_results"),
                                                     result_cache_entries=4))
    demo = app.build_demo(service)
    _, url, _ = app.launch(demo, service.settings, server_name="127.0.0.1", server_port=free_port(),
                           prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(url, verbose=False)
    finally:
        demo.close()


def _app_error(client, *args, **kwargs) -> str:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    files = [handle_file(str(a)) if isinstance(a, Path) else a for a in args]
    with pytest.raises(AppError) as err:
        client.predict(*files, api_name="/render", **{"max_size": SIZE, **kwargs})
    return str(err.value)


APP_CASES = [
    # (id, portrait builder, audio builder, settings, phrase of the sentence)
    ("zero_byte_portrait", lambda d, p: _write(d, "app_empty.png", b""), None, {}, "not a picture"),
    ("text_as_portrait", lambda d, p: _write(d, "app_note.jpg", b"not a photo at all"), None, {}, "not a picture"),
    ("truncated_jpeg", lambda d, p: _write(d, "app_cut.jpg", _jpeg_bytes(p)[:9000]), None, {}, "damaged or incomplete"),
    ("huge_dimensions", lambda d, p: _write(d, "app_huge.png", _png_claiming(12000, 9000)), None, {}, "too large"),
    ("svg_drawing", lambda d, p: _write(d, "app_face.svg", SVG), None, {}, "not an image"),
    ("no_face", lambda d, p: _save(d, "app_sky.png", Image.fromarray(
        np.tile(np.linspace(40, 220, 320, dtype=np.uint8), (240, 1)))), None, {}, "No face was found"),
    ("text_as_audio", None, lambda d, x: _write(d, "app_notes.wav", b"not audio"), {}, "could not be read as audio"),
    ("zero_length_audio", None, lambda d, x: write_wav(d / "app_nothing.wav", np.zeros(0), 16000), {}, "no sound"),
    ("too_short_audio", None, lambda d, x: write_wav(d / "app_blip.wav", x[:3200], ANALYSIS_RATE), {}, "0.20 s"),
    ("playlist_as_audio", None, lambda d, x: _hls_playlist(d), {}, "could not be read as audio"),
    ("fps_out_of_range", None, None, {"fps": 500}, "maximum value"),
    ("strength_out_of_range", None, None, {"audio_strength": -3}, "minimum value"),
    ("size_not_offered", None, None, {"max_size": 100_000}, "100000"),
    ("negative_seed", None, None, {"seed": -5}, "minimum value 0"),
    ("transcript_too_long", None, None, {"transcript": "word " * 10_000}, "too long"),
    ("prompt_too_long", None, None, {"prompt": "smile " * 1000}, "too long"),
]


@pytest.mark.parametrize("name,make_image,make_audio,settings,phrase", APP_CASES, ids=[c[0] for c in APP_CASES])
def test_app_answers_bad_input_with_a_sentence(app_client, folder, photo, speech, speech_samples,
                                               name, make_image, make_audio, settings, phrase):
    image = make_image(folder, photo) if make_image else example_file("grace_hopper.jpg")
    audio = make_audio(folder, speech_samples) if make_audio else speech
    message = _app_error(app_client, image, audio, **settings)
    assert phrase in message, message
    assert "Traceback" not in message and 'File "' not in message and "\n" not in message.strip()


def test_app_never_opens_a_server_path_named_by_the_client(app_client, folder, photo):
    """A raw API call naming a file already on the server (not uploaded) is refused; only
    uploads reach the pipeline. (gradio_client would upload a local path, so plain HTTP.)"""
    import httpx

    secret_portrait = _save(folder, "private_portrait.jpg", photo)  # on the server, never uploaded
    url = app_client.src.rstrip("/") + "/"
    clip = httpx.post(url + "gradio_api/upload", files=[("files", open(example_file("librivox_0880.wav"), "rb"))],
                      timeout=60).json()[0]

    def file_data(path: str) -> dict:
        return {"path": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}

    for path in (str(secret_portrait), f"{clip}/../../../{secret_portrait}"):
        data = [file_data(path), file_data(clip), "", "", None, 1, 1, 1, 1, 1, 1, 0, 25, SIZE, "warp", 25, 3.5]
        event = httpx.post(url + "gradio_api/call/render", json={"data": data}, timeout=60).json()["event_id"]
        answer = httpx.get(url + f"gradio_api/call/render/{event}", timeout=300).text
        assert answer.startswith("event: error"), answer[:300]
        assert "portraittalk.mp4" not in answer and "Traceback" not in answer


def test_app_keeps_serving_and_renders_difficult_inputs(app_client, folder, photo, speech, speech_samples):
    """After every refusal above, the server still renders: a CMYK group picture with a
    NaN-laden 96 kHz recording comes back as a video with its notes."""
    from gradio_client import handle_file

    image = _save(folder, "app_two_people_cmyk.jpg", _two_faces(photo).convert("CMYK"), quality=92)
    audio = _convert(_float_wav(folder / "app_nan.wav", _with_nan(speech_samples), ANALYSIS_RATE),
                     folder / "app_nan_96k.wav", "-ar", "96000", "-c:a", "pcm_f32le")
    video, report = app_client.predict(handle_file(str(image)), handle_file(str(audio)), api_name="/render",
                                       max_size=SIZE)
    assert probe_video(video).n_frames == report["video"]["frames"] == round(1.5 * FPS)
    assert report["input"]["face"]["faces_found"] == 2
    assert any("faces were found" in w for w in report["warnings"])
    assert "CMYK" in " ".join(report["input"]["image"]["notes"])


# ------------------------------------------------------------------------------------------
# Safe by default
# ------------------------------------------------------------------------------------------
def test_no_pickle_loading_anywhere_in_the_project():
    """Model weights are read as safetensors only: nothing unpickles a file."""
    risky = re.compile(r"\btorch\.load\(|\bpickle\.loads?\(|allow_pickle\s*=\s*True|\bjoblib\.load\(|\bdill\.load")
    sources = list((REPO / "portraittalk").rglob("*.py")) + [REPO / "app.py"]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in sources if p.is_file()
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if risky.search(line) and not line.lstrip().startswith("#")]
    assert not hits


def test_app_launch_defaults_are_local_private_and_limit_uploads(monkeypatch):
    """`python app.py` binds loopback unless told otherwise, never opens a share link, and
    refuses oversized uploads before storing them."""
    if not (REPO / "app.py").is_file():
        pytest.skip("app.py is not in this checkout")
    sys.path.insert(0, str(REPO))
    import app
    from portraittalk.server.settings import ServerSettings

    class Recorder:
        def launch(self, **options):
            self.options = options

    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SHARE", raising=False)
    demo = Recorder()
    app.launch(demo, ServerSettings.from_env())
    assert demo.options["server_name"] == "127.0.0.1"
    assert demo.options["share"] is False
    from gradio.utils import _parse_file_size

    limit = demo.options.get("max_file_size")
    assert limit is not None, "uploads need a size limit (launch(max_file_size=…))"
    assert _parse_file_size(limit) <= 200 * 2**20
