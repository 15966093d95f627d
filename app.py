"""PortraitTalk Space: a portrait photo + a speech recording → a talking-face video.

What a Hugging Face Space runs (``app_file: app.py``) and what ``python app.py`` starts
locally (on 127.0.0.1 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise).
This file is the page's layout and the wiring of its events to the handlers in
:mod:`portraittalk.server.page`; the work behind them is a
:class:`~portraittalk.server.service.RenderService`, built once in :func:`main`.

API (see README): ``/render`` takes the portrait, the speech (a recording, or ``text`` to say
with a ``voice``), the ``face`` that talks and the settings, and returns the video and the run
report (per-frame identity scores, timings, warnings). ``/compare`` takes a portrait and two
videos (optional speech and transcript) and returns a metrics table, both videos' identity and
lip-sync curves and a one-line verdict; ``/compare_video`` the two side by side in one MP4.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# Keep native start-up chatter (mediapipe/TFLite) out of the Space's log.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Cached example outputs live outside the repository so a local run leaves the checkout clean.
os.environ.setdefault("GRADIO_EXAMPLES_CACHE",
                      str(Path(tempfile.gettempdir()) / "portraittalk-examples-cache"))

import gradio as gr

from portraittalk.evaluation import COMPARE_HEADERS
from portraittalk.pipeline import PortraitTalkPipeline
from portraittalk.runtime import limit_malloc_arenas
from portraittalk.server import texts
from portraittalk.server.compare import COMPARE_NAMES
from portraittalk.server.page import (
    COMPARE_COLORS,
    OFFERED,
    Handlers,
    explain_bad_settings,
    explain_unreadable_images,
    restore_cached_plots,
)
from portraittalk.server.service import RenderService, diffusion_availability, example_rows
from portraittalk.server.settings import ServerSettings
from portraittalk.server.streaming import HANDOVER_JS, PLAYER_CSS, PLAYER_HTML, PLAYER_JS
from portraittalk.server.uploads import DELETE_CACHE, start_upload_trimmer
from portraittalk.voices import MAX_CHARS, VOICES

log = logging.getLogger("portraittalk.app")

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
EXAMPLES = HERE / "examples"


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
