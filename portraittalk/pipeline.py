"""The one pipeline every front end calls (CLI, app, benchmark).

inputs → analysis (face, audio) → motion track → engine → encoder → identity scores → report.

Models (face mesh, dlib descriptor, speech recogniser) load once per process in
:class:`PortraitTalkPipeline` and are reused across requests. Frames stream from the
engine to the encoder and the identity scorer one at a time, so memory stays flat in the
clip length.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .contracts import SAME_PERSON_DISTANCE, FaceAnalysis, IdentityScores, MotionTrack, Portrait, WordSegment
from .errors import InputError, PortraitTalkError
from .io.paths import check_output_path, write_file
from .report import RunReport
from .runtime import opencv_threads, release_freed_memory
from .settings import MAX_AUDIO_SECONDS, RenderSettings
from .voices import VOICES, synthesize_speech

if TYPE_CHECKING:
    from .analysis.face import FaceAnalyzer
    from .engines.base import Engine
    from .motion.prompt import PromptControls
    from .scoring.identity import IdentityScorer
    from .scoring.stream import FrameStream
    from .voices import SynthesizedSpeech

log = logging.getLogger(__name__)

# Progress callback: (stage name, fraction of the whole job done 0…1, human message).
ProgressFn = Callable[[str, float, str], None]


@dataclass
class RenderResult:
    video_path: Path
    identity: IdentityScores | None
    motion: MotionTrack
    run_report: RunReport
    warnings: list[str] = field(default_factory=list)
    speech: SynthesizedSpeech | None = None  # the synthesised speech, when the text was typed
    words: list[WordSegment] = field(default_factory=list)  # what is said, timed: the subtitles

    @property
    def report(self) -> dict[str, Any]:
        """The SCORES.json content."""
        return self.run_report.to_dict()

    def write_scores(self, path: str | Path) -> Path:
        return write_file(path, json.dumps(self.report, indent=1))

    def write_motion(self, path: str | Path) -> Path:
        return write_file(path, self.motion.to_json())

    def write_speech(self, path: str | Path) -> Path | None:
        """The synthesised speech as a WAV file; None (nothing written) for a recording."""
        return self.speech.write_wav(path) if self.speech is not None else None


class PortraitTalkPipeline:
    """Load once, render many: `PortraitTalkPipeline().render(image, audio, out)`."""

    def __init__(self) -> None:
        self._face: FaceAnalyzer | None = None
        self._identity: IdentityScorer | None = None
        self._lock = threading.Lock()

    # Models load lazily so a CLI error about a bad file comes back instantly.
    @property
    def face_analyzer(self) -> FaceAnalyzer:
        with self._lock:
            if self._face is None:
                from .analysis.face import FaceAnalyzer
                self._face = FaceAnalyzer()
                self._face.warm_up()
            return self._face

    @property
    def identity_scorer(self) -> IdentityScorer:
        with self._lock:
            if self._identity is None:
                import torch

                from .scoring.identity import IdentityScorer
                # Scoring shares the CPU with the renderer and the encoder: one thread each
                # is faster than letting torch spread over every core.
                torch.set_num_threads(1)
                self._identity = IdentityScorer()
            return self._identity

    def warm_up(self, text_model: bool = True) -> None:
        """Load every model now (the app calls this at start-up, so no visitor waits for it)."""
        from .analysis.speech import sphinx, whisper
        _ = self.face_analyzer, self.identity_scorer
        sphinx._align_decoder()
        try:
            whisper.warm_up()
        except PortraitTalkError as err:  # renders still work, with acoustic mouth shapes (and say why)
            log.warning("%s", err)
        if text_model:
            from .motion.prompt import get_text_encoder
            get_text_encoder()

    # ------------------------------------------------------------------------------------
    def analyze_portrait(self, image: str | Path | bytes, max_size: int,
                         face: int | None = None) -> tuple[Portrait, FaceAnalysis]:
        """The portrait with its face upright (see ``Portrait.upright_turns``) and the mesh of the
        largest face, or of face number ``face``."""
        from .analysis.face import stand_upright
        from .io.image import load_portrait
        return stand_upright(self.face_analyzer, load_portrait(image, max_size=max_size), face)

    def render(self, image: str | Path | bytes, audio: str | Path | None, out_path: str | Path,
               settings: RenderSettings | None = None, progress: ProgressFn | None = None,
               references: Sequence[str | Path | bytes] | None = None) -> RenderResult:
        """A talking-face video of the portrait saying ``audio`` (a recording), or, when the
        settings hold a text (and ``audio`` is None), that text read by the settings' voice."""
        s = (settings or RenderSettings()).validated()
        # Before any work: a bad path fails at once, and no input can be overwritten.
        out_path = check_output_path(out_path, inputs=[image, audio, *(references or [])])
        if not s.text:
            if audio is None:
                raise InputError("There is no speech: give a recording, or a text to say.")
            return self._render(image, audio, out_path, s, progress, references)
        if audio is not None:
            raise InputError("Give either a recording or a text to say, not both.")
        t0 = time.perf_counter()
        spoken = synthesize_speech(s.text, s.voice)
        spoken.check_duration(MAX_AUDIO_SECONDS)
        synthesis_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="portraittalk-speech-") as folder:
            wav = spoken.write_wav(Path(folder) / "speech.wav")
            return self._render(image, wav, out_path, s, progress, references, spoken, synthesis_s)

    def _render(self, image: str | Path | bytes, audio: str | Path, out_path: Path, s: RenderSettings,
                progress: ProgressFn | None, references: Sequence[str | Path | bytes] | None,
                spoken: SynthesizedSpeech | None = None, synthesis_s: float = 0.0) -> RenderResult:
        from .analysis.speech import NO_SPEECH_WARNING, analyze_speech
        from .analysis.speech.given import analyze_given_phones
        from .io.audio import load_audio, muxable_audio
        from .io.subtitles import cues_from_words, subtitle_file
        from .io.video import VideoEncoder
        from .motion.plan import plan_motion
        from .motion.prompt import parse_prompt
        from .scoring.stream import ScoringThread

        report_progress = progress or (lambda stage, frac, msg: None)
        timings: dict[str, float] = {"speech_synthesis": round(synthesis_s, 4)} if spoken else {}
        warnings: list[str] = []
        t_all = time.perf_counter() - synthesis_s

        def timed(stage: str) -> _Timer:
            return _Timer(timings, stage)

        report_progress("face", 0.0, "Analysing the face")
        with timed("face_analysis"):
            portrait, face = self.analyze_portrait(image, s.max_size, s.face or None)
        warnings += face.warnings
        report_progress("audio", 0.05, "Analysing the audio")
        with timed("audio_decode"):
            clip = load_audio(audio, max_duration_s=MAX_AUDIO_SECONDS)
        n_frames = max(1, round(clip.duration_s * s.fps))
        with timed("speech_analysis"):
            speech = (analyze_given_phones(clip, s.fps, spoken.phones, VOICES[spoken.voice].language,
                                           text=spoken.text) if spoken
                      else analyze_speech(clip, s.fps, s.transcript, s.language, s.asr_model))
        warnings += speech.warnings
        report_progress("motion", 0.15, "Planning the motion")
        with timed("prompt"):
            controls = parse_prompt(s.prompt, s.prompt_strength) if (s.prompt or "").strip() else None
        with timed("motion"):
            motion = plan_motion(speech, n_frames, s, controls)
        if controls is not None and controls.ignored:
            warnings.append("Part of the prompt was not used: " + "; ".join(
                f'"{i.phrase}" ({i.reason})' for i in controls.ignored) + ".")

        engine = _engine(s, controls)
        stream = self._identity_stream(s, portrait, face, references or [], warnings)
        # Identity scoring runs in a thread beside rendering; encoding runs in ffmpeg's own process.
        scoring = ScoringThread(stream) if stream is not None else None
        t0 = time.perf_counter()
        try:
            # NaN/inf samples are silenced in a temporary copy rather than left to become clicks.
            with muxable_audio(clip) as sound, subtitle_file(cues_from_words(speech.words)) as subtitles, \
                    VideoEncoder(out_path, portrait.video_size, s.fps, audio_path=sound, frames=n_frames,
                                 subtitles_path=subtitles) as enc, \
                    opencv_threads(1 if scoring else None):
                for i, frame in enumerate(engine.frames(portrait, face, motion, clip)):
                    # Frames are drawn upright and shown in the photo's own orientation.
                    enc.write(np.rot90(frame.rgb, -portrait.upright_turns))
                    if scoring is not None:
                        scoring.put(frame.rgb, frame.box)
                    if i % 10 == 0 or i == n_frames - 1:
                        report_progress("render", 0.2 + 0.75 * (i + 1) / n_frames,
                                        f"Rendering frame {i + 1} of {n_frames}")
        except BaseException:  # failed or interrupted: the scoring thread stops too
            if scoring is not None:
                scoring.cancel()
            raise
        if scoring is not None:
            scoring.close()
        timings["render_encode"] = time.perf_counter() - t0
        identity = None
        if scoring is not None:
            t1 = time.perf_counter()
            identity = scoring.finish()
            timings["identity_wait_after_render"] = time.perf_counter() - t1
            timings["identity_scoring"] = scoring.busy_s + timings["identity_wait_after_render"]
        timings["total"] = time.perf_counter() - t_all

        if identity is not None:
            summ = identity.summary()
            if summ.get("frames_over_threshold", 0):
                warnings.append(f"{summ['frames_over_threshold']} frame(s) drifted beyond the same-person threshold.")
        if speech.speech_ratio < 0.02 and not any("no speech" in w for w in warnings):
            warnings.append(NO_SPEECH_WARNING)
        report_progress("done", 1.0, "Done")
        release_freed_memory()
        report = RunReport.build(out_path, s, portrait, face, clip, speech, motion, identity, timings, warnings,
                                 controls, spoken)
        return RenderResult(out_path, identity, motion, report, warnings, speech=spoken, words=speech.words)

    def _identity_stream(self, s: RenderSettings, portrait: Portrait, face: FaceAnalysis,
                         references: Sequence[str | Path | bytes], warnings: list[str]) -> FrameStream | None:
        """The identity scorer, fed with the portrait and any extra references; None when not scoring."""
        if not s.score_identity:
            return None
        from .scoring.identity import same_person_reference

        scorer = self.identity_scorer
        images, boxes, names = [portrait.rgb], [face.box], [portrait.source_name]
        for extra in references:
            try:
                p2, f2 = self.analyze_portrait(extra, s.max_size)
            except InputError as err:
                warnings.append(f"An extra reference portrait was skipped: {err}")
                continue
            images.append(p2.rgb)
            boxes.append(f2.box)
            names.append(p2.source_name)
        reference, strangers = same_person_reference(scorer.descriptors(images, boxes))
        for i, distance in strangers:
            warnings.append(f"The extra reference portrait '{names[i]}' shows someone else than the portrait "
                            f"(face distance {distance:.2f}, over the same-person threshold "
                            f"{SAME_PERSON_DISTANCE}); it was not used.")
        if reference is None:
            warnings.append("The face descriptor could not read the portrait; identity scores are unavailable.")
            return None
        return scorer.stream(reference)


def _engine(s: RenderSettings, controls: PromptControls | None) -> Engine:
    """The engine the settings ask for; the prompt's look goes to the warp engine."""
    from .engines.warp.engine import WarpEngine

    warp = WarpEngine(controls.style, controls.style_strength) if controls is not None else WarpEngine()
    if s.engine == "warp":
        return warp
    from .engines.diffusion.frames import diffusion_engine
    return diffusion_engine(s, warp)


class _Timer:
    def __init__(self, sink: dict[str, float], stage: str) -> None:
        self.sink, self.stage = sink, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.sink[self.stage] = round(time.perf_counter() - self.t0, 4)
