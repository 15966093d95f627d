"""PortraitTalk Space: a portrait photo + a speech recording → a talking-face video.

What a Hugging Face Space runs (``app_file: app.py``) and what ``python app.py`` starts
locally (on 127.0.0.1 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise).
This file is the page, its layout and its events; the work behind it is a
:class:`~portraittalk.server.service.RenderService`, built once in :func:`main`.

API (see README): ``/render`` takes the portrait, the speech (a recording, or ``text`` to say
with a ``voice``), the ``face`` that talks and the settings, and returns the video and the run
report (per-frame identity scores, timings, warnings). ``/compare`` takes a portrait and two
videos (optional speech and transcript) and returns a metrics table, both videos' identity and
lip-sync curves and a one-line verdict; ``/compare_video`` the two side by side in one MP4.
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
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

# Keep native start-up chatter (mediapipe/TFLite) out of the Space's log.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Cached example outputs live outside the repository so a local run leaves the checkout clean.
os.environ.setdefault("GRADIO_EXAMPLES_CACHE",
                      str(Path(tempfile.gettempdir()) / "portraittalk-examples-cache"))

import gradio as gr
import PIL.Image

from portraittalk.errors import PortraitTalkError
from portraittalk.evaluation import COMPARE_HEADERS
from portraittalk.io.image import too_large_message
from portraittalk.pipeline import PortraitTalkPipeline, RenderResult, VideoChunk
from portraittalk.runtime import limit_malloc_arenas
from portraittalk.server import texts
from portraittalk.server.compare import COMPARE_NAMES
from portraittalk.server.results import StoredResult
from portraittalk.server.service import (
    RenderService,
    as_path,
    bad_setting,
    diffusion_availability,
    example_rows,
    request_settings,
)
from portraittalk.server.settings import ServerSettings
from portraittalk.server.streaming import HANDOVER_JS, PLAYER_CSS, PLAYER_HTML, PLAYER_JS, StreamState
from portraittalk.server.uploads import DELETE_CACHE, start_upload_trimmer
from portraittalk.settings import RenderSettings
from portraittalk.voices import MAX_CHARS, VOICES

log = logging.getLogger("portraittalk.app")

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
EXAMPLES = HERE / "examples"
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
        """The player's subtitle track: the render's WebVTT download (the page endpoint's values stay plain)."""
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

    image.preprocess = preprocess
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
    plot.read_from_flag = lambda payload: json.loads(payload) if isinstance(payload, str) and payload else payload
    return plot


def slider(name: str, label: str, **options: Any) -> gr.Slider:
    """A slider for one setting, with the range, step and default RenderSettings offers."""
    offer = OFFERED[name]
    return gr.Slider(offer.lo, offer.hi, offer.default, step=offer.step, label=label, **options)


def build_demo(service: RenderService) -> gr.Blocks:
    on = Handlers(service)
    concurrency = service.settings.concurrency
    diffusion_ok, diffusion_reason = diffusion_availability()
    engines = [("Warp — fast, runs on CPU", "warp")]
    if diffusion_ok:
        engines.append(("Diffusion — slower, needs a GPU", "diffusion"))
    engine_note = ("The diffusion engine is available." if diffusion_ok
                   else f"Diffusion engine unavailable: {diffusion_reason}.")

    with gr.Blocks(title="PortraitTalk — make a portrait talk", delete_cache=DELETE_CACHE) as demo:
        gr.HTML(texts.HEADER.format(logo=ASSETS / "logo.svg"))
        with gr.Tabs(elem_id="pt-tabs"):
            with gr.Tab("Generate", id="generate", elem_id="pt-tab-generate"):
                gr.Markdown(texts.STEPS)
                with gr.Row(equal_height=False):
                    # ---------------- inputs ----------------
                    with gr.Column(scale=1, min_width=320):
                        portrait = gr.Image(label="1 · Portrait photo", type="filepath", image_mode=None,
                                            placeholder="Drop a photo here or click to upload: one face, looking at "
                                                        "the camera", sources=["upload", "webcam", "clipboard"],
                                            height=260, elem_id="pt-portrait")
                        explain_unreadable_images(portrait)
                        with gr.Accordion("More photos of the same person (optional)", open=False):
                            references = gr.File(label="Extra portraits: every video frame is compared with all of them",
                                                 file_count="multiple", file_types=["image"], elem_id="pt-references")
                        limit = service.settings.max_audio_seconds
                        with gr.Tabs(elem_id="pt-speech-tabs"):
                            with gr.Tab("2 · Speech: record or upload", elem_id="pt-tab-recording"):
                                audio = gr.Audio(label=f"Speech (up to {limit:g} s)", sources=["upload", "microphone"],
                                                 type="filepath", elem_id="pt-audio")
                            with gr.Tab("… or type it", elem_id="pt-tab-type"):
                                say = gr.Textbox("", label=texts.say_label(limit), max_lines=8, max_length=MAX_CHARS,
                                                 placeholder="Hello! I never said this, but now I do.", elem_id="pt-say")
                                voice = gr.Dropdown([(v.label, v.name) for v in VOICES.values()],
                                                    value=OFFERED["voice"].default, label="Voice", elem_id="pt-voice",
                                                    info=texts.VOICE_INFO)
                        with gr.Row():
                            transcript = gr.Textbox("", label="What is said", max_lines=6, elem_id="pt-transcript",
                                                    placeholder="Filled in from the recording; correct it if needed")
                            language = gr.Dropdown([(texts.language_name(c), c) for c in OFFERED["language"].choices],
                                                   value=OFFERED["language"].default, label="Language",
                                                   allow_custom_value=True, elem_id="pt-language")
                        heard = gr.Markdown(elem_id="pt-heard")
                        prompt = gr.Textbox("", label="Style prompt (optional)", max_lines=3, elem_id="pt-prompt",
                                            placeholder="e.g. calm, slight smile, nodding")
                        go = gr.Button("3 · Generate video", variant="primary", size="lg", elem_id="pt-generate")
                        examples_slot = gr.Column()  # filled after the outputs exist
                        # The render's inputs by name: RenderSettings' field names are the API's parameter names.
                        controls = {"transcript": transcript, "prompt": prompt, "references": references}
                        with gr.Accordion("Guidance: lip sync, head movement, expression, blinking", open=False):
                            for name, (label, info) in texts.GUIDANCE_SLIDERS.items():
                                controls[name] = slider(name, label, info=info)
                        with gr.Accordion("Advanced", open=False):
                            with gr.Row():
                                controls["seed"] = gr.Number(OFFERED["seed"].default, label="Seed", precision=0,
                                                             minimum=OFFERED["seed"].lo,
                                                             info="Same seed + same inputs = same video.")
                                controls["fps"] = slider("fps", "Frames per second")
                            controls["max_size"] = gr.Dropdown(
                                list(OFFERED["max_size"].choices), value=OFFERED["max_size"].default,
                                label="Output size (long side, px)", info="Bigger looks sharper but takes longer.")
                            controls["engine"] = gr.Radio(engines, value=OFFERED["engine"].default, label="Engine",
                                                          interactive=len(engines) > 1)
                            gr.Markdown(engine_note, elem_id="pt-engine-note")
                            with gr.Row():
                                controls["diffusion_steps"] = slider(
                                    "diffusion_steps", "Diffusion steps", interactive=diffusion_ok,
                                    info="Diffusion engine only: more = finer detail, slower.")
                                controls["guidance_scale"] = slider(
                                    "guidance_scale", "Guidance scale", interactive=diffusion_ok,
                                    info="Diffusion engine only: how strictly it follows the audio, identity and prompt.")
                        explain_bad_settings(controls)
                    # ---------------- outputs ----------------
                    with gr.Column(scale=1, min_width=320):
                        preview = gr.Image(label="Faces found: click the one that should talk", visible=False,
                                           interactive=False, height=260, elem_id="pt-preview")
                        face = gr.Number(OFFERED["face"].default, label="Face that talks", precision=0,
                                         minimum=OFFERED["face"].lo, elem_id="pt-face", info=texts.FACE_INFO)
                        video = gr.Video(label="Talking video", interactive=False, buttons=["download"], height=420,
                                         elem_id="pt-video")
                        # The video while it is being made: it plays as the pieces arrive.
                        stream = gr.HTML(None, html_template=PLAYER_HTML, css_template=PLAYER_CSS, js_on_load=PLAYER_JS,
                                         visible=False, elem_id="pt-stream")
                        plot = gr.LinePlot(x="frame", y="similarity", color="series",
                                           color_map={texts.PLOT_VIDEO: "#4f46e5", texts.PLOT_LINE: "#dc2626"},
                                           x_title="Video frame", y_title="Identity match", color_title="Line",
                                           y_lim=[0, 1], label="Identity, frame by frame",
                                           caption="1 = identical to your portrait; above the red line = the same person",
                                           elem_id="pt-plot")
                        restore_cached_plots(plot)
                        summary = gr.Markdown(elem_id="pt-summary")
                        notes = gr.Markdown(elem_id="pt-notes")
                        downloads = gr.File(label="Downloads: identity scores (CSV, JSON), motion track (JSON), "
                                                  "subtitles (WebVTT, SRT) and typed speech (WAV)",
                                            file_count="multiple", interactive=False, elem_id="pt-downloads")
                        burn = gr.Button("Burn the captions into the video (for sharing)", size="sm",
                                         elem_id="pt-burn")
                        captioned = gr.File(label="Video with captions", visible=False, elem_id="pt-captioned")
                        burn.click(on.burn_captions, inputs=[video, downloads], outputs=captioned,
                                   api_visibility="private", concurrency_id="render", concurrency_limit=concurrency)
                        with gr.Accordion("What do these numbers mean?", open=False):
                            gr.Markdown(texts.ABOUT_SCORES)

                with examples_slot:
                    rows, labels = example_rows(EXAMPLES)
                    if rows:
                        gr.Examples(rows, inputs=[portrait, audio, transcript],
                                    outputs=[video, plot, summary, downloads, notes], fn=on.generate_example,
                                    cache_examples=True, cache_mode=service.settings.example_cache_mode,
                                    example_labels=labels, label="Examples — click one to see its finished video",
                                    elem_id="pt-examples")

            with gr.Tab("Compare", id="compare", elem_id="pt-tab-compare"):
                gr.Markdown(texts.COMPARE_INTRO)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=260):
                        compare_portrait = gr.Image(label="Portrait", type="filepath", image_mode=None, height=220,
                                                    sources=["upload", "clipboard"], elem_id="pt-compare-portrait")
                        explain_unreadable_images(compare_portrait)
                        with gr.Accordion("Speech and words (optional)", open=False):
                            compare_audio = gr.Audio(label="Speech (default: each video's own sound)",
                                                     sources=["upload"], type="filepath", elem_id="pt-compare-audio")
                            compare_transcript = gr.Textbox("", label="What is said (English, optional)",
                                                            max_lines=6, elem_id="pt-compare-transcript")
                    players: list[gr.Video] = []  # side by side, A then B
                    for name in COMPARE_NAMES:
                        with gr.Column(scale=2, min_width=260):
                            player = gr.Video(label=f"Video {name} (up to {service.settings.max_audio_seconds:g} s)",
                                              sources=["upload"], height=300,
                                              elem_id=f"pt-compare-{name.lower()}")
                            use_last = gr.Button(f"Use my last result as {name}", size="sm",
                                                 elem_id=f"pt-use-last-{name.lower()}")
                            use_last.click(on.last_result, inputs=[video, portrait, compare_portrait],
                                           outputs=[player, compare_portrait], queue=False, api_visibility="private")
                            players.append(player)
                with gr.Row():
                    play_both = gr.Button("▶ Play both from the start (sound from A)", elem_id="pt-play-both")
                    compare_go = gr.Button("Compare", variant="primary", elem_id="pt-compare")
                verdict = gr.Markdown(elem_id="pt-verdict")
                side_video = gr.Video(label="A and B side by side: one video to share", interactive=False,
                                      buttons=["download"], height=360, elem_id="pt-compare-side")
                with gr.Row(equal_height=False):
                    compare_table = gr.Dataframe(headers=list(COMPARE_HEADERS), label="Metrics",
                                                 interactive=False, wrap=True, max_height=720, scale=3,
                                                 column_widths=["46%", "20%", "20%", "14%"], elem_id="pt-compare-table")
                    compare_plot = gr.LinePlot(x="time_s", y="value", color="series", scale=2, color_map=COMPARE_COLORS,
                                               x_title="Time (s)", y_title="Score", color_title="Curve",
                                               y_lim=[-1, 1], label="Identity and lip sync over time",
                                               caption="Identity: 1 = identical to the portrait. "
                                                       "Lip sync: 1 = the mouth follows the sound closely.",
                                               elem_id="pt-compare-plot")
                with gr.Accordion("What do these numbers mean?", open=False):
                    gr.Markdown(texts.ABOUT_COMPARE)
                play_both.click(None, js=texts.PLAY_BOTH_JS, api_visibility="private")
                compare_inputs = [compare_portrait, *players, compare_audio, compare_transcript]
                compare_go.click(on.compare_videos, inputs=compare_inputs,
                                 outputs=[compare_table, compare_plot, verdict], api_name="compare",
                                 show_progress_on=[compare_table, compare_plot],
                                 concurrency_id="render", concurrency_limit=concurrency
                                 ).success(on.compare_video, inputs=compare_inputs, outputs=[side_video],
                                           api_name="compare_video", concurrency_id="render",
                                           concurrency_limit=concurrency)

        # Typed speech and the face that talks come last, after the settings the API has always had.
        controls.update(text=say, voice=voice, face=face, language=language)
        for event, fn, inputs in ((portrait.change, on.show_faces, [portrait]),
                                  (face.input, on.show_faces, [portrait, face]), (preview.select, on.pick_face, [portrait])):
            event(fn, inputs=inputs, outputs=[preview, face], api_visibility="private", concurrency_id="prepare",
                  concurrency_limit=4)
        for recorded in (audio.upload, audio.stop_recording):  # not on examples: they bring their own words
            recorded(on.heard, inputs=audio, outputs=[transcript, language, heard], api_visibility="private",
                     show_progress_on=[transcript], concurrency_id="prepare", concurrency_limit=4)
        result_outputs = [preview, video, plot, summary, downloads, notes, stream]
        # Two steps: a quick check that shows the chosen face (and any input error) at once,
        # then the render, whose progress bar runs on the video panel.
        # The previous result goes away first, so a failed check never leaves it on screen.
        go.click(on.clear_result, outputs=result_outputs, queue=False, show_progress="hidden",
                 api_visibility="private"
                 ).then(on.prepare, inputs=[portrait, audio, references, say, voice, face],
                        outputs=result_outputs, api_name="prepare", api_visibility="undocumented",
                        show_progress="hidden", concurrency_id="prepare", concurrency_limit=4
                 ).success(on.generate, inputs=[portrait, audio], inputs_kwargs=controls, outputs=result_outputs,
                           show_progress_on=[plot], api_name="generate", api_visibility="undocumented",
                           scroll_to_output=True, concurrency_id="render", concurrency_limit=concurrency
                 ).then(on.show_finished, outputs=[video, stream], queue=False, show_progress="hidden",
                        api_visibility="private"
                 ).then(on.show_subtitles, inputs=downloads, outputs=video, queue=False, show_progress="hidden",
                        api_visibility="private"
                 ).then(None, js=HANDOVER_JS, api_visibility="private")

        # The documented API: the same inputs, the video and the full report out.
        api_video = gr.Video(label="video", visible=False)
        api_report = gr.JSON(label="report", visible=False)
        api_trigger = gr.Button(visible=False)
        api_trigger.click(on.render_api, inputs=[portrait, audio], inputs_kwargs=controls,
                          outputs=[api_video, api_report], api_name="render",
                          concurrency_id="render", concurrency_limit=concurrency)

    demo.queue(max_size=service.settings.queue_size, default_concurrency_limit=concurrency)
    return demo


THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate",
                       # System fonts: the page makes no requests to font hosts.
                       font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


def launch(demo: gr.Blocks, settings: ServerSettings, **overrides: Any):
    """Start the server where the settings say (loopback by default), never shared."""
    options: dict[str, Any] = dict(
        server_name=settings.server_name, server_port=settings.server_port,
        share=False, theme=THEME, css_paths=[ASSETS / "app.css"], favicon_path=ASSETS / "logo.svg",
        max_file_size=settings.max_upload,
        allowed_paths=[str(ASSETS), str(settings.result_cache)], footer_links=["api", "gradio"],
    )
    options.update(overrides)
    return demo.launch(**options)


def main() -> None:
    limit_malloc_arenas()  # first, before the server starts its request threads
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    settings = ServerSettings.from_env()
    service = RenderService(PortraitTalkPipeline(), settings)
    t0 = time.perf_counter()
    service.pipeline.warm_up()
    log.info("models loaded in %.1f s", time.perf_counter() - t0)
    start_upload_trimmer(Path(gr.utils.get_upload_folder()), int(settings.upload_cache_mb * 2**20))
    launch(build_demo(service), settings)


if __name__ == "__main__":
    main()
