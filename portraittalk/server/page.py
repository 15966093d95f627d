"""The page's side of the app: its event handlers and the Gradio details around them.

:class:`Handlers` turns page values into service calls and the results back into page values;
every failure reaches the visitor as one sentence (:func:`friendly_errors`). The ``explain_*``
helpers make Gradio's own checks of an upload or a setting end in a sentence too. ``app.py``
lays out the page and wires these to its events.
"""

from __future__ import annotations

# On ZeroGPU hardware `spaces` must be imported before torch touches CUDA.
try:
    import spaces
except ImportError:  # plain local install without the Spaces helper
    spaces = None

import functools
import inspect
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import PIL.Image

from ..errors import PortraitTalkError
from ..io.image import too_large_message
from ..pipeline import PortraitTalkPipeline, RenderResult, VideoChunk
from ..settings import RenderSettings
from . import texts
from .results import StoredResult
from .service import RenderService, as_path, bad_setting, request_settings
from .streaming import StreamState

log = logging.getLogger("portraittalk.app")

OFFERED = RenderSettings.offered()  # each page control's range, step and default
# How many warnings pop up as toasts; all of them are listed in the notes box.
MAX_TOASTS = 3
# Compare plot: one hue per video, identity dark and lip sync light.
COMPARE_COLORS = {"A identity": "#4338ca", "A lip sync": "#a5b4fc",
                  "B identity": "#be185d", "B lip sync": "#f9a8d4"}


