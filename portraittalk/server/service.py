"""The app's work behind the page: a request in, a finished render or comparison out.

One :class:`RenderService` per process holds the pipeline, the server settings and the
caches; the page (app.py) and the tests build it and hand it around.
"""

from __future__ import annotations

import functools
import logging
import shutil
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np
import pandas as pd

from ..errors import InputError
from ..evaluation import VideoEvaluation, VideoEvaluator, evaluate_video
from ..io.audio import load_audio
from ..io.video import probe_video
from ..pipeline import PortraitTalkPipeline, RenderResult, VideoChunk
from ..settings import RenderSettings
from .compare import COMPARE_NAMES, EvaluationCache, side_by_side
from .results import ResultCache, StoredResult
from .settings import ServerSettings

log = logging.getLogger("portraittalk.app")

MAX_REFERENCES = 4
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# (image, audio, out, settings, references) → result: how the page has a render made.
Render = Callable[[str, str, Path, RenderSettings, list[str]], RenderResult]
# … and streamed: the same plus the folder for the pieces → the pieces as made, then the result.
StreamRender = Callable[[str, str, Path, RenderSettings, list[str], Path], Iterator[VideoChunk | RenderResult]]
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
    name; a missing or empty one takes the page's default."""
    hints = typing.get_type_hints(RenderSettings)
    settings: dict[str, Any] = {}
    try:
        for name, offer in RenderSettings.offered().items():
            value = values.get(name)
            if isinstance(value, str):
                value = value.strip()
            if value is None or value == "":
                settings[name] = offer.default
            elif hints[name] in (int, float):
                settings[name] = hints[name](float(value))
            else:
                settings[name] = value
        return RenderSettings(**settings).validated()
    except (TypeError, ValueError, OverflowError) as err:
        raise InputError(f"A setting has a value that is not a number ({err}); please reset it.") from None


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


class RenderService:
    """Renders and comparisons for the page and the API, with their caches."""

    def __init__(self, pipeline: PortraitTalkPipeline, settings: ServerSettings) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.results = ResultCache(settings.result_cache, settings.result_cache_entries)
        self.evaluations = EvaluationCache()

    # ---------------------------------------------------------------- render
    def check_inputs(self, portrait: Any, audio: Any, references: Any) -> tuple[str, str, list[str]]:
        """Paths of the inputs, or an InputError saying which one is missing."""
        portrait_path, audio_path = as_path(portrait), as_path(audio)
        if not portrait_path:
            raise InputError("Please add a portrait photo first (step 1).")
        if not audio_path:
            raise InputError("Please upload or record some speech first (step 2).")
        refs = [p for p in (as_path(r) for r in (references or [])) if p]
        if len(refs) > MAX_REFERENCES:
            raise InputError(f"Please add at most {MAX_REFERENCES} extra photos of the person.")
        return portrait_path, audio_path, refs

    def check_audio(self, audio_path: str) -> None:
        """InputError for a recording that is unreadable, too short or over the server's limit."""
        load_audio(audio_path, max_duration_s=self.settings.max_audio_seconds)

    def face_preview(self, portrait_path: str, max_size: int) -> np.ndarray:
        """The portrait with the face that will talk outlined (InputError when there is none)."""
        portrait, face = self.pipeline.analyze_portrait(portrait_path, max_size)
        image = portrait.rgb.copy()
        x0, y0, x1, y1 = face.box
        thickness = max(2, round(max(image.shape[:2]) / 200))
        cv2.rectangle(image, (x0, y0), (x1, y1), (79, 70, 229), thickness)
        return image

    def _render(self, image: str, audio: str, out: Path, settings: RenderSettings,
                references: list[str]) -> RenderResult:
        return self.pipeline.render(image, audio, out, settings, references=references)

    def _render_stream(self, image: str, audio: str, out: Path, settings: RenderSettings, references: list[str],
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
               render: Callable[[str, str, Path, RenderSettings, list[str]], Iterator[VideoChunk | RenderResult]]
               ) -> Iterator[VideoChunk | StoredResult]:
        portrait_path, audio_path, refs = self.check_inputs(portrait, audio, references)
        key = ResultCache.key(portrait_path, audio_path, refs, settings)
        cached = self.results.get(key)
        if cached is not None:
            yield cached
            return
        progress(0.0, "Checking the recording")
        self.check_audio(audio_path)
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
                probe_video(path)
            except (OSError, ValueError):
                raise InputError(f"Video {name} ('{Path(path).name}') is not a video PortraitTalk can read; "
                                 "please use an MP4, MOV, WebM or AVI file.") from None
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

    def compare(self, portrait: Any, video_a: Any, video_b: Any, audio: Any, transcript: str | None,
                progress: Progress) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        """Both videos measured against the portrait: (metrics table, curves, verdict and notes)."""
        portrait_path, path_a, path_b = self.check_compare_inputs(portrait, video_a, video_b)
        audio_path = as_path(audio)
        if audio_path:
            self.check_audio(audio_path)
        words = (transcript or "").strip() or None
        evaluations: list[VideoEvaluation] = []
        for i, (name, path) in enumerate(zip(COMPARE_NAMES, (path_a, path_b))):
            def report(frac: float, msg: str, i=i, name=name) -> None:
                progress((i + frac) / 2, f"Video {name}: {msg}")
            evaluations.append(self.evaluate(path, portrait_path, audio_path, words, report))
        return side_by_side(evaluations)
