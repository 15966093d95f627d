"""The run report (SCORES.json): what was made, from what, how it scored and how long it took.

`RunReport.build` is the one place the report is assembled; `to_dict` gives the JSON
content, with its keys in the order the file has always had.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .analysis.face import estimate_yaw_degrees
from .contracts import AudioClip, FaceAnalysis, IdentityScores, MotionTrack, Portrait, SpeechAnalysis
from .settings import RenderSettings

if TYPE_CHECKING:
    from .motion.prompt import PromptControls
    from .voices import SynthesizedSpeech


@dataclass
class VideoReport:
    path: str
    fps: float
    frames: int
    duration_s: float
    size: list[int]  # width, height


@dataclass
class ImageReport:
    name: str
    original_size: list[int]
    size: list[int]
    notes: list[str]


@dataclass
class FaceReport:
    box: list[int]
    faces_found: int
    yaw_degrees: float
    number: int  # the face that talks, counting the faces found from the left (1 = the leftmost)


@dataclass
class AudioReport:
    name: str
    duration_s: float
    original_rate: int
    original_channels: int
    codec: str


@dataclass
class SpeechReport:
    method: str  # how the phones were found: "forced-alignment" | "espeak-dtw" | "acoustic" | "synthesis"
    language: str
    speech_ratio: float
    phones: int
    source: str  # "recording" | "synthesised" (from typed text)
    voice: str | None  # the voice that read the text
    language_probability: float  # the recogniser's confidence (1 when the language was given)
    text: str  # what the recogniser heard
    words_from: str  # "transcript" | "recognition" | "" (acoustic mouth shapes)
    words: int


@dataclass
class InputReport:
    image: ImageReport
    face: FaceReport
    audio: AudioReport
    speech: SpeechReport


@dataclass
class FrameIdentity:
    frame: int
    time_s: float
    cosine: float
    distance: float
    face_found: bool


@dataclass
class IdentityReport:
    threshold: float
    summary: dict[str, Any]  # IdentityScores.summary()
    frames: list[FrameIdentity]


@dataclass
class RunReport:
    video: VideoReport
    identity: IdentityReport | None
    timings_s: dict[str, float]
    realtime_factor: float  # seconds of work per second of audio
    input: InputReport
    settings: RenderSettings
    warnings: list[str]
    engine: str
    prompt: dict[str, Any] | None  # PromptControls.to_dict(), None without a prompt

    @classmethod
    def build(cls, out_path: Path, s: RenderSettings, portrait: Portrait, face: FaceAnalysis, clip: AudioClip,
              speech: SpeechAnalysis, motion: MotionTrack, identity: IdentityScores | None,
              timings: dict[str, float], warnings: list[str], prompt: PromptControls | None,
              spoken: SynthesizedSpeech | None = None) -> RunReport:
        fps = s.fps
        inputs = InputReport(
            image=ImageReport(portrait.source_name, list(portrait.original_size), list(portrait.video_size),
                              portrait.notes),
            face=FaceReport(list(portrait.box_in_video(face.box)), face.faces_found,
                            round(estimate_yaw_degrees(face.landmarks), 1), face.number),
            audio=AudioReport(Path(clip.source_path).name, round(clip.duration_s, 3), clip.original_rate,
                              clip.original_channels, clip.codec),
            speech=SpeechReport(speech.method, speech.language, round(float(speech.speech_ratio), 3),
                                len(speech.phones), "synthesised" if spoken else "recording",
                                spoken.voice if spoken else None, speech.language_probability, speech.text,
                                speech.words_from, len(speech.words)),
        )
        scores = None
        if identity is not None:
            scores = IdentityReport(identity.threshold, identity.summary(), [
                FrameIdentity(f.frame, round(f.frame / fps, 3), round(f.cosine, 5), round(f.distance, 5), f.face_found)
                for f in identity.frames])
        return cls(
            video=VideoReport(str(out_path), fps, motion.n_frames, round(motion.n_frames / fps, 3),
                              list(portrait.video_size)),
            identity=scores,
            timings_s={k: round(v, 3) for k, v in timings.items()},
            realtime_factor=round(timings.get("total", 0.0) / max(clip.duration_s, 1e-6), 3),
            input=inputs,
            settings=s,
            warnings=warnings,
            engine=s.engine,
            prompt=prompt.to_dict() if prompt is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The SCORES.json content."""
        return asdict(self)

    def for_download(self, file_name: str) -> dict[str, Any]:
        """The SCORES.json content for a download: the video named by ``file_name`` only, under
        "file" (server paths stay on the server; a JSON client takes any {"path": …} for a file
        to fetch)."""
        report = self.to_dict()
        video = {k: v for k, v in report["video"].items() if k != "path"}
        report["video"] = {**video, "file": file_name}
        return report
