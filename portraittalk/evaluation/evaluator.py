"""One pass over a video's decoded frames → :class:`VideoEvaluation`.

Everything is measured the way a viewer sees the video: frames are decoded from the file,
the face is found again in every frame, the sound is read from the audio file (or the
video's own track). Nothing is taken from the renderer's internal state, so the same
numbers can be computed for videos made by other systems.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..analysis import face as fm
from ..contracts import Box, IdentityScores
from ..errors import InputError
from .background import BackgroundMeter, background_section
from .dynamics import adfd, dynamics_section, landmark_jitter
from .report import VideoEvaluation
from .sync import TRUSTED_PHONE_METHODS, av_offset, local_sync, phone_checks, speech_envelope
from .tracking import FaceTracker, HeadTracker

ProgressFn = Callable[[str, float, str], None]


class _FrameMeasures:
    """Everything measured frame by frame, in one pass over the decoded video."""

    SERIES = ("mouth_gap", "eye_open", "yaw", "pitch", "roll", "ssim", "flicker")

    def __init__(self, analyzer: "fm.FaceAnalyzer", portrait_rgb: np.ndarray, portrait_face,
                 video_size: tuple[int, int], compare_background: bool) -> None:
        self.tracker = FaceTracker(analyzer)
        self.head = HeadTracker(portrait_face.landmarks)
        self.background = BackgroundMeter(portrait_rgb, portrait_face.box, video_size, compare_background)
        self.found: list[bool] = []
        self.series: dict[str, list[float]] = {k: [] for k in self.SERIES}
        self.velocities: list[np.ndarray] = []
        self.eye_distances: list[float] = []
        self.face_s = self.background_s = 0.0

    def add(self, frame: np.ndarray) -> Box | None:
        """Measure one frame; returns its face box (None when no face)."""
        t0 = time.perf_counter()
        lm, box = self.tracker.update(frame)
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if self.tracker.detected_last:
            self.head.reset()  # the face may have jumped: no flow across the gap
        points, velocity = self.head.update(grey, lm)
        self.velocities.append(velocity)
        self.found.append(lm is not None)
        if lm is not None and points is not None:
            yaw, pitch, roll = self.head.pose(points)
            values = {"mouth_gap": fm.mouth_gap_ratio(lm), "eye_open": fm.eye_open_ratio(lm),
                      "yaw": yaw, "pitch": pitch, "roll": roll}
            self.eye_distances.append(float(np.linalg.norm(lm[fm.LEFT_EYE_OUTER, :2] - lm[fm.RIGHT_EYE_OUTER, :2])))
        else:
            values = dict.fromkeys(("mouth_gap", "eye_open", "yaw", "pitch", "roll"), np.nan)
        t1 = time.perf_counter()
        values["ssim"], values["flicker"] = self.background.measure(grey, box)
        for k, v in values.items():
            self.series[k].append(v)
        self.face_s += t1 - t0
        self.background_s += time.perf_counter() - t1
        return box


class VideoEvaluator:
    """Holds the face mesh and the identity model; ``evaluate`` may be called many times.

    Pass the pipeline's own models (``PortraitTalkPipeline().face_analyzer`` and
    ``.identity_scorer``) to share them; otherwise they load on first use.
    """

    def __init__(self, analyzer: "fm.FaceAnalyzer | None" = None, scorer: Any = None) -> None:
        self._analyzer = analyzer
        self._scorer = scorer

    @property
    def analyzer(self) -> "fm.FaceAnalyzer":
        if self._analyzer is None:
            self._analyzer = fm.FaceAnalyzer()
        return self._analyzer

    @property
    def scorer(self):
        if self._scorer is None:
            from ..scoring.identity import IdentityScorer
            self._scorer = IdentityScorer()
        return self._scorer

    def evaluate(self, video: str | Path, image: str | Path | bytes, audio: str | Path | None = None,
                 transcript: str | None = None, progress: ProgressFn | None = None) -> VideoEvaluation:
        from ..io.image import load_portrait
        from ..io.video import probe_video, read_frames

        report = progress or (lambda stage, frac, msg: None)
        timings: dict[str, float] = {}
        notes: list[str] = []
        t_all = time.perf_counter()
        video = Path(video)
        if not video.is_file():
            raise InputError(f"The video file '{video.name}' was not found; check the path.")
        try:
            info = probe_video(video)
        except ValueError:
            raise InputError(f"'{video.name}' is not a video PortraitTalk can read; "
                             "please use an MP4, MOV, WebM or AVI file.") from None
        if info.n_frames < 3 or info.fps <= 0:
            raise InputError(f"'{video.name}' has only {info.n_frames} frame(s), so it is a still image or a broken "
                             "video; please choose a video at least a fraction of a second long.")
        fps = info.fps

        report("portrait", 0.0, "Reading the portrait")
        t0 = time.perf_counter()
        # Capped to the video's long side: a video made at that size from this portrait
        # then has exactly the portrait's pixels outside the head.
        portrait = load_portrait(image, max_size=max(info.width, info.height))
        face = self.analyzer.analyze(portrait.rgb)
        reference = self.scorer.reference([portrait.rgb], [face.box])
        portrait_gap = fm.mouth_gap_ratio(face.landmarks)
        timings["portrait"] = time.perf_counter() - t0
        same_size = portrait.size == (info.width, info.height)
        if not same_size:
            notes.append(f"The video is {info.width}×{info.height} but the portrait is {portrait.size[0]}×"
                         f"{portrait.size[1]}, so the background was not compared with the portrait.")

        measures = _FrameMeasures(self.analyzer, portrait.rgb, face, (info.width, info.height), same_size)
        identity_worker = _IdentityWorker(self.scorer.stream(reference))
        expected = max(1, info.n_frames)
        try:
            for i, frame in enumerate(read_frames(video)):
                identity_worker.add(frame, measures.add(frame))
                if i % 10 == 0:
                    report("frames", 0.05 + 0.8 * min(1.0, (i + 1) / expected),
                           f"Measuring frame {i + 1} of {expected}")
        except BaseException:
            identity_worker.abandon()
            raise
        t0 = time.perf_counter()
        identity = identity_worker.finish()
        timings["face_tracking"] = measures.face_s
        timings["background"] = measures.background_s
        timings["identity_scoring"] = identity_worker.busy_s  # in a thread beside the frame loop
        timings["identity_wait_after_frames"] = time.perf_counter() - t0

        n = len(measures.found)
        if n == 0:
            raise InputError(f"No frames could be decoded from '{video.name}'; please check the file plays.")
        found = np.array(measures.found, bool)
        if not found.any():
            raise InputError(f"No face was found in any frame of '{video.name}'; "
                             "please use a video that shows the person's face.")
        if found.mean() < 0.9:
            notes.append(f"The face was found in only {100 * found.mean():.0f} % of the frames.")
        if measures.tracker.detections > 1:
            notes.append(f"The face was re-detected {measures.tracker.detections - 1} time(s) after tracking lost it.")
        curves = {k: np.array(v, np.float32) for k, v in measures.series.items()}
        curves["face_found"] = found.astype(np.float32)
        curves["identity_cosine"] = np.array([f.cosine for f in identity.frames], np.float32)
        curves["identity_distance"] = np.array([f.distance for f in identity.frames], np.float32)

        # Sound: its envelope for the offset, its phones for the phone-level checks.
        report("audio", 0.88, "Analysing the sound")
        t0 = time.perf_counter()
        av, checks, envelope = self._lip_sync(video, audio, transcript, fps, n, curves["mouth_gap"],
                                              portrait_gap, notes)
        timings["speech_analysis"] = time.perf_counter() - t0
        curves["speech_envelope"] = envelope
        curves["lip_sync_local"] = local_sync(curves["mouth_gap"], envelope, fps)

        jitter = landmark_jitter(np.stack(measures.velocities), float(np.median(measures.eye_distances)))
        dynamics = dynamics_section(curves, fps, jitter, portrait_gap)
        background = background_section(curves, same_size)
        score = adfd(curves["identity_distance"], found, av, jitter)
        timings["total"] = time.perf_counter() - t_all
        timings = {k: round(v, 3) for k, v in timings.items()}
        timings["realtime_factor"] = round(timings["total"] / max(n / fps, 1e-6), 3)
        report("done", 1.0, "Done")
        return VideoEvaluation(video=video.name, portrait=portrait.source_name, fps=fps, n_frames=n,
                               size=(info.width, info.height), identity=identity, curves=curves, av=av,
                               phones=checks, adfd=score, dynamics=dynamics, background=background,
                               timings_s=timings, notes=notes)

    def _lip_sync(self, video: Path, audio: str | Path | None, transcript: str | None, fps: float, n: int,
                  mouth_gap: np.ndarray, portrait_gap: float, notes: list[str]):
        from ..io.audio import load_audio

        if audio is not None:
            clip = load_audio(audio)
        else:
            try:
                clip = load_audio(video)
            except InputError:
                notes.append("The video has no sound and no audio file was given, so lip sync was not measured.")
                return None, None, np.zeros(n, np.float32)
        envelope = speech_envelope(clip.samples, clip.sample_rate, fps, n)
        if abs(clip.duration_s - n / fps) > 0.5:
            notes.append(f"The sound lasts {clip.duration_s:.1f} s but the video {n / fps:.1f} s; "
                         "both were compared from their start.")
        av = av_offset(mouth_gap, envelope, fps)
        if av is None:
            notes.append("The mouth does not move (or the sound is silent), so no audio-visual offset exists.")
        checks = None
        try:
            from ..analysis.speech import analyze_speech
            speech = analyze_speech(clip, fps, transcript)
            if speech.method in TRUSTED_PHONE_METHODS:
                checks = phone_checks(speech.phones, mouth_gap, fps, portrait_gap, speech.method)
            else:
                notes.append("No words were recognised in the speech, so the phone-level lip checks were skipped.")
        except ImportError:
            notes.append("The speech recogniser is unavailable, so the phone-level checks were skipped.")
        return av, checks, envelope


class _IdentityWorker:
    """Scores frames in a background thread (the descriptor network releases the GIL), so
    identity runs beside face tracking; frames wait in a short queue."""

    def __init__(self, stream) -> None:
        import queue
        import threading

        self._stream = stream
        self._jobs: "queue.Queue" = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self.busy_s = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is not None:
                continue
            t0 = time.perf_counter()
            try:
                self._stream.add(*job)
            except BaseException as err:  # re-raised in the caller's thread by finish()
                self._error = err
            self.busy_s += time.perf_counter() - t0

    def add(self, frame: np.ndarray, box: Box | None) -> None:
        self._jobs.put((frame, box))

    def abandon(self) -> None:
        """Stop the thread without waiting for its result (the frame loop failed)."""
        self._error = self._error or RuntimeError("abandoned")
        self._jobs.put(None)

    def finish(self) -> IdentityScores:
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._stream.finish()


_DEFAULT: VideoEvaluator | None = None


def evaluate_video(video: str | Path, image: str | Path | bytes, audio: str | Path | None = None,
                   transcript: str | None = None, *, evaluator: VideoEvaluator | None = None,
                   progress: ProgressFn | None = None) -> VideoEvaluation:
    """Measure one video against the portrait it should show (see :class:`VideoEvaluation`).

    ``audio`` defaults to the video's own sound track; ``transcript`` (English) makes the
    phone-level checks use forced alignment. Models load once per process and are reused.
    """
    global _DEFAULT
    if evaluator is None:
        if _DEFAULT is None:
            _DEFAULT = VideoEvaluator()
        evaluator = _DEFAULT
    return evaluator.evaluate(video, image, audio, transcript, progress)
