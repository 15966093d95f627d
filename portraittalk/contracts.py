"""Typed boundaries between the pipeline stages.

inputs (Portrait, AudioClip) → analysis (FaceAnalysis, SpeechAnalysis) → MotionTrack →
renderer (frames) → encoder (MP4) → IdentityScores. Each stage takes and returns these
records only, so the data flow stays one-way and every stage can be tested on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive)
SAME_PERSON_DISTANCE = 0.6  # dlib's same-person threshold on face-descriptor distance


@dataclass
class Portrait:
    """A decoded still image, upright (EXIF applied), 8-bit RGB."""

    rgb: np.ndarray  # (H, W, 3) uint8, the full frame the video is made of
    source_name: str  # file name only, for reports
    original_size: tuple[int, int]  # (width, height) of the file before any size cap
    notes: list[str] = field(default_factory=list)  # conversions applied (16-bit, RGBA, CMYK…)
    # Quarter turns (np.rot90's k) that stood the face upright in ``rgb``; the video turns back.
    upright_turns: int = 0

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @property
    def video_size(self) -> tuple[int, int]:
        """(width, height) of the video: the photo's own orientation."""
        w, h = self.size
        return (h, w) if self.upright_turns % 2 else (w, h)

    def box_in_video(self, box: Box) -> Box:
        """A box in ``rgb`` as it lies in the video (turned back with the frames)."""
        (x0, y0, x1, y1), (w, h) = box, self.size
        for _ in range(-self.upright_turns % 4):  # one np.rot90 turn: (x, y) → (y, w - x)
            (x0, y0, x1, y1), (w, h) = (y0, w - x1, y1, w - x0), (h, w)
        return x0, y0, x1, y1


@dataclass
class AudioClip:
    """Decoded speech: mono float32 at 16 kHz for analysis; the original file is muxed as-is."""

    samples: np.ndarray  # (N,) float32 in [-1, 1], mono, ``sample_rate`` Hz
    sample_rate: int  # always 16000 for analysis
    source_path: str  # original file, muxed into the video untouched when possible
    original_rate: int
    original_channels: int
    codec: str = ""  # e.g. "pcm_s24le", "mp3"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass
class FaceAnalysis:
    """Face mesh of the chosen face, in full-frame pixel coordinates."""

    landmarks: np.ndarray  # (478, 3) float32: x, y in pixels; z in pixels (same scale as x), mediapipe topology
    box: Box  # around the mesh, full-frame pixels
    faces_found: int  # how many faces the detector saw
    warnings: list[str] = field(default_factory=list)
    number: int = 1  # which face it is, counting the faces found from the left (1 = the leftmost)


@dataclass
class PhoneSegment:
    """One phone of the speech, ARPAbet without stress digits ("AA", "P", …); "SIL" is silence."""

    phone: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class WordSegment:
    """One spoken word (as written in the transcript or recognised) and when it is said."""

    text: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class SpeechAnalysis:
    """What the audio says and how it sounds, on the video's frame grid."""

    phones: list[PhoneSegment]
    method: str  # "forced-alignment" | "espeak-dtw" (other languages) | "acoustic" (pseudo-phones)
    language: str  # Whisper's code of the spoken language ("en", "es", …), "unknown" when not recognised
    speech_ratio: float  # fraction of frames with voice activity
    fps: float
    # Per-video-frame features, all shape (n_frames,), float32:
    energy: np.ndarray  # loudness, 0 (silence) … 1 (loud speech), normalised per clip
    voicing: np.ndarray  # 0 … 1 probability the frame is voiced
    pitch: np.ndarray  # semitones relative to the clip's median pitch, 0 where unvoiced
    speech: np.ndarray  # 0/1 voice activity (after hangover smoothing)
    warnings: list[str] = field(default_factory=list)
    words: list[WordSegment] = field(default_factory=list)  # the words the mouth says, timed (subtitles)
    words_from: str = ""  # "transcript" | "recognition" | "" (no words: acoustic mouth shapes)
    text: str = ""  # what the recogniser heard
    language_probability: float = 0.0  # the recogniser's confidence in the language (1 when it was given)


