"""Test inputs made at run time from the redistributable examples, for the cases the examples
alone don't show: two faces, a small face, a turned head, no face, a face cut off at the edge;
a quiet narrowband conversation with long pauses, speech with a syllable-timed rhythm, and
speech over a music bed at another sample rate.

Every maker is deterministic. The one picture not made from the examples, the no-face photo,
is scikit-learn's ``china.jpg`` (danielbuechele on Flickr, CC BY 2.0), read from the installed
package (librosa depends on scikit-learn), never copied into the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RATE = 16000


def example_rgb(name: str) -> np.ndarray:
    from portraittalk.io.image import load_portrait
    return load_portrait(EXAMPLES / name).rgb


def example_speech(n: str, rate: int = RATE) -> np.ndarray:
    """examples/librivox_<n>.wav as float32 mono at ``rate``."""
    import librosa
    y, _ = librosa.load(str(EXAMPLES / f"librivox_{n}.wav"), sr=rate, mono=True)
    return y.astype(np.float32)


# --- pictures ---------------------------------------------------------------------------------------
def two_faces() -> np.ndarray:
    """Grace Hopper beside a smaller Eileen Collins: two people, one clearly the larger face."""
    hopper, collins = example_rgb("grace_hopper.jpg"), example_rgb("astronaut_eileen_collins.jpg")
    h = hopper.shape[0]
    size = (round(collins.shape[1] * 0.8 * h / collins.shape[0]), round(0.8 * h))
    collins = cv2.resize(collins, size, interpolation=cv2.INTER_AREA)
    canvas = np.full((h, hopper.shape[1] + collins.shape[1], 3), 90, np.uint8)
    canvas[:, :hopper.shape[1]] = hopper
    canvas[h - collins.shape[0]:, hopper.shape[1]:] = collins
    return canvas


def small_face() -> np.ndarray:
    """The Hopper portrait at 35 % near the top of a tall frame: a face of ~70 px, like a full-length photo."""
    hopper = example_rgb("grace_hopper.jpg")
    small = cv2.resize(hopper, (round(hopper.shape[1] * 0.35), round(hopper.shape[0] * 0.35)),
                       interpolation=cv2.INTER_AREA)
    canvas = np.full((1024, 452, 3), 200, np.uint8)
    x = (canvas.shape[1] - small.shape[1]) // 2
    canvas[40:40 + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def no_face() -> np.ndarray:
    """A real photo without a person: a temple among trees (scikit-learn's sample image)."""
    from sklearn.datasets import load_sample_image
    return load_sample_image("china.jpg")


def cut_off_face(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The picture cut at 70 % of the face box's width: the face runs off the right edge."""
    cut = int(box[0] + 0.7 * (box[2] - box[0]))
    return np.ascontiguousarray(rgb[:, :cut - cut % 2])


def turned_head(rgb: np.ndarray, landmarks: np.ndarray, degrees: float) -> np.ndarray:
    """The face turned ``degrees`` about a vertical axis behind it.

    The 478-point mesh of the frontal face is rotated in 3-D and every triangle of its
    Delaunay triangulation (plus a fixed ring around the head, so the background only
    stretches) is warped to its new place, far triangles first, hidden ones dropped.
    """
    from scipy.spatial import Delaunay

    h, w = rgb.shape[:2]
    (x0, y0), (x1, y1) = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reach = 0.9 * max(x1 - x0, y1 - y0)
    ring = [(cx + reach * np.cos(t), cy + 1.2 * reach * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
    frame = [(0, 0), (w - 1, 0), (w - 1, h - 1), (0, h - 1), (w / 2, 0), (w / 2, h - 1), (0, h / 2), (w - 1, h / 2)]
    fixed = np.array(ring + frame, np.float64)
    a = np.radians(degrees)
    x, z = landmarks[:, 0] - cx, landmarks[:, 2] - landmarks[:, 2].max()
    turned = np.stack([cx + x * np.cos(a) - z * np.sin(a), landmarks[:, 1]], 1)
    src = np.vstack([landmarks[:, :2], fixed])
    dst = np.vstack([turned, fixed])
    depth = np.concatenate([x * np.sin(a) + z * np.cos(a), np.full(len(fixed), np.inf)])
    triangles = Delaunay(src).simplices
    out = rgb.copy()
    for tri in triangles[np.argsort(-depth[triangles].mean(1))]:  # mesh z grows away from the camera
        s, d = src[tri].astype(np.float32), dst[tri].astype(np.float32)
        if _signed_area(s) * _signed_area(d) <= 0:  # turned away: hidden
            continue
        bx, by, bw, bh = cv2.boundingRect(d)
        x_lo, y_lo, x_hi, y_hi = max(bx, 0), max(by, 0), min(bx + bw, w), min(by + bh, h)
        if x_hi <= x_lo or y_hi <= y_lo:
            continue
        m = cv2.getAffineTransform(s, d - np.float32([bx, by]))
        patch = cv2.warpAffine(rgb, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillConvexPoly(mask, np.round(d - [bx, by]).astype(np.int32), 1)
        inner = (slice(y_lo - by, y_hi - by), slice(x_lo - bx, x_hi - bx))
        keep = mask[inner].astype(bool)
        out[y_lo:y_hi, x_lo:x_hi][keep] = patch[inner][keep]
    return out


def _signed_area(p: np.ndarray) -> float:
    return float((p[1, 0] - p[0, 0]) * (p[2, 1] - p[0, 1]) - (p[2, 0] - p[0, 0]) * (p[1, 1] - p[0, 1]))


def turned_head_gray() -> np.ndarray:
    """Grace Hopper's head turned 60° to the side, in grayscale (a single-channel picture)."""
    from portraittalk.analysis.face import FaceAnalyzer
    hopper = example_rgb("grace_hopper.jpg")
    turned = turned_head(hopper, FaceAnalyzer().analyze(hopper).landmarks, 60.0)
    return cv2.cvtColor(turned, cv2.COLOR_RGB2GRAY)


# --- recordings -------------------------------------------------------------------------------------
def _at_dbfs(y: np.ndarray, dbfs: float) -> np.ndarray:
    return y * (10 ** (dbfs / 20) / np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def narrowband_conversation() -> np.ndarray:
    """The three LibriVox clips with long pauses between them, band-limited to 300–3400 Hz like
    a telephone line, about −30 dBFS RMS over a faint hiss."""
    from scipy.signal import butter, sosfilt

    pause = np.zeros(int(1.4 * RATE), np.float32)
    y = np.concatenate([example_speech("0870"), pause, example_speech("0880"), pause, example_speech("0920")])
    y = sosfilt(butter(6, (300, 3400), "bandpass", fs=RATE, output="sos"), y)
    hiss = np.random.default_rng(0).normal(0, 10 ** (-65 / 20), len(y))
    return (_at_dbfs(y, -30.0) + hiss).astype(np.float32)


def syllable_timed_speech() -> np.ndarray:
    """English speech re-timed like Spanish or Japanese: every vowel of the reference alignment
    stretched or squeezed to 0.1 s, so successive vowels no longer differ in length (English
    rhythm comes from its long stressed and short unstressed vowels)."""
    import librosa

    from portraittalk.motion.visemes import VOWELS, normalize_phone

    parts = []
    for n in ("0920", "0880"):
        y = example_speech(n)
        doc = json.loads((EXAMPLES / f"librivox_{n}.phone.json").read_text())
        t = 0
        for word in doc["w"]:
            for p in word["w"]:
                a, b = int(p["b"] * RATE), int((p["b"] + p["d"]) * RATE)
                if normalize_phone(p["t"]) in VOWELS:
                    parts += [y[t:a], librosa.effects.time_stretch(y[a:b], rate=(b - a) / (0.1 * RATE), n_fft=256,
                                                                   hop_length=64)]
                    t = b
        parts += [y[t:], np.zeros(int(0.6 * RATE), np.float32)]
    return np.concatenate(parts[:-1]).astype(np.float32)


MUSIC_RATE = 24000


def speech_over_music() -> np.ndarray:
    """Two LibriVox clips over strummed guitar chords 4 dB under the voice, at 24 kHz: the
    accompaniment fills every gap between words, as in a song."""
    pause = np.zeros(int(0.8 * MUSIC_RATE), np.float32)
    voice = np.concatenate([example_speech("0870", MUSIC_RATE), pause, example_speech("0880", MUSIC_RATE)])
    mix = _at_dbfs(voice, -20.0) + _at_dbfs(_guitar_chords(len(voice), MUSIC_RATE), -24.0)
    return mix.astype(np.float32)


def _guitar_chords(n: int, rate: int) -> np.ndarray:
    """C, G, Am, F strummed twice a second (Karplus–Strong plucked strings)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    chords = [(130.8, 164.8, 196.0, 261.6), (98.0, 123.5, 146.8, 196.0), (110.0, 130.8, 164.8, 220.0),
              (87.3, 110.0, 130.8, 174.6)]
    bed = np.zeros(n + rate)
    for k, start in enumerate(range(0, n, rate // 2)):
        for j, freq in enumerate(chords[(k // 4) % 4]):
            period = int(round(rate / freq))
            burst = np.zeros(rate)
            burst[:period] = rng.uniform(-1, 1, period)
            denominator = np.zeros(period + 2)
            denominator[0], denominator[period:] = 1.0, -0.498  # average of two delayed samples, slowly damped
            s = start + j * int(0.012 * rate)
            bed[s:s + rate] += lfilter([1.0], denominator, burst)
    return bed[:n]


# --- files --------------------------------------------------------------------------------------------
PICTURES = {"two_faces.jpg": two_faces, "small_face.jpg": small_face, "no_face.jpg": no_face,
            "turned_head_gray.png": turned_head_gray}
RECORDINGS = {"narrowband_conversation.wav": (narrowband_conversation, RATE),
              "syllable_timed_speech.wav": (syllable_timed_speech, RATE),
              "speech_over_music.wav": (speech_over_music, MUSIC_RATE)}


def write(name: str, folder: Path) -> Path:
    """Make the input called ``name`` (a key of PICTURES or RECORDINGS) as a file in ``folder``."""
    path = folder / name
    if name in PICTURES:
        Image.fromarray(PICTURES[name]()).save(path, quality=95)
    else:
        from portraittalk.io.audio import write_wav
        make, rate = RECORDINGS[name]
        write_wav(path, make(), rate)
    return path
