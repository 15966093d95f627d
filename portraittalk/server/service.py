"""The app's work behind the page: a request in, a finished render or comparison out.

One :class:`RenderService` per process holds the pipeline, the server settings and the
caches; the page (app.py) and the tests build it and hand it around.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import shutil
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.face import faces_left_to_right
from ..contracts import Box
from ..errors import InputError
from ..evaluation import VideoEvaluation, VideoEvaluator, evaluate_video
from ..io.audio import clock, load_audio
from ..io.image import load_portrait
from ..io.subtitles import burn_in
from ..io.video import probe_video
from ..pipeline import PortraitTalkPipeline, RenderResult, VideoChunk
from ..settings import RenderSettings
from ..voices import synthesize_speech
from .compare import COMPARE_NAMES, EvaluationCache, SideBySideStore, side_by_side
from .faces import PREVIEW_SIZE, draw_faces, face_at
from .results import ResultCache, StoredResult
from .settings import ServerSettings

log = logging.getLogger("portraittalk.app")

MAX_REFERENCES = 4
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# (image, audio or None for a typed text, out, settings, references) → result: how the page has a render made.
Render = Callable[[str, str | None, Path, RenderSettings, list[str]], RenderResult]
# … and streamed: the same plus the folder for the pieces → the pieces as made, then the result.
StreamRender = Callable[[str, str | None, Path, RenderSettings, list[str], Path],
                        Iterator[VideoChunk | RenderResult]]
# (fraction done, message)
Progress = Callable[[float, str], None]


def as_path(value: Any) -> str | None:
    """A file path from what the page hands over (a path, a FileData-like dict, or None)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = value.get("path") or value.get("name")
    return str(value) if value else None


def request_settings(values: Mapping[str, Any]) -> RenderSettings:
    """RenderSettings from the values of the page's controls or of an API call, by field
    name; a missing or empty one takes the page's default. Numbers may come as numbers or
    as text (the API schema advertises the output sizes as text); one that is not a finite
    number is refused with :func:`bad_setting`, one out of range by RenderSettings."""
    hints = typing.get_type_hints(RenderSettings)
    settings: dict[str, Any] = {}
    for name, offer in RenderSettings.offered().items():
        value = values.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            settings[name] = offer.default
            continue
        if hints[name] in (int, float):
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                raise InputError(bad_setting(name, value)) from None
            if not math.isfinite(number):
                raise InputError(bad_setting(name, value))
            value = int(number) if hints[name] is int and number.is_integer() else number
        settings[name] = value
    return RenderSettings(**settings).validated()


def bad_setting(name: str, value: Any, choices: Sequence[Any] = ()) -> str:
    """The sentence for a value the page could not have sent for setting ``name``, naming what
    it takes (``choices``: what this page offers, when that is less than the setting's own)."""
    offer = RenderSettings.offered()[name]
    spec = RenderSettings.spec(next(f for f in dataclasses.fields(RenderSettings) if f.name == name))
    choices = choices or offer.choices
    if choices:
        allowed = "one of " + ", ".join(str(c) for c in choices)
    elif spec.whole:
        allowed = f"a whole number from {offer.lo:g} up"
    else:
        allowed = f"a number from {offer.lo:g} to {offer.hi:g}"
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "…"
    return f"The setting '{name}' needs {allowed}; {shown} is not a {'value' if choices else 'number'} it takes."


def diffusion_availability() -> tuple[bool, str]:
    """(available, reason) for the diffusion engine; never raises."""
    try:
        from ..engines.diffusion.engine import diffusion_status
    except Exception:  # the module is optional: missing or broken means "not installed"
        return False, "the diffusion engine is not installed"
    try:
        available, reason = diffusion_status()
        return bool(available), str(reason)
    except Exception as err:
        log.warning("diffusion_status() failed: %s", err)
        return False, "the diffusion engine could not be checked on this machine"


