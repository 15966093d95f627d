"""The one pipeline every front end calls (CLI, app, benchmark).

inputs → analysis (face, audio) → motion track → engine → encoder → identity scores → report.

Models (face mesh, dlib descriptor, speech recogniser) load once per process in
:class:`PortraitTalkPipeline` and are reused across requests. Frames stream from the
engine to the encoder and the identity scorer one at a time, so memory stays flat in the
clip length.

``render_stream`` is the same render as ``render``, yielding the video in playable pieces
while it is made: the speech is analysed window by window as the frames reach it
(:mod:`.motion.windows`), so the first frames wait for the first few seconds of audio only.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .contracts import (
    SAME_PERSON_DISTANCE,
    AudioClip,
    FaceAnalysis,
    IdentityScores,
    MotionTrack,
    Portrait,
    SpeechAnalysis,
    WordSegment,
)
from .errors import InputError, PortraitTalkError
from .io.paths import check_output_path, write_file
from .report import RunReport
from .runtime import StageClock, limit_malloc_arenas, opencv_threads, release_freed_memory
from .settings import MAX_AUDIO_SECONDS, RenderSettings
from .voices import VOICES, synthesize_speech

if TYPE_CHECKING:
    from .analysis.face import FaceAnalyzer
    from .engines.base import Engine
    from .motion.prompt import PromptControls
    from .motion.windows import Window
    from .scoring.identity import IdentityScorer
    from .scoring.stream import FrameStream
    from .voices import SynthesizedSpeech

log = logging.getLogger(__name__)

# Progress callback: (stage name, fraction of the whole job done 0…1, human message).
ProgressFn = Callable[[str, float, str], None]


@dataclass(frozen=True)
class VideoChunk:
    """A finished piece of a video being rendered: fragmented-MP4 media that plays after ``init``
    (the stream's header) and the pieces before it; pieces come in order, without gaps."""

    index: int
    path: Path
    init: Path
    start_s: float
    duration_s: float


@dataclass
class RenderResult:
    video_path: Path
    identity: IdentityScores | None
    motion: MotionTrack
    run_report: RunReport
    warnings: list[str] = field(default_factory=list)
    speech: SynthesizedSpeech | None = None  # the synthesised speech, when the text was typed
    words: list[WordSegment] = field(default_factory=list)  # what is said, timed: the subtitles
    # Seconds per stage: wall clock and CPU of the threads doing it (the benchmark's table).
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)
    first_chunk_s: float | None = None  # from the request to the first playable piece, when streamed

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
        # A render runs several threads; glibc would give each a malloc arena that keeps its peak.
        limit_malloc_arenas()
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
        for event in self.render_stream(image, audio, out_path, settings, progress, references):
            if isinstance(event, RenderResult):
                return event
        raise AssertionError("render_stream ended without a result")

    def render_stream(self, image: str | Path | bytes, audio: str | Path | None, out_path: str | Path,
                      settings: RenderSettings | None = None, progress: ProgressFn | None = None,
                      references: Sequence[str | Path | bytes] | None = None,
                      stream_dir: Path | None = None) -> Iterator[VideoChunk | RenderResult]:
        """The render, as it happens: with ``stream_dir``, the video's pieces (written there)
        while frames are made, then always the RenderResult of the finished MP4."""
        s = (settings or RenderSettings()).validated()
        # Before any work: a bad path fails at once, and no input can be overwritten.
        out_path = check_output_path(out_path, inputs=[image, audio, *(references or [])])
        clock = StageClock()
        if not s.text:
            if audio is None:
                raise InputError("There is no speech: give a recording, or a text to say.")
            yield from self._render(image, audio, out_path, s, progress, references, stream_dir, clock)
            return
        if audio is not None:
            raise InputError("Give either a recording or a text to say, not both.")
        with clock("speech_synthesis"):
            spoken = synthesize_speech(s.text, s.voice)
        spoken.check_duration(MAX_AUDIO_SECONDS)
        with tempfile.TemporaryDirectory(prefix="portraittalk-speech-") as folder:
            wav = spoken.write_wav(Path(folder) / "speech.wav")
            yield from self._render(image, wav, out_path, s, progress, references, stream_dir, clock, spoken)

    def _render(self, image: str | Path | bytes, audio: str | Path, out_path: Path, s: RenderSettings,
                progress: ProgressFn | None, references: Sequence[str | Path | bytes] | None,
                stream_dir: Path | None, clock: StageClock, spoken: SynthesizedSpeech | None = None
                ) -> Iterator[VideoChunk | RenderResult]:
        from .io.audio import load_audio, muxable_audio
        from .io.subtitles import cues_from_words, subtitle_file
        from .io.video import RENDER_X264, SegmentPlan, VideoEncoder
        from .motion.prompt import parse_prompt
        from .motion.windows import MotionStitcher, plan_windows, whole_recording
        from .scoring.stream import ScoringThread

        report_progress = progress or (lambda stage, frac, msg: None)
        warnings: list[str] = []
        report_progress("face", 0.0, "Analysing the face")
        with clock("face_analysis"):
            portrait, face = self.analyze_portrait(image, s.max_size, s.face or None)
        warnings += face.warnings
        report_progress("audio", 0.05, "Analysing the audio")
        with clock("audio_decode"):
            clip = load_audio(audio, max_duration_s=MAX_AUDIO_SECONDS)
        n_frames = max(1, round(clip.duration_s * s.fps))
        with clock("prompt"):
            controls = parse_prompt(s.prompt, s.prompt_strength) if (s.prompt or "").strip() else None
        if controls is not None and controls.ignored:
            warnings.append("Part of the prompt was not used: " + "; ".join(
                f'"{i.phrase}" ({i.reason})' for i in controls.ignored) + ".")
        transcript = bool((s.transcript or "").strip())
        # The diffusion engine may read ahead in the track, and a typed text's phones are known
        # at once: both get the whole recording's analysis first.
        windows = plan_windows(clip.duration_s, s.fps, transcript) if s.engine == "warp" and spoken is None \
            else [whole_recording(clip.duration_s, transcript)]
        analyses = _WindowAnalyses(clip, windows, s, clock, spoken)
        stitcher = MotionStitcher(windows, n_frames, s, controls)
        engine = _engine(s, controls)
        segments = SegmentPlan(stream_dir) if stream_dir is not None else None
        scoring = None
        first_chunk_s = None
        try:
            report_progress("motion", 0.15, "Planning the motion")
            stream = self._identity_stream(s, portrait, face, references or [], warnings)
            # Identity scoring in a thread beside rendering; encoding in ffmpeg's own process.
            scoring = ScoringThread(stream) if stream is not None else None
            if len(windows) == 1:  # heard before the first frame anyway: the subtitles go in with the frames
                with clock("render_encode"):  # where the windows' analyses are counted too
                    analysis = analyses.next()
                    with clock("motion"):
                        stitcher.add(analysis)
            early = stitcher.ready_frames >= n_frames
            # NaN/inf samples are silenced in a temporary copy rather than left to become clicks.
            with muxable_audio(clip) as sound, \
                    subtitle_file(cues_from_words(stitcher.speech.words) if early else []) as subtitles, \
                    VideoEncoder(out_path, portrait.video_size, s.fps, audio_path=sound, frames=n_frames,
                                 segments=segments, audio_format=(clip.original_rate, clip.original_channels),
                                 x264_params=RENDER_X264, subtitles_path=subtitles) as enc, \
                    opencv_threads(1 if scoring else None):
                with clock("render_encode"):
                    frames = iter(engine.frames(portrait, face, stitcher.track, clip))
                    for i in range(n_frames):
                        while stitcher.ready_frames <= i:
                            analysis = analyses.next()
                            with clock("motion"):
                                stitcher.add(analysis)
                        frame = next(frames)
                        # Frames are drawn upright and shown in the photo's own orientation.
                        enc.write(np.rot90(frame.rgb, -portrait.upright_turns))
                        if scoring is not None:
                            scoring.put(frame.rgb, frame.box, frame.mesh)
                        if i % 10 == 0 or i == n_frames - 1:
                            report_progress("render", 0.2 + 0.75 * (i + 1) / n_frames,
                                            f"Rendering frame {i + 1} of {n_frames}")
                        if segments is not None and i % 5 == 0:
                            for chunk in _chunks(enc.new_segments(), segments):
                                first_chunk_s = first_chunk_s if first_chunk_s is not None else clock.elapsed()
                                yield chunk
                if not early:  # the words of the whole recording are known now, at its end
                    with subtitle_file(cues_from_words(stitcher.speech.words)) as subtitles:
                        enc.close(subtitles)
            for chunk in _chunks(enc.new_segments(), segments) if segments is not None else []:
                first_chunk_s = first_chunk_s if first_chunk_s is not None else clock.elapsed()
                yield chunk
        except BaseException:  # failed or interrupted: the scoring thread stops too
            if scoring is not None:
                scoring.cancel()
            raise
        if scoring is not None:
            scoring.close()
        identity = None
        if scoring is not None:
            with clock("identity_wait_after_render"):
                identity = scoring.finish()
            clock.add("identity_scoring", scoring.busy_s, scoring.cpu_s)
        speech = stitcher.speech
        warnings += speech.warnings
        clock.stop()

        if identity is not None:
            summ = identity.summary()
            if summ.get("frames_over_threshold", 0):
                warnings.append(f"{summ['frames_over_threshold']} frame(s) drifted beyond the same-person threshold.")
        if speech.speech_ratio < 0.02 and not any("no speech" in w for w in warnings):
            from .analysis.speech import NO_SPEECH_WARNING
            warnings.append(NO_SPEECH_WARNING)
        report_progress("done", 1.0, "Done")
        release_freed_memory()
        report = RunReport.build(out_path, s, portrait, face, clip, speech, stitcher.track, identity,
                                 _report_timings(clock), warnings, controls, spoken)
        yield RenderResult(out_path, identity, stitcher.track, report, warnings, speech=spoken, words=speech.words,
                           stages=clock.stages(), first_chunk_s=first_chunk_s)

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
        return scorer.stream(reference, points=scorer.face_points(portrait.rgb, face.box, face.landmarks))