def friendly_errors(fn: Callable | None = None, *, title: str = "Can't make this video",
                    unexpected: str = texts.UNEXPECTED_ERROR) -> Callable:
    """Every failure reaches the page as one sentence in a gr.Error, never a traceback. Use bare
    or with the toast's title and the sentence for unexpected failures (``title=…, unexpected=…``)."""
    if fn is None:
        return functools.partial(friendly_errors, title=title, unexpected=unexpected)

    def explained(err: Exception) -> gr.Error:
        if isinstance(err, gr.Error):
            return err
        if isinstance(err, PortraitTalkError):
            return gr.Error(str(err), title=title, print_exception=False)
        log.exception("request failed")  # the details go to the server log only
        return gr.Error(unexpected, title="Something went wrong", print_exception=False)

    if inspect.isgeneratorfunction(fn):  # a handler that streams its outputs
        @functools.wraps(fn)
        def streamed(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:
                raise explained(err) from None
        return streamed

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise explained(err) from None
    return wrapper


def to_page(progress: gr.Progress) -> Callable[[float, str], None]:
    return lambda frac, msg: progress(frac, desc=msg)


def page_renderer(pipeline: PortraitTalkPipeline):
    """The pipeline's render, reporting to the request's progress bar. Only the diffusion
    engine needs the accelerator: on a ZeroGPU Space its renders run under `@spaces.GPU`."""

    def render(image: str, audio: str | None, out: Path, settings: RenderSettings,
               references: list[str]) -> RenderResult:
        # A fresh gr.Progress reports to the request being served; made here rather than passed
        # in, because on ZeroGPU this runs in a worker process and its arguments are pickled.
        progress = gr.Progress()
        return pipeline.render(image, audio, out, settings, lambda stage, frac, msg: progress(frac, desc=msg),
                               references=references)

    on_gpu = spaces.GPU(duration=240)(render) if spaces is not None else render

    def on_its_device(image: str, audio: str | None, out: Path, settings: RenderSettings, references: list[str]):
        return (on_gpu if settings.engine == "diffusion" else render)(image, audio, out, settings, references)
    return on_its_device


def page_stream_renderer(pipeline: PortraitTalkPipeline):
    """``page_renderer``'s render, yielding the video's pieces while it is made. The warp engine
    streams; the diffusion engine's video comes whole, from the accelerator."""
    whole = page_renderer(pipeline)

    def render(image: str, audio: str, out: Path, settings: RenderSettings, references: list[str],
               stream_dir: Path):
        if settings.engine != "warp":
            yield whole(image, audio, out, settings, references)
            return
        progress = gr.Progress()
        yield from pipeline.render_stream(image, audio, out, settings,
                                          lambda stage, frac, msg: progress(frac, desc=msg),
                                          references=references, stream_dir=stream_dir)
    return render


class Handlers:
    """The page's events: page values in, the service in between, page values out."""

    def __init__(self, service: RenderService) -> None:
        self.service = service
        self.render = page_renderer(service.pipeline)
        self.render_stream = page_stream_renderer(service.pipeline)

    @staticmethod
    def clear_result():
        return gr.update(value=None, visible=False), gr.update(value=None, visible=True), None, "", None, "", \
            gr.update(value=None, visible=False)

    @friendly_errors
    def prepare(self, portrait, audio, references, text, voice, face):
        """First half of a page request (fast): check the inputs and show which face will talk.
        Clears the previous result; the render itself follows as a second event."""
        settings = request_settings({"text": text, "voice": voice, "face": face})
        portrait_path, audio_path, _ = self.service.check_inputs(portrait, audio, references, settings.text)
        self.service.check_speech(audio_path, settings)
        preview = self.service.face_preview(portrait_path, settings.face)
        return gr.update(value=preview, visible=True), None, None, "", None, "", gr.update()

    @friendly_errors(title="Can't choose this face")
    def show_faces(self, portrait, face=0, click=None):
        """The faces of a new portrait or of a face number typed in: every face numbered, the one that
        talks outlined (a new portrait starts from the largest)."""
        preview, number = self.service.faces_shown(as_path(portrait), int(face or 0), click)
        return gr.update(value=preview, visible=preview is not None), number

    def pick_face(self, portrait, evt: gr.SelectData):
        """A click on the preview: the face clicked (or its number) becomes the one that talks."""
        return self.show_faces(portrait, click=evt.index[:2])

    @staticmethod
    def _result(stored: StoredResult, prompt: str) -> tuple:
        """(video, plot, summary, downloads, notes) for the page."""
        return (str(stored.video), texts.identity_plot_data(stored.report), texts.summary_markdown(stored),
                stored.downloads, texts.notes_markdown(stored.report, prompt))

    @friendly_errors(title="Can't read the recording")
    def heard(self, audio):
        """After an upload or a recording: the words and the language recognised, and a line about them."""
        heard = self.service.recognize(audio)
        return heard.text, heard.language or "", texts.heard_markdown(heard)

    @friendly_errors(title="Can't burn in the captions")
    def burn_captions(self, video, downloads):
        return gr.update(value=self.service.burn_captions(video, downloads), visible=True)

    @friendly_errors
    def generate(self, portrait, audio, references=None, progress=gr.Progress(), **controls):
        """Page handler: the video playing while it is made, then the finished video, the identity
        plot, the numbers, the downloads and the notes."""
        settings = request_settings(controls)
        state = StreamState()
        for event in self.service.render_stream(portrait, audio, references, settings, to_page(progress),
                                                self.render_stream):
            if isinstance(event, VideoChunk):  # the stream's player takes the preview's and the video's place
                yield (gr.update(visible=False), gr.update(visible=False), *[gr.update()] * 4,
                       gr.update(value=state.add(event), visible=True))
                continue
            for w in (event.report.get("warnings") or [])[:MAX_TOASTS]:
                gr.Warning(w)
            # The stream's player stays until show_finished swaps the two players.
            yield (gr.update(visible=False), *self._result(event, settings.prompt),
                   state.finish(event.video) if state.pieces else gr.update(value=None, visible=False))

    @staticmethod
    def show_finished():
        """The finished video's player in the stream's place (the page then continues it: HANDOVER_JS)."""
        return gr.update(visible=True), gr.update(visible=False)

    @staticmethod
    def show_subtitles(downloads):
        """The player's subtitle track: the render's WebVTT download (the page endpoint's values stay plain).
        Its own step: set together with the player's visibility, it empties the player."""
        return gr.update(subtitles=next((d for d in map(as_path, downloads or []) if d and d.endswith(".vtt")), None))

    @friendly_errors
    def render_api(self, portrait, audio, references=None, progress=gr.Progress(), **controls):
        """Render a talking-face video from a recording (audio), or from text said by a voice (leave audio
        empty); face chooses who talks (1 = the leftmost, 0 = the largest). Returns (video, report): the
        report holds the per-frame identity scores (cosine, descriptor distance, same-person threshold 0.6),
        timings and warnings."""
        settings = request_settings(controls)
        stored = self.service.render(portrait, audio, references, settings, to_page(progress), self.render)
        return str(stored.video), stored.report

    @friendly_errors
    def generate_example(self, portrait, audio, transcript):
        """Examples gallery: default settings, final outputs only (these get cached)."""
        stored = self.service.render(portrait, audio, None, request_settings({"transcript": transcript}),
                                     lambda frac, msg: None, self.render)
        return self._result(stored, "")

    @friendly_errors(title="Can't compare these videos", unexpected=texts.UNEXPECTED_COMPARE_ERROR)
    def compare_videos(self, portrait, video_a, video_b, audio=None, transcript="", progress=gr.Progress()):
        """Measure two videos against the portrait they should show. Returns (table, plot,
        verdict): one row per metric with both values and the better video, both videos'
        identity and lip-sync curves over time, and a one-line verdict."""
        return self.service.compare(portrait, video_a, video_b, audio, transcript, to_page(progress))

    @friendly_errors(title="Can't compare these videos", unexpected=texts.UNEXPECTED_COMPARE_ERROR)
    def compare_video(self, portrait, video_a, video_b, audio=None, transcript="", progress=gr.Progress()):
        """Videos A and B side by side in one MP4 to share: same height, labelled, one sound track (the
        speech given, else A's) and a caption row with each one's identity, lip sync and offset."""
        return str(self.service.compare_video(portrait, video_a, video_b, audio, transcript, to_page(progress)))

    @staticmethod
    def last_result(video: Any, generate_portrait: Any, compare_portrait: Any):
        """"Use my last result": the Generate tab's video, and its portrait when none is set here."""
        path = as_path(video)
        if not path:
            gr.Warning("There is no result yet: make a video on the Generate tab first.")
            return gr.update(), gr.update()
        portrait = gr.update() if as_path(compare_portrait) or not as_path(generate_portrait) else generate_portrait
        return path, portrait


def explain_unreadable_images(image: gr.Image) -> gr.Image:
    """Make an upload that is not a picture end in a sentence instead of a bare "Error".

    gr.Image opens the file before the handler runs; a subclass would do the same, but
    gradio writes a .pyi stub next to any module that defines a component class.
    """
    original = image.preprocess

    def preprocess(payload):
        try:
            with warnings.catch_warnings():
                # Gradio only reads the header here; the pipeline enforces its own pixel limit.
                warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
                return original(payload)
        except gr.Error:
            raise
        except PIL.Image.DecompressionBombError:  # the sentence the pipeline (and the CLI) gives
            name = getattr(payload, "orig_name", None) or Path(getattr(payload, "path", "") or "photo").name
            raise gr.Error(too_large_message(name), title="Can't read the photo", print_exception=False) from None
        except Exception:
            raise gr.Error("That file is not a picture PortraitTalk can read; please upload a JPEG, PNG "
                           "or WebP photo.", title="Can't read the photo", print_exception=False) from None

    image.preprocess = preprocess  # type: ignore[method-assign]  # on this one component only
    return image


def explain_bad_settings(controls: dict[str, Any]) -> None:
    """Make every value an API client may send for a setting either work or end in one sentence.

    Gradio checks a control's value before any handler runs: the output size as text ("1024",
    as the API schema advertises it) would be refused, and a value that is no number at all
    ("abc", NaN, Infinity) would end in Gradio's generic error. Its own sentences about a
    bound ("Value 500 is greater than maximum value 30.") stay.
    """
    for name, control in controls.items():
        if name in OFFERED and not isinstance(control, gr.Textbox):
            _explain_values(control, name)


def _explain_values(control: Any, name: str) -> None:
    original = control.preprocess
    choices = [value for _, value in getattr(control, "choices", None) or []]

    def refuse(payload: Any) -> gr.Error:
        return gr.Error(bad_setting(name, payload, choices), title="Can't make this video", print_exception=False)

    def preprocess(payload):
        if choices and payload is not None:
            match = next((c for c in choices if str(c) == str(payload).strip()), None)
            if match is None:
                raise refuse(payload)
            payload = match
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception:
            raise refuse(payload) from None

    control.preprocess = preprocess


def restore_cached_plots(plot: gr.LinePlot) -> gr.LinePlot:
    """Make cached example outputs draw the identity plot.

    Gradio stores a cached plot as the JSON of its plot data but hands the text back
    unparsed, and the example event skips postprocessing, so the browser would get a
    string instead of the table. Parsing it restores exactly what postprocess produced.
    """
    plot.read_from_flag = (  # type: ignore[method-assign]  # on this one component only
        lambda payload: json.loads(payload) if isinstance(payload, str) and payload else payload)
    return plot
