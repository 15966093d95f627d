"""The one pipeline every front end calls (CLI, app, benchmark).

inputs → analysis (face, audio) → motion track → renderer → encoder → identity scores.

Models (face mesh, dlib descriptor, speech recogniser) load once per process in
:class:`PortraitTalkPipeline` and are reused across requests. Frames stream from the
renderer to the encoder and the identity scorer one at a time, so memory stays flat in the
clip length.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .datatypes import FaceAnalysis, IdentityScores, MotionTrack, Portrait, SpeechAnalysis
from .errors import InputError

# Progress callback: (stage name, fraction of the whole job done 0…1, human message).
ProgressFn = Callable[[str, float, str], None]

MAX_AUDIO_SECONDS = 600.0  # a longer clip is refused with this limit named in the message
ENGINES = ("warp", "diffusion")


@dataclass
class RenderSettings:
    """Everything a user can set. Defaults are what the CLI and the app use."""

    fps: float = 25.0
    seed: int = 0
    max_size: int = 1024  # long side of the output video, px
    transcript: str | None = None
    prompt: str = ""
    audio_strength: float = 1.0  # 0 = mouth still, 1 = natural, up to 2 = exaggerated
    identity_strength: float = 1.0  # how far the face may deform from the portrait (0.3 … 1)
    prompt_strength: float = 1.0
    head_motion: float = 1.0  # 0 = still head
    expression_intensity: float = 1.0
    blink_rate: float = 1.0  # 0 = never blink
    engine: str = "warp"
    score_identity: bool = True

    def validated(self) -> "RenderSettings":
        """Reject settings that cannot make a video, with a sentence saying the allowed range."""
        def check(name: str, value: float, lo: float, hi: float) -> None:
            if not (np.isfinite(value) and lo <= value <= hi):
                raise InputError(f"The setting '{name}' must be between {lo:g} and {hi:g} (got {value!r}).")
        check("fps", self.fps, 5, 60)
        check("max_size", self.max_size, 64, 4096)
        for name in ("audio_strength", "identity_strength", "prompt_strength", "head_motion",
                     "expression_intensity", "blink_rate"):
            check(name, getattr(self, name), 0, 2)
        if self.engine not in ENGINES:
            raise InputError(f"Unknown engine '{self.engine}'; choose one of: {', '.join(ENGINES)}.")
        return self


@dataclass
class RenderResult:
    video_path: Path
    identity: IdentityScores | None
    motion: MotionTrack
    report: dict[str, Any]  # the SCORES.json content
    warnings: list[str] = field(default_factory=list)

    def write_scores(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.report, indent=1))
        return path

    def write_motion(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.motion.to_json())
        return path


class PortraitTalkPipeline:
    """Load once, render many: `PortraitTalkPipeline().render(image, audio, out)`."""

    def __init__(self) -> None:
        self._face = None
        self._identity = None
        self._lock = threading.Lock()

    # Models load lazily so a CLI error about a bad file comes back instantly.
    @property
    def face_analyzer(self):
        with self._lock:
            if self._face is None:
                from .face import FaceAnalyzer
                self._face = FaceAnalyzer()
                self._face.warm_up()
            return self._face

    @property
    def identity_scorer(self):
        with self._lock:
            if self._identity is None:
                import torch

                from .identity import IdentityScorer
                # Scoring shares the CPU with the renderer and the encoder: one thread each
                # is faster than letting torch spread over every core.
                torch.set_num_threads(1)
                self._identity = IdentityScorer()
            return self._identity

    def warm_up(self) -> None:
        """Load every model now (the app calls this at start-up)."""
        _ = self.face_analyzer, self.identity_scorer

    # ------------------------------------------------------------------------------------
    def analyze_portrait(self, image: str | Path | bytes, max_size: int) -> tuple[Portrait, FaceAnalysis]:
        from .image_io import load_portrait
        portrait = load_portrait(image, max_size=max_size)
        return portrait, self.face_analyzer.analyze(portrait.rgb)

    def render(self, image: str | Path | bytes, audio: str | Path, out_path: str | Path,
               settings: RenderSettings | None = None, progress: ProgressFn | None = None,
               references: list[str | Path | bytes] | None = None) -> RenderResult:
        from .audio_io import load_audio
        from .encoder import VideoEncoder
        from .motion import build_motion_track
        from .renderer import WarpRenderer
        from .speech import analyze_speech

        s = (settings or RenderSettings()).validated()
        report_progress = progress or (lambda stage, frac, msg: None)
        timings: dict[str, float] = {}
        warnings: list[str] = []
        t_all = time.perf_counter()

        def timed(stage: str):
            return _Timer(timings, stage)

        report_progress("face", 0.0, "Analysing the face")
        with timed("face_analysis"):
            portrait, face = self.analyze_portrait(image, s.max_size)
        warnings += face.warnings
        report_progress("audio", 0.05, "Analysing the audio")
        with timed("audio_decode"):
            clip = load_audio(audio, max_duration_s=MAX_AUDIO_SECONDS)
        n_frames = max(1, round(clip.duration_s * s.fps))
        with timed("speech_analysis"):
            speech = analyze_speech(clip, s.fps, s.transcript)
        warnings += speech.warnings
        report_progress("motion", 0.15, "Planning the motion")
        with timed("motion"):
            motion = build_motion_track(
                speech, n_frames, s.fps, seed=s.seed, audio_strength=s.audio_strength,
                head_motion=s.head_motion, blink_rate=s.blink_rate)
        if s.engine != "warp":
            from .errors import EngineUnavailableError
            raise EngineUnavailableError(
                "The diffusion engine is not available in this build; use the warp engine.")

        renderer = WarpRenderer(portrait.rgb, face)
        scorer = self.identity_scorer if s.score_identity else None
        reference = None
        if scorer is not None:
            ref_images = [(portrait.rgb, face.box)]
            for extra in references or []:
                try:
                    p2, f2 = self.analyze_portrait(extra, s.max_size)
                    ref_images.append((p2.rgb, f2.box))
                except InputError as err:
                    warnings.append(f"An extra reference portrait was skipped: {err}")
            reference = scorer.reference([im for im, _ in ref_images], [b for _, b in ref_images])
            if reference is None:
                warnings.append("The face descriptor could not read the portrait; identity scores are unavailable.")
                scorer = None

        # Identity scoring runs in a thread beside rendering (the descriptor network releases
        # the GIL); encoding runs in ffmpeg's own process. Frames are scored in batches.
        jobs: queue.Queue = queue.Queue(maxsize=16)
        t_score = [0.0]
        stream = scorer.stream(reference) if scorer is not None else None
        failure: list[BaseException] = []

        def score_worker() -> None:
            while True:
                item = jobs.get()
                if item is None:
                    return
                if failure:
                    continue
                rgb, box = item
                t0 = time.perf_counter()
                try:
                    stream.add(rgb, box)
                except BaseException as err:  # reported after rendering, never lost silently
                    failure.append(err)
                t_score[0] += time.perf_counter() - t0

        worker = threading.Thread(target=score_worker, daemon=True) if stream is not None else None
        if worker:
            worker.start()
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        h, w = portrait.rgb.shape[:2]
        t0 = time.perf_counter()
        try:
            with VideoEncoder(out_path, (w, h), s.fps, audio_path=audio) as enc:
                for i in range(n_frames):
                    frame = renderer.render(motion.frame(i))
                    enc.write(frame.rgb)
                    if worker:
                        jobs.put((frame.rgb, frame.box))
                    if i % 10 == 0 or i == n_frames - 1:
                        report_progress("render", 0.2 + 0.75 * (i + 1) / n_frames,
                                        f"Rendering frame {i + 1} of {n_frames}")
        finally:
            if worker:
                jobs.put(None)
        timings["render_encode"] = time.perf_counter() - t0
        identity = None
        if worker:
            t1 = time.perf_counter()
            worker.join()
            if failure:
                raise failure[0]
            identity = stream.finish()
            timings["identity_wait_after_render"] = time.perf_counter() - t1
            timings["identity_scoring"] = t_score[0] + timings["identity_wait_after_render"]
        timings["total"] = time.perf_counter() - t_all

        if identity is not None:
            summ = identity.summary()
            if summ.get("frames_over_threshold", 0):
                warnings.append(f"{summ['frames_over_threshold']} frame(s) drifted beyond the same-person threshold.")
        if speech.speech_ratio < 0.02:
            msg = "The audio contains no speech; the video shows an idle face."
            if msg not in warnings:
                warnings.append(msg)
        report_progress("done", 1.0, "Done")
        report = build_report(out_path, s, portrait, face, clip, speech, motion, identity, timings, warnings)
        return RenderResult(out_path, identity, motion, report, warnings)


class _Timer:
    def __init__(self, sink: dict[str, float], stage: str) -> None:
        self.sink, self.stage = sink, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.sink[self.stage] = round(time.perf_counter() - self.t0, 4)


def build_report(out_path: Path, s: RenderSettings, portrait: Portrait, face: FaceAnalysis, clip, speech: SpeechAnalysis,
                 motion: MotionTrack, identity: IdentityScores | None, timings: dict[str, float],
                 warnings: list[str]) -> dict[str, Any]:
    from .face import estimate_yaw_degrees
    fps = s.fps
    report: dict[str, Any] = {
        "video": {"path": str(out_path), "fps": fps, "frames": motion.n_frames,
                  "duration_s": round(motion.n_frames / fps, 3), "size": list(portrait.size)},
        "identity": None,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "realtime_factor": round(timings.get("total", 0.0) / max(clip.duration_s, 1e-6), 3),
        "input": {
            "image": {"name": portrait.source_name, "original_size": list(portrait.original_size),
                      "size": list(portrait.size), "notes": portrait.notes},
            "face": {"box": list(face.box), "faces_found": face.faces_found,
                     "yaw_degrees": round(estimate_yaw_degrees(face.landmarks), 1)},
            "audio": {"name": Path(clip.source_path).name, "duration_s": round(clip.duration_s, 3),
                      "original_rate": clip.original_rate, "original_channels": clip.original_channels,
                      "codec": clip.codec},
            "speech": {"method": speech.method, "language": speech.language,
                       "speech_ratio": round(float(speech.speech_ratio), 3), "phones": len(speech.phones)},
        },
        "settings": {k: v for k, v in asdict(s).items()},
        "warnings": warnings,
    }
    if identity is not None:
        report["identity"] = {
            "threshold": identity.threshold,
            "summary": identity.summary(),
            "frames": [{"frame": f.frame, "time_s": round(f.frame / fps, 3), "cosine": round(f.cosine, 5),
                        "distance": round(f.distance, 5), "face_found": f.face_found} for f in identity.frames],
        }
    return report