@dataclass(frozen=True)
class FrameControls:
    """One video frame of face controls, every channel at rest at 0 (units: see MotionTrack).

    The one list of motion channels: MotionTrack has an array per field, in this order.
    """

    jaw_open: float = 0.0
    lip_close: float = 0.0
    mouth_wide: float = 0.0
    lip_round: float = 0.0
    lower_lip_tuck: float = 0.0
    upper_lip_raise: float = 0.0
    tongue: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0
    blink: float = 0.0
    eye_wide: float = 0.0
    head_yaw: float = 0.0
    head_pitch: float = 0.0
    head_roll: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0


@dataclass
class MotionTrack:
    """Per-frame face controls for the renderer; every array has shape (n_frames,), float32.

    Units (the renderer's contract):
      jaw_open        0 … 1   1 = widest natural opening (lower lip drops ~0.42 × mouth width)
      lip_close       0 … 1   1 = lips pressed together (P/B/M); overrides jaw opening of the lips
      mouth_wide     -1 … 1   +1 = spread lips (EE), −1 = narrowed/rounded (OO, W)
      lip_round       0 … 1   1 = pursed/protruded lips (OO, W, SH)
      lower_lip_tuck  0 … 1   1 = lower lip under the upper teeth (F/V)
      upper_lip_raise 0 … 1   1 = upper lip lifted, upper teeth shown
      tongue          0 … 1   1 = tongue tip visible at the teeth (TH, L)
      smile           -1 … 1  mouth-corner lift (+) / drop (−), expression
      brow_raise      -1 … 1  +1 = raised brows (surprise), −1 = frown
      blink           0 … 1   1 = eyelids closed
      eye_wide        0 … 1   upper lids lifted past the portrait's (surprise); blinks still close them
      head_yaw/pitch/roll     degrees, small (±5); pitch + = chin up; roll about the view axis
      gaze_x, gaze_y  -1 … 1  iris shift as a fraction of the eye's half width / half height
    """

    fps: float
    jaw_open: np.ndarray
    lip_close: np.ndarray
    mouth_wide: np.ndarray
    lip_round: np.ndarray
    lower_lip_tuck: np.ndarray
    upper_lip_raise: np.ndarray
    tongue: np.ndarray
    smile: np.ndarray
    brow_raise: np.ndarray
    blink: np.ndarray
    eye_wide: np.ndarray
    head_yaw: np.ndarray
    head_pitch: np.ndarray
    head_roll: np.ndarray
    gaze_x: np.ndarray
    gaze_y: np.ndarray

    CHANNELS: ClassVar[tuple[str, ...]] = tuple(f.name for f in fields(FrameControls))

    @property
    def n_frames(self) -> int:
        return int(len(self.jaw_open))

    @classmethod
    def still(cls, n_frames: int, fps: float) -> MotionTrack:
        """A track with every control at rest."""
        return cls(fps=fps, **{c: np.zeros(n_frames, np.float32) for c in cls.CHANNELS})

    def frame(self, i: int) -> FrameControls:
        return FrameControls(**{c: float(getattr(self, c)[i]) for c in self.CHANNELS})

    def to_dict(self) -> dict[str, Any]:
        return {"fps": self.fps, "n_frames": self.n_frames,
                "channels": {c: np.round(getattr(self, c), 4).tolist() for c in self.CHANNELS}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class FrameScore:
    """Identity of one output frame against the portrait (dlib 128-d face descriptor)."""

    frame: int
    cosine: float  # cosine similarity of the two descriptors
    distance: float  # Euclidean descriptor distance (same person: ≤ SAME_PERSON_DISTANCE)
    face_found: bool = True


@dataclass
class IdentityScores:
    frames: list[FrameScore]
    threshold: float = SAME_PERSON_DISTANCE

    def summary(self) -> dict[str, Any]:
        cos = np.array([f.cosine for f in self.frames], np.float64)
        dist = np.array([f.distance for f in self.frames], np.float64)
        if len(cos) == 0:
            return {"frames": 0}
        return {
            "frames": len(cos),
            "mean_cosine": round(float(cos.mean()), 4),
            "min_cosine": round(float(cos.min()), 4),
            "mean_distance": round(float(dist.mean()), 4),
            "max_distance": round(float(dist.max()), 4),
            "frames_within_threshold": int((dist <= self.threshold).sum()),
            "frames_over_threshold": int((dist > self.threshold).sum()),
            "threshold": self.threshold,
        }