def _engine(s: RenderSettings, controls: PromptControls | None) -> Engine:
    """The engine the settings ask for; the prompt's look goes to the warp engine."""
    from .engines.warp.engine import WarpEngine

    warp = WarpEngine(controls.style, controls.style_strength) if controls is not None else WarpEngine()
    if s.engine == "warp":
        return warp
    from .engines.diffusion.frames import diffusion_engine
    return diffusion_engine(s, warp)


def _report_timings(clock: StageClock) -> dict[str, float]:
    """SCORES.json's timings: wall-clock seconds of each stage, as before streaming (render_encode
    leaves out the speech analysis and motion planning done between its frames)."""
    t = clock.wall
    render = t("render_encode") - t("speech_analysis") - t("motion")
    identity = t("identity_scoring") + t("identity_wait_after_render")
    timings = {"face_analysis": t("face_analysis"), "audio_decode": t("audio_decode"),
               "speech_analysis": t("speech_analysis"), "prompt": t("prompt"), "motion": t("motion"),
               "render_encode": render, "total": t("total")}
    if t("speech_synthesis") > 0:
        timings["speech_synthesis"] = t("speech_synthesis")
    if t("identity_scoring") > 0:
        timings |= {"identity_wait_after_render": t("identity_wait_after_render"), "identity_scoring": identity}
    return timings