def example_rows(folder: Path) -> tuple[list[list[Any]], list[str]]:
    """Each portrait in ``folder`` paired with a speech clip there (and its transcript), with a label."""
    portraits = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    clips = sorted(folder.glob("*.wav"), key=lambda p: p.stat().st_size)  # shortest first
    rows, labels = [], []
    for i, portrait in enumerate(portraits):
        if not clips:
            break
        clip = clips[i % len(clips)]
        txt = clip.with_suffix(".txt")
        transcript = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
        rows.append([str(portrait), str(clip), transcript])
        name = portrait.stem.replace("_", " ").title()
        words = transcript if len(transcript) <= 40 else transcript[:40].rsplit(" ", 1)[0] + "…"
        labels.append(f"{name} · “{words}”" if transcript else name)
    return rows, labels


@dataclass(frozen=True)
class Heard:
    """What the page shows after an upload: the words and the language (None: not recognised)."""

    text: str
    language: str | None
    probability: float
    problem: str = ""  # why nothing could be recognised


class RenderService:
    """Renders and comparisons for the page and the API, with their caches."""

    def __init__(self, pipeline: PortraitTalkPipeline, settings: ServerSettings) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.results = ResultCache(settings.result_cache, settings.result_cache_entries)
        self.evaluations = EvaluationCache()
        self.side_by_side_videos = SideBySideStore(settings.result_cache / ResultCache.SIDE_BY_SIDE)

    # ---------------------------------------------------------------- render
    def check_inputs(self, portrait: Any, audio: Any, references: Any,
                     text: str | None = None) -> tuple[str, str | None, list[str]]:
        """Paths of the inputs (no audio for a typed text), or an InputError saying which one is missing."""
        portrait_path, audio_path = as_path(portrait), as_path(audio)
        if not portrait_path:
            raise InputError("Please add a portrait photo first (step 1).")
        if audio_path and text:
            raise InputError("Please give either a recording or a text to say, not both: clear one of them (step 2).")
        if not audio_path and not text:
            raise InputError("Please upload or record some speech first, or type a text to say (step 2).")
        refs = [p for p in (as_path(r) for r in (references or [])) if p]
        if len(refs) > MAX_REFERENCES:
            raise InputError(f"Please add at most {MAX_REFERENCES} extra photos of the person.")
        return portrait_path, audio_path, refs

    def check_audio(self, audio_path: str) -> None:
        """InputError for a recording that is unreadable, too short or over the server's limit."""
        load_audio(audio_path, max_duration_s=self.settings.max_audio_seconds)

    def check_speech(self, audio_path: str | None, settings: RenderSettings) -> None:
        """InputError for a recording, or a typed text, that cannot be spoken within the server's limit."""
        if audio_path:
            self.check_audio(audio_path)
        else:  # kept by the voices' cache: the render reads the same text at no cost
            synthesize_speech(settings.text or "", settings.voice).check_duration(self.settings.max_audio_seconds)

    def recognize(self, audio: Any) -> Heard:
        """What the recording says, for the page to fill in before a render (the render then
        finds it in the recogniser's memory). Words Whisper is unsure of (singing, music) are left out."""
        from ..analysis.speech.recognizer import trusted
        from ..analysis.speech.whisper import RecognizerUnavailableError, transcribe

        audio_path = as_path(audio)
        if not audio_path:
            return Heard("", None, 0.0)
        clip = load_audio(audio_path, max_duration_s=self.settings.max_audio_seconds)
        try:
            heard = transcribe(clip.samples)
        except RecognizerUnavailableError as err:
            return Heard("", None, 0.0, str(err))
        if not trusted(heard, language_given=False):
            return Heard("", None, heard.language_probability)
        return Heard(heard.text, heard.language, heard.language_probability)

    def burn_captions(self, video: Any, downloads: Any) -> str:
        """A copy of the page's video with its subtitles drawn into the picture."""
        video_path = as_path(video)
        subtitles = next((p for p in (as_path(d) for d in downloads or []) if p and p.endswith(".srt")), None)
        if not video_path or not subtitles:
            raise InputError("Make a video first (step 3); its captions can then be burned in.")
        if not Path(subtitles).read_text(encoding="utf-8").strip():
            raise InputError("No words were recognised in this video, so there are no captions to burn in.")
        out = self.results.new_work_dir() / "portraittalk-captions.mp4"
        return str(burn_in(video_path, subtitles, out))

    def face_boxes(self, rgb: np.ndarray) -> list[Box]:
        """The boxes of the faces found, numbered as on the page: from the left."""
        return [f.box for f in faces_left_to_right(self.pipeline.face_analyzer.detect_faces(rgb))]

    def face_preview(self, portrait_path: str, face: int = 0) -> np.ndarray:
        """The portrait with every face found outlined and numbered from the left, the one that will
        talk (number ``face``, or the largest for 0) standing out; InputError when there is none."""
        portrait, chosen = self.pipeline.analyze_portrait(portrait_path, PREVIEW_SIZE, face or None)
        drawn = draw_faces(portrait.rgb, self.face_boxes(portrait.rgb) or [chosen.box], chosen.number)
        return np.ascontiguousarray(np.rot90(drawn, -portrait.upright_turns))  # as the photo is shown

    def faces_shown(self, portrait_path: str | None, face: int = 0,
                    click: Sequence[float] | None = None) -> tuple[np.ndarray | None, int]:
        """(preview, number of the face that talks) for the page: the face clicked at ``click`` in the
        preview, else face number ``face`` (0: the largest). No preview, and 0, for a picture without
        that face: the request says why when it is made."""
        if not portrait_path:
            return None, 0
        try:
            if click is not None:
                rgb = load_portrait(portrait_path, max_size=PREVIEW_SIZE).rgb
                face = face_at(self.face_boxes(rgb) or [(0, 0, rgb.shape[1], rgb.shape[0])], *click[:2])
            return self.face_preview(portrait_path, face), face
        except InputError:
            return None, 0

    def _render(self, image: str, audio: str | None, out: Path, settings: RenderSettings,
                references: list[str]) -> RenderResult:
        return self.pipeline.render(image, audio, out, settings, references=references)

    def _render_stream(self, image: str, audio: str | None, out: Path, settings: RenderSettings, references: list[str],
                       stream_dir: Path) -> Iterator[VideoChunk | RenderResult]:
        return self.pipeline.render_stream(image, audio, out, settings, references=references, stream_dir=stream_dir)

    def render(self, portrait: Any, audio: Any, references: Any, settings: RenderSettings,
               progress: Progress, render: Render | None = None) -> StoredResult:
        """The finished render for these inputs: from the cache, or made now by ``render``
        (default: the pipeline, without progress).

        Everything a user can get wrong raises InputError before the slow part starts.
        """
        made = render or self._render
        *_, stored = self._serve(portrait, audio, references, settings, progress,
                                 lambda image, sound, out, s, refs: iter([made(image, sound, out, s, refs)]))
        assert isinstance(stored, StoredResult)
        return stored

    def render_stream(self, portrait: Any, audio: Any, references: Any, settings: RenderSettings,
                      progress: Progress, render: StreamRender | None = None) -> Iterator[VideoChunk | StoredResult]:
        """Like ``render``, yielding the video's pieces while it is made (none when it comes from the cache)."""
        made = render or self._render_stream
        stream_dir = self.results.new_stream_dir()
        yield from self._serve(portrait, audio, references, settings, progress,
                               lambda image, sound, out, s, refs: made(image, sound, out, s, refs, stream_dir))

    def _serve(self, portrait: Any, audio: Any, references: Any, settings: RenderSettings, progress: Progress,
               render: Callable[[str, str | None, Path, RenderSettings, list[str]], Iterator[VideoChunk | RenderResult]]
               ) -> Iterator[VideoChunk | StoredResult]:
        portrait_path, audio_path, refs = self.check_inputs(portrait, audio, references, settings.text)
        key = ResultCache.key(portrait_path, audio_path, refs, settings)
        cached = self.results.get(key)
        if cached is not None:
            yield cached
            return
        progress(0.0, "Checking the recording" if audio_path else "Reading the text aloud")
        self.check_speech(audio_path, settings)
        work = self.results.new_work_dir()
        try:
            for event in render(portrait_path, audio_path, work / StoredResult.VIDEO, settings, refs):
                if isinstance(event, RenderResult):
                    progress(1.0, "Saving the scores")
                    yield self.results.store(key, event, work)
                else:
                    yield event
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)

    # ---------------------------------------------------------------- compare
    @functools.cached_property
    def evaluator(self) -> VideoEvaluator:
        """One evaluator, sharing the pipeline's face mesh and identity network."""
        return VideoEvaluator(self.pipeline.face_analyzer, self.pipeline.identity_scorer)

    def check_compare_inputs(self, portrait: Any, video_a: Any, video_b: Any) -> tuple[str, str, str]:
        """Paths of the portrait and both videos; InputError for a missing one or a file that is
        not a video (checked for both before the slow part, so a bad video B fails at once)."""
        portrait_path = as_path(portrait)
        if not portrait_path:
            raise InputError("Please add the portrait photo the videos should show, so both can be measured "
                             "against it.")
        paths = []
        for name, value in zip(COMPARE_NAMES, (video_a, video_b)):
            path = as_path(value)
            if not path:
                raise InputError(f"Please add video {name}: upload a video, or use your last result from the "
                                 "Generate tab.")
            try:
                info = probe_video(path)
            except (OSError, ValueError):
                raise InputError(f"Video {name} ('{Path(path).name}') is not a video PortraitTalk can read; "
                                 "please use an MP4, MOV, WebM or AVI file.") from None
            # Measuring holds the render queue: bounded like the speech a render may take.
            limit = self.settings.max_audio_seconds
            if info.duration_s > limit + 1.0 / max(info.fps, 1.0):  # one frame of slack
                raise InputError(f"Video {name} ('{Path(path).name}') is {clock(info.duration_s)} long but the limit "
                                 f"is {clock(limit)}; please trim it or compare shorter clips.")
            paths.append(path)
        return portrait_path, paths[0], paths[1]

    def evaluate(self, video: str, portrait: str, audio: str | None, transcript: str | None,
                 progress: Progress) -> VideoEvaluation:
        """The evaluation of one video against the portrait (measured once per set of inputs)."""
        key = EvaluationCache.key(video, portrait, audio, transcript)
        found = self.evaluations.get(key)
        if found is None:
            found = evaluate_video(video, portrait, audio, transcript, evaluator=self.evaluator,
                                   progress=lambda stage, frac, msg: progress(frac, msg))
            self.evaluations.put(key, found)
        return found

    def _measure(self, portrait: Any, video_a: Any, video_b: Any, audio: Any, transcript: str | None,
                 progress: Progress) -> tuple[list[str], list[str], list[VideoEvaluation], str | None]:
        """(video paths, evaluation keys, evaluations, audio path) of videos A and B."""
        portrait_path, path_a, path_b = self.check_compare_inputs(portrait, video_a, video_b)
        audio_path = as_path(audio)
        if audio_path:
            self.check_audio(audio_path)
        words = (transcript or "").strip() or None
        keys, evaluations = [], []
        for i, (name, path) in enumerate(zip(COMPARE_NAMES, (path_a, path_b))):
            def report(frac: float, msg: str, i=i, name=name) -> None:
                progress((i + frac) / 2, f"Video {name}: {msg}")
            keys.append(EvaluationCache.key(path, portrait_path, audio_path, words))
            evaluations.append(self.evaluate(path, portrait_path, audio_path, words, report))
        return [path_a, path_b], keys, evaluations, audio_path

    def compare(self, portrait: Any, video_a: Any, video_b: Any, audio: Any, transcript: str | None,
                progress: Progress) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """Both videos measured against the portrait: (metrics table, curves, verdict and notes)."""
        return side_by_side(self._measure(portrait, video_a, video_b, audio, transcript, progress)[2])

    def compare_video(self, portrait: Any, video_a: Any, video_b: Any, audio: Any, transcript: str | None,
                      progress: Progress) -> Path:
        """Both videos side by side in one MP4 (the shared sound: ``audio``, else A's), each captioned
        with its identity, lip sync and offset; measured once, with the comparison."""
        videos, keys, evaluations, audio_path = self._measure(portrait, video_a, video_b, audio, transcript, progress)
        progress(1.0, "Putting the videos side by side")
        return self.side_by_side_videos.video(videos, keys, evaluations, audio_path)