def _chunks(segments: list, plan: Any) -> Iterator[VideoChunk]:
    for seg in segments:
        yield VideoChunk(seg.index, seg.path, plan.folder / plan.INIT, seg.start_s, seg.duration_s)


class _WindowAnalyses:
    """The speech of each window, analysed when the renderer reaches it (``next()``), in the
    renderer's own thread: the recognisers hold the GIL for long stretches, so in a thread beside
    the renderer they would stall the frames at unpredictable moments instead of overlapping.

    The first window's language (when recognised with confidence) is kept for the rest, so one
    recording is read in one language. A typed text's phones are known: one window, no recogniser."""

    def __init__(self, clip: AudioClip, windows: list[Window], s: RenderSettings, clock: StageClock,
                 spoken: SynthesizedSpeech | None = None) -> None:
        self._clip, self._windows, self._settings, self._clock, self._spoken = clip, windows, s, clock, spoken
        self._language = s.language or None
        self._detected: float | None = None  # the first window's confidence in the language it detected
        self._taken = 0

    def next(self) -> SpeechAnalysis:
        from .analysis.speech import analyze_speech
        from .analysis.speech.given import analyze_given_phones

        window, s, spoken = self._windows[self._taken], self._settings, self._spoken
        self._taken += 1
        with self._clock("speech_analysis"):
            if spoken is not None:
                analysis = analyze_given_phones(self._clip, s.fps, spoken.phones, VOICES[spoken.voice].language,
                                                text=spoken.text)
            else:
                analysis = analyze_speech(window.clip(self._clip), s.fps,
                                          s.transcript if window.use_transcript else None, self._language,
                                          s.asr_model)
        if self._detected is not None:  # read in the language detected first: report that detection
            analysis.language_probability = self._detected
        elif self._language is None and analysis.words and analysis.language_probability >= KEEP_LANGUAGE_P:
            self._language, self._detected = analysis.language, analysis.language_probability
        release_freed_memory()  # the analysis' temporaries, before the frames that follow
        return analysis


# The first window's language is kept for the next ones above this confidence.
KEEP_LANGUAGE_P = 0.8
