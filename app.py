"""PortraitTalk Space: a portrait photo + a speech recording → a talking-face video.

This is what a Hugging Face Space runs (``app_file: app.py``) and what ``python app.py``
starts locally (on 127.0.0.1 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say otherwise).

One :class:`~portraittalk.pipeline.PortraitTalkPipeline` is created per process and shared
by every request; renders run one at a time (the queue's concurrency limit) because each
one already uses every core. Finished results are kept in a small on-disk cache keyed by a
hash of the inputs' bytes and the settings, so asking for the same video again is instant.

API (see README): ``/render`` takes the portrait, the speech and the settings and returns
the video and the run report (per-frame identity scores, timings, warnings).
``/compare`` takes a portrait and two videos (optional speech and transcript) and returns
a metrics table, both videos' identity and lip-sync curves and a one-line verdict.
"""

from __future__ import annotations

# On ZeroGPU hardware `spaces` must be imported before torch touches CUDA.
try:
    import spaces
except ImportError:  # plain local install without the Spaces helper
    spaces = None

import csv
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

# Keep native start-up chatter (mediapipe/TFLite) out of the Space's log.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Cached example outputs live outside the repository so a local run leaves the checkout clean.
os.environ.setdefault("GRADIO_EXAMPLES_CACHE",
                      str(Path(tempfile.gettempdir()) / "portraittalk-examples-cache"))

import cv2
import gradio as gr
import numpy as np
import pandas as pd
import PIL.Image

from portraittalk import __version__ as PORTRAITTALK_VERSION
from portraittalk.contracts import SAME_PERSON_DISTANCE
from portraittalk.errors import PortraitTalkError, InputError
from portraittalk.evaluation import COMPARE_HEADERS
from portraittalk.pipeline import PortraitTalkPipeline, RenderResult
from portraittalk.runtime import limit_malloc_arenas
from portraittalk.settings import RenderSettings

log = logging.getLogger("portraittalk.app")

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
EXAMPLES = HERE / "examples"


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# Limits of a shared Space: a render takes a few seconds of CPU per second of speech.
MAX_AUDIO_SECONDS = _env_number("PORTRAITTALK_MAX_AUDIO_SECONDS", 60)
RENDER_CONCURRENCY = int(_env_number("PORTRAITTALK_CONCURRENCY", 1))
QUEUE_SIZE = int(_env_number("PORTRAITTALK_QUEUE_SIZE", 16))
RESULT_CACHE_DIR = Path(os.environ.get("PORTRAITTALK_RESULT_CACHE",
                                       Path(tempfile.gettempdir()) / "portraittalk-results"))
RESULT_CACHE_ENTRIES = int(_env_number("PORTRAITTALK_RESULT_CACHE_ENTRIES", 24))
# Gradio's own copies of uploads and outputs: swept every 30 min, removed after 1 h; and, so a
# burst of uploads cannot fill the disk in between, trimmed oldest-first past a size every minute.
DELETE_CACHE = (1800, 3600)
UPLOAD_CACHE_MB = _env_number("PORTRAITTALK_UPLOAD_CACHE_MB", 2048)
UPLOAD_SWEEP_S, UPLOAD_IN_USE_S = 60.0, 600.0
DEFAULT_SIZE = 512  # long side of the video; the CPU engine renders this faster than real time on 2 cores
SIZE_CHOICES = [256, 384, 512, 640, 768, 1024]
MAX_REFERENCES = 4
DIFFUSION_STEPS_DEFAULT, GUIDANCE_DEFAULT = 25, 3.5
# How many warnings pop up as toasts; all of them are listed in the notes box.
MAX_TOASTS = 3

UNEXPECTED_ERROR = ("Something went wrong on our side while making the video. Please try again; "
                    "if it keeps happening, try another photo or recording.")


# ----------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------
def diffusion_availability() -> tuple[bool, str]:
    """(available, reason) for the diffusion engine; never raises."""
    try:
        from portraittalk.engines.diffusion.engine import diffusion_status
    except Exception:  # the module is optional: missing or broken means "not installed"
        return False, "the diffusion engine is not installed"
    try:
        available, reason = diffusion_status()
        return bool(available), str(reason)
    except Exception as err:
        log.warning("diffusion_status() failed: %s", err)
        return False, "the diffusion engine could not be checked on this machine"


def _gpu(duration: int) -> Callable[[Callable], Callable]:
    """`@spaces.GPU` on a Space (a no-op elsewhere); identity when `spaces` is absent."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


PIPELINE = PortraitTalkPipeline()


def _render_reporting_progress(image: str, audio: str, out: Path, settings: RenderSettings,
                               references: list[str]) -> RenderResult:
    # A fresh gr.Progress reports to the request being served; made here rather than passed
    # in, because on ZeroGPU this runs in a worker process and its arguments are pickled.
    progress = gr.Progress()
    return PIPELINE.render(image, audio, out, settings,
                           lambda stage, frac, msg: progress(frac, desc=msg), references=references)


# Only the diffusion engine needs the accelerator; the warp engine and face analysis stay on CPU.
_render_on_cpu = _render_reporting_progress
_render_on_gpu = _gpu(duration=240)(_render_reporting_progress)


# ----------------------------------------------------------------------------------------
# Result cache
# ----------------------------------------------------------------------------------------
@dataclass
class StoredResult:
    """A finished render in its own folder: the video, the scores and the motion track."""

    folder: Path
    report: dict[str, Any]
    from_cache: bool = False

    VIDEO, SCORES_JSON, SCORES_CSV, MOTION_JSON = "portraittalk.mp4", "scores.json", "scores.csv", "motion.json"

    @property
    def video(self) -> Path:
        return self.folder / self.VIDEO

    @property
    def downloads(self) -> list[str]:
        return [str(self.folder / n) for n in (self.SCORES_CSV, self.SCORES_JSON, self.MOTION_JSON)]


class ResultCache:
    """Finished renders keyed by a hash of (portrait bytes, reference bytes, audio bytes, file
    names, settings). Each entry is a folder; the oldest entries are removed past a count."""

    FORMAT = 1  # bump when what a folder holds changes

    def __init__(self, root: Path, max_entries: int) -> None:
        self.root = Path(root)
        self.max_entries = max(1, max_entries)
        self._lock = threading.Lock()

    @staticmethod
    def key(portrait: str, audio: str, references: Sequence[str], settings: RenderSettings) -> str:
        h = hashlib.sha256()
        h.update(f"portraittalk {PORTRAITTALK_VERSION} cache {ResultCache.FORMAT}\n".encode())
        for role, path in [("portrait", portrait), ("audio", audio)] + [("reference", r) for r in references]:
            # File names are part of the key: the report names the inputs, and one visitor's
            # file name must never appear in another visitor's download.
            h.update(f"{role}:{Path(path).name}:".encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        h.update(json.dumps(asdict(settings), sort_keys=True, default=str).encode())
        return h.hexdigest()[:32]

    def get(self, key: str) -> StoredResult | None:
        folder = self.root / key
        try:
            report = json.loads((folder / StoredResult.SCORES_JSON).read_text())
        except (OSError, ValueError):
            return None
        if not (folder / StoredResult.VIDEO).is_file():
            return None
        os.utime(folder)  # most recently used
        return StoredResult(folder, report, from_cache=True)

    def new_work_dir(self) -> Path:
        """A private folder for one request (same file system as the cache, for a cheap rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="work-", dir=self.root))

    def store(self, key: str, result: RenderResult, work: Path) -> StoredResult:
        """Write the downloads next to the video in ``work`` and publish it under ``key``."""
        report = dict(result.report)
        # Server paths stay on the server: the download names the video by file name only,
        # under "file" (gradio_client takes any {"path": …} in a JSON output for a file to fetch).
        video = {k: v for k, v in report.get("video", {}).items() if k != "path"}
        report["video"] = {**video, "file": StoredResult.VIDEO}
        (work / StoredResult.SCORES_JSON).write_text(json.dumps(report, indent=1))
        write_scores_csv(report, work / StoredResult.SCORES_CSV)
        result.write_motion(work / StoredResult.MOTION_JSON)
        folder = self.root / key
        with self._lock:
            if folder.exists():  # an identical request finished first; keep that one
                shutil.rmtree(work, ignore_errors=True)
            else:
                os.replace(work, folder)
            self._evict()
        return StoredResult(folder, report)

    def _evict(self) -> None:
        entries = sorted((p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("work-")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[self.max_entries:]:
            shutil.rmtree(old, ignore_errors=True)


RESULTS = ResultCache(RESULT_CACHE_DIR, RESULT_CACHE_ENTRIES)


def trim_folder(root: Path, max_bytes: int, keep_newer_than_s: float) -> int:
    """Delete the oldest files under ``root`` until it holds at most ``max_bytes``; files younger
    than ``keep_newer_than_s`` may belong to a request in progress and are kept. Returns the
    number of bytes freed."""
    files = []
    for path in Path(root).rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                files.append((st.st_mtime, st.st_size, path))
        except OSError:  # removed meanwhile
            continue
    total = sum(size for _, size, _ in files)
    freed, now = 0, time.time()
    for mtime, size, path in sorted(files):
        if total - freed <= max_bytes or now - mtime < keep_newer_than_s:
            break
        try:
            path.unlink()
            freed += size
        except OSError:
            continue
    return freed


def start_upload_trimmer(root: Path, max_bytes: int, every_s: float = UPLOAD_SWEEP_S) -> threading.Event:
    """Trim ``root`` every ``every_s`` seconds in a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            freed = trim_folder(root, max_bytes, UPLOAD_IN_USE_S)
            if freed:
                log.info("upload cache over %d MB: removed %.1f MB of the oldest files", max_bytes >> 20, freed / 2**20)

    threading.Thread(target=loop, name="upload-trimmer", daemon=True).start()
    return stop


def write_scores_csv(report: dict[str, Any], path: Path) -> Path:
    """Per-frame identity scores as CSV (empty table with a header when scoring was off)."""
    frames = (report.get("identity") or {}).get("frames", [])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "time_s", "cosine", "distance", "similarity", "same_person", "face_found"])
        for fr in frames:
            w.writerow([fr["frame"], fr["time_s"], fr["cosine"], fr["distance"],
                        round(1.0 - fr["distance"], 5), fr["distance"] <= SAME_PERSON_DISTANCE,
                        fr["face_found"]])
    return path


# ----------------------------------------------------------------------------------------
# Turning a request into a result
# ----------------------------------------------------------------------------------------
def build_settings(transcript: str | None, prompt: str | None, audio_strength: float,
                   identity_strength: float, prompt_strength: float, head_motion: float,
                   expression_intensity: float, blink_rate: float, seed: float | None,
                   fps: float | None, max_size: float | None, engine: str | None,
                   diffusion_steps: float | None = None, guidance_scale: float | None = None) -> RenderSettings:
    """RenderSettings from the page's controls (empty fields fall back to the defaults)."""
    defaults = RenderSettings()

    def num(value, fallback):
        return fallback if value is None or value == "" else float(value)

    values: dict[str, Any] = dict(
        transcript=(transcript or "").strip() or None,
        prompt=(prompt or "").strip(),
        audio_strength=num(audio_strength, 1.0), identity_strength=num(identity_strength, 1.0),
        prompt_strength=num(prompt_strength, 1.0), head_motion=num(head_motion, 1.0),
        expression_intensity=num(expression_intensity, 1.0), blink_rate=num(blink_rate, 1.0),
        seed=int(num(seed, defaults.seed)), fps=num(fps, defaults.fps),
        max_size=int(num(max_size, DEFAULT_SIZE)), engine=(engine or "warp"),
    )
    # The diffusion engine's own knobs, passed on under whichever name RenderSettings uses.
    known = {f.name for f in fields(RenderSettings)}
    for names, value in ((("diffusion_steps", "num_inference_steps", "steps"), diffusion_steps),
                         (("guidance_scale", "guidance"), guidance_scale)):
        name = next((n for n in names if n in known), None)
        if name is not None and value is not None:
            values[name] = type(getattr(defaults, name))(value)
    try:
        return RenderSettings(**values).validated()
    except (TypeError, ValueError) as err:
        raise InputError(f"A setting has a value that is not a number ({err}); please reset it.") from None


def _as_path(value: Any) -> str | None:
    """A file path from what gradio hands over (a path, a FileData-like dict, or None)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = value.get("path") or value.get("name")
    return str(value) if value else None


def check_inputs(portrait: Any, audio: Any, references: Any) -> tuple[str, str, list[str]]:
    """Paths of the inputs, or an InputError saying which one is missing."""
    portrait_path, audio_path = _as_path(portrait), _as_path(audio)
    if not portrait_path:
        raise InputError("Please add a portrait photo first (step 1).")
    if not audio_path:
        raise InputError("Please upload or record some speech first (step 2).")
    refs = [p for p in (_as_path(r) for r in (references or [])) if p]
    if len(refs) > MAX_REFERENCES:
        raise InputError(f"Please add at most {MAX_REFERENCES} extra photos of the person.")
    return portrait_path, audio_path, refs


def face_preview(portrait_path: str, max_size: int) -> np.ndarray:
    """The portrait with the face that will talk outlined (InputError when there is none)."""
    portrait, face = PIPELINE.analyze_portrait(portrait_path, max_size)
    image = portrait.rgb.copy()
    x0, y0, x1, y1 = face.box
    thickness = max(2, round(max(image.shape[:2]) / 200))
    cv2.rectangle(image, (x0, y0), (x1, y1), (79, 70, 229), thickness)
    return image


def check_audio(audio_path: str) -> None:
    """InputError for a recording that is unreadable, too short or over the Space's limit."""
    from portraittalk.io.audio import load_audio

    load_audio(audio_path, max_duration_s=MAX_AUDIO_SECONDS)


def run_request(portrait: Any, audio: Any, references: Any, settings: RenderSettings,
                progress: Callable[[float, str], None]) -> StoredResult:
    """The finished render for these inputs: from the cache, or rendered now.

    Everything a user can get wrong raises InputError before the slow part starts.
    """
    portrait_path, audio_path, refs = check_inputs(portrait, audio, references)
    key = ResultCache.key(portrait_path, audio_path, refs, settings)
    cached = RESULTS.get(key)
    if cached is not None:
        return cached
    progress(0.0, "Checking the recording")
    check_audio(audio_path)
    work = RESULTS.new_work_dir()
    try:
        render = _render_on_gpu if settings.engine == "diffusion" else _render_on_cpu
        result = render(portrait_path, audio_path, work / StoredResult.VIDEO, settings, refs)
        progress(1.0, "Saving the scores")
        return RESULTS.store(key, result, work)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def friendly_errors(fn: Callable | None = None, *, title: str = "Can't make this video",
                    unexpected: str = UNEXPECTED_ERROR) -> Callable:
    """Every failure reaches the page as one sentence in a gr.Error, never a traceback.

    Use bare (``@friendly_errors``) or with the toast's title and the sentence for
    unexpected failures (``@friendly_errors(title=…, unexpected=…)``).
    """
    if fn is None:
        return functools.partial(friendly_errors, title=title, unexpected=unexpected)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except PortraitTalkError as err:
            raise gr.Error(str(err), title=title, print_exception=False) from None
        except Exception:
            log.exception("request failed")  # the details go to the server log only
            raise gr.Error(unexpected, title="Something went wrong", print_exception=False) from None
    return wrapper


# ----------------------------------------------------------------------------------------
# Presenting a result
# ----------------------------------------------------------------------------------------
PLOT_VIDEO, PLOT_LINE = "This video", "Same-person line"


def identity_plot_data(report: dict[str, Any]) -> pd.DataFrame:
    """Long-format table for the plot: similarity = 1 − descriptor distance per frame, plus
    the same-person threshold drawn as a second line across the clip."""
    frames = (report.get("identity") or {}).get("frames", [])
    if not frames:
        return pd.DataFrame({"frame": [], "similarity": [], "series": []})
    xs = [f["frame"] for f in frames]
    rows = [{"frame": f["frame"], "similarity": round(1.0 - f["distance"], 4), "series": PLOT_VIDEO}
            for f in frames]
    limit = round(1.0 - SAME_PERSON_DISTANCE, 4)
    rows += [{"frame": min(xs), "similarity": limit, "series": PLOT_LINE},
             {"frame": max(xs), "similarity": limit, "series": PLOT_LINE}]
    return pd.DataFrame(rows)


def summary_markdown(stored: StoredResult) -> str:
    """The numbers a visitor needs, in words."""
    report = stored.report
    video = report.get("video", {})
    duration = float(video.get("duration_s") or 0.0)
    total = float((report.get("timings_s") or {}).get("total", 0.0))
    rtf = report.get("realtime_factor")
    identity = report.get("identity") or {}
    summ = identity.get("summary") or {}
    lines: list[str] = []
    if summ.get("frames"):
        n, ok = summ["frames"], summ.get("frames_within_threshold", 0)
        verdict = "Same person throughout." if ok == n else "Some frames drift from your portrait."
        lines.append(f"**{verdict}** The face matches your portrait in **{ok} of {n} frames** "
                     f"(face distance ≤ {SAME_PERSON_DISTANCE}).")
        lines += ["", "| Result | Value |", "|---|---|",
                  f"| Average identity match (1 = identical) | {1 - summ['mean_distance']:.2f} |",
                  f"| Lowest identity match | {1 - summ['max_distance']:.2f} |",
                  f"| Frames below the same-person line | {summ.get('frames_over_threshold', 0)} |",
                  f"| Face descriptor cosine, mean / min | {summ['mean_cosine']:.3f} / {summ['min_cosine']:.3f} |"]
    else:
        lines += ["Identity scores were not computed for this video.", "", "| Result | Value |", "|---|---|"]
    fps = video.get("fps")
    fps_text = f"{fps:g}" if isinstance(fps, (int, float)) else "?"
    lines.append(f"| Video | {duration:.1f} s, {video.get('frames', '?')} frames at {fps_text} fps, "
                 f"{'×'.join(str(v) for v in video.get('size', []))} px |")
    if rtf is not None:
        lines.append(f"| Render time | {total:.1f} s ({rtf:.2f} s of work per second of speech) |")
    if stored.from_cache:
        lines += ["", "_Same inputs and settings as an earlier request: shown instantly from the cache "
                      "(times above are from the first render)._"]
    return "\n".join(lines)


def notes_markdown(report: dict[str, Any], settings_prompt: str) -> str:
    """Warnings, how the speech was read, and what the prompt was understood as."""
    parts: list[str] = []
    speech = (report.get("input") or {}).get("speech") or {}
    method = {"forced-alignment": "lined up with your transcript",
              "phone-decoder": "recognised from the sound (adding the words improves lip sync)",
              "acoustic": "followed from the loudness and pitch only (speech not recognised as English)"}
    if speech.get("method"):
        parts.append(f"**Lip sync:** mouth shapes {method.get(speech['method'], speech['method'])}.")
    understood = report.get("prompt")
    if understood:
        if isinstance(understood, dict):
            text = understood.get("summary") or understood.get("understood") or json.dumps(understood)
        else:
            text = str(understood)
        parts.append(f"**Prompt understood as:** {text}")
    elif settings_prompt:
        parts.append("**Prompt:** not used by this engine yet; the sliders above shape the motion.")
    for w in report.get("warnings") or []:
        parts.append(f"**Note:** {w}")
    return "\n\n".join(parts)


def _toast_warnings(report: dict[str, Any]) -> None:
    for w in (report.get("warnings") or [])[:MAX_TOASTS]:
        gr.Warning(w)


# ----------------------------------------------------------------------------------------
# Event handlers
# ----------------------------------------------------------------------------------------
# Order of the settings controls, shared by the page, the API and the examples.
SETTING_NAMES = ("audio_strength", "identity_strength", "prompt_strength", "head_motion",
                 "expression_intensity", "blink_rate", "seed", "fps", "max_size", "engine",
                 "diffusion_steps", "guidance_scale")


def clear_result():
    return gr.update(value=None, visible=False), None, None, "", None, ""


@friendly_errors
def prepare(portrait, audio, references, max_size):
    """First half of a page request (fast): check the files and show which face will talk.
    Clears the previous result; the render itself follows as a second event."""
    portrait_path, audio_path, _ = check_inputs(portrait, audio, references)
    check_audio(audio_path)
    preview = face_preview(portrait_path, int(max_size or DEFAULT_SIZE))
    return gr.update(value=preview, visible=True), None, None, "", None, ""


@friendly_errors
def generate(portrait, audio, transcript, prompt, references, audio_strength, identity_strength,
             prompt_strength, head_motion, expression_intensity, blink_rate, seed, fps, max_size,
             engine, diffusion_steps, guidance_scale, progress=gr.Progress()):
    """Page handler: the video, the identity plot, the numbers, the downloads and the notes."""
    settings = build_settings(transcript, prompt, audio_strength, identity_strength, prompt_strength,
                              head_motion, expression_intensity, blink_rate, seed, fps, max_size,
                              engine, diffusion_steps, guidance_scale)
    stored = run_request(portrait, audio, references, settings, lambda frac, msg: progress(frac, desc=msg))
    _toast_warnings(stored.report)
    return (gr.update(visible=False), str(stored.video), identity_plot_data(stored.report),
            summary_markdown(stored), stored.downloads, notes_markdown(stored.report, settings.prompt))


@friendly_errors
def render_api(portrait, audio, transcript="", prompt="", references=None, audio_strength=1.0,
               identity_strength=1.0, prompt_strength=1.0, head_motion=1.0, expression_intensity=1.0,
               blink_rate=1.0, seed=0, fps=25, max_size=DEFAULT_SIZE, engine="warp",
               diffusion_steps=DIFFUSION_STEPS_DEFAULT, guidance_scale=GUIDANCE_DEFAULT,
               progress=gr.Progress()):
    """Render a talking-face video. Returns (video, report): the report holds the per-frame
    identity scores (cosine, descriptor distance, same-person threshold 0.6), timings and warnings."""
    settings = build_settings(transcript, prompt, audio_strength, identity_strength, prompt_strength,
                              head_motion, expression_intensity, blink_rate, seed, fps, max_size,
                              engine, diffusion_steps, guidance_scale)
    stored = run_request(portrait, audio, references, settings, lambda frac, msg: progress(frac, desc=msg))
    return str(stored.video), stored.report


@friendly_errors
def generate_example(portrait, audio, transcript):
    """Examples gallery: default settings, final outputs only (these get cached)."""
    settings = build_settings(transcript, "", 1, 1, 1, 1, 1, 1, 0, 25, DEFAULT_SIZE, "warp")
    stored = run_request(portrait, audio, None, settings, lambda frac, msg: None)
    return (str(stored.video), identity_plot_data(stored.report), summary_markdown(stored),
            stored.downloads, notes_markdown(stored.report, ""))


# ----------------------------------------------------------------------------------------
# Compare: two videos of the same person measured against the portrait, side by side
# ----------------------------------------------------------------------------------------
COMPARE_NAMES = ("A", "B")
# Plot legend: short series names (they must fit beside a half-width plot), one hue per
# video, identity dark and lip sync light.
COMPARE_CURVES = {"identity (cosine)": "identity", "lip sync (local r)": "lip sync"}
COMPARE_COLORS = {"A identity": "#4338ca", "A lip sync": "#a5b4fc",
                  "B identity": "#be185d", "B lip sync": "#f9a8d4"}
UNEXPECTED_COMPARE_ERROR = ("Something went wrong on our side while measuring the videos. Please try again; "
                            "if it keeps happening, try other videos.")
# Differences smaller than these are called a draw in the verdict: identity as the mean
# descriptor cosine, lip sync as the audio-visual correlation's confidence.
IDENTITY_DRAW = 0.003
SYNC_DRAW = 0.05
EVALUATION_CACHE_ENTRIES = 8


def _file_digest(path: str | None) -> str:
    h = hashlib.sha256()
    if path:
        h.update(f"{Path(path).name}:".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class EvaluationCache:
    """The last few video evaluations in memory, keyed by the bytes of the video, the
    portrait and the audio and by the transcript: comparing a video with a second, third …
    other one measures it once."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: dict[str, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(video: str, portrait: str, audio: str | None, transcript: str | None) -> str:
        parts = [_file_digest(video), _file_digest(portrait), _file_digest(audio), transcript or ""]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    def get(self, key: str):
        with self._lock:
            found = self._entries.pop(key, None)
            if found is not None:
                self._entries[key] = found  # most recently used goes last
            return found

    def put(self, key: str, evaluation) -> None:
        with self._lock:
            self._entries[key] = evaluation
            while len(self._entries) > self.max_entries:
                self._entries.pop(next(iter(self._entries)))


EVALUATIONS = EvaluationCache(EVALUATION_CACHE_ENTRIES)


@functools.cache
def video_evaluator():
    """One evaluator for the process, sharing the pipeline's face mesh and identity network."""
    from portraittalk.evaluation import VideoEvaluator

    return VideoEvaluator(PIPELINE.face_analyzer, PIPELINE.identity_scorer)


def check_compare_inputs(portrait: Any, video_a: Any, video_b: Any) -> tuple[str, str, str]:
    """Paths of the portrait and both videos; InputError for a missing one or a file that is
    not a video (checked for both before the slow part, so a bad video B fails at once)."""
    from portraittalk.io.video import probe_video

    portrait_path = _as_path(portrait)
    if not portrait_path:
        raise InputError("Please add the portrait photo the videos should show, so both can be measured against it.")
    paths = []
    for name, value in zip(COMPARE_NAMES, (video_a, video_b)):
        path = _as_path(value)
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


def evaluate_cached(video: str, portrait: str, audio: str | None, transcript: str | None,
                    progress: Callable[[float, str], None]):
    """The evaluation of one video against the portrait (measured once per set of inputs)."""
    from portraittalk.evaluation import evaluate_video

    key = EvaluationCache.key(video, portrait, audio, transcript)
    found = EVALUATIONS.get(key)
    if found is None:
        found = evaluate_video(video, portrait, audio, transcript, evaluator=video_evaluator(),
                               progress=lambda stage, frac, msg: progress(frac, msg))
        EVALUATIONS.put(key, found)
    return found


def compare_verdict(summary_a: dict[str, Any], summary_b: dict[str, Any]) -> str:
    """One plain sentence: which video keeps the identity better and which is better in sync."""

    def leader(key: str, draw: float) -> str | None:
        """The better video's name; None for a draw or when neither could be measured."""
        va, vb = summary_a.get(key), summary_b.get(key)
        if va is None or vb is None:  # one side not measurable: the measurable one leads
            return None if va is None and vb is None else COMPARE_NAMES[0 if vb is None else 1]
        return None if abs(va - vb) < draw else COMPARE_NAMES[0 if va > vb else 1]

    identity = leader("identity_mean_cosine", IDENTITY_DRAW)
    sync = leader("sync_confidence", SYNC_DRAW)
    if identity and identity == sync:
        return f"**{identity} is better on both counts: it keeps the identity better and is better in sync.**"
    identity_text = (f"{identity} keeps the identity better" if identity
                     else "Both keep the identity about equally well")
    if summary_a.get("sync_confidence") is None and summary_b.get("sync_confidence") is None:
        sync_text = "lip sync could not be measured in either (no moving mouth or no sound)"
    else:
        sync_text = f"{sync} is better in sync" if sync else "both are about equally in sync"
    return f"**{identity_text}; {sync_text}.**"


@friendly_errors(title="Can't compare these videos", unexpected=UNEXPECTED_COMPARE_ERROR)
def compare_videos(portrait, video_a, video_b, audio=None, transcript="", progress=gr.Progress()):
    """Measure two videos against the portrait they should show. Returns (table, plot,
    verdict): one row per metric with both values and the better video, both videos'
    identity and lip-sync curves over time, and a one-line verdict."""
    from portraittalk.evaluation import compare

    portrait_path, path_a, path_b = check_compare_inputs(portrait, video_a, video_b)
    audio_path = _as_path(audio)
    if audio_path:
        check_audio(audio_path)
    words = (transcript or "").strip() or None
    evaluations = []
    for i, (name, path) in enumerate(zip(COMPARE_NAMES, (path_a, path_b))):
        def report(frac: float, msg: str, i=i, name=name) -> None:
            progress((i + frac) / 2, desc=f"Video {name}: {msg}")
        evaluations.append(evaluate_cached(path, portrait_path, audio_path, words, report))
    rows, curves = compare(*evaluations, names=COMPARE_NAMES)
    verdict = compare_verdict(evaluations[0].summary(), evaluations[1].summary())
    notes = [f"_Video {name}: {note}_" for name, ev in zip(COMPARE_NAMES, evaluations) for note in ev.notes]
    curves = curves.assign(series=curves["video"] + " " + curves["metric"].map(COMPARE_CURVES))
    return (pd.DataFrame(rows, columns=list(COMPARE_HEADERS)), curves[["time_s", "value", "series"]],
            "\n\n".join([verdict] + notes))


def last_result(video: Any, generate_portrait: Any, compare_portrait: Any):
    """"Use my last result": the Generate tab's video, and its portrait when none is set here."""
    path = _as_path(video)
    if not path:
        gr.Warning("There is no result yet: make a video on the Generate tab first.")
        return gr.update(), gr.update()
    portrait = gr.update() if _as_path(compare_portrait) or not _as_path(generate_portrait) else generate_portrait
    return path, portrait


# Starts both players at 0 together (A with its sound, B muted so the two tracks don't clash).
PLAY_BOTH_JS = """
() => {
  const players = ['#pt-compare-a video', '#pt-compare-b video'].map(s => document.querySelector(s));
  if (players.some(v => !v)) return;
  players.forEach(v => { v.pause(); v.currentTime = 0; });
  players[1].muted = true;
  players.forEach(v => v.play().catch(() => {}));
}
"""

COMPARE_INTRO = ("<span class='pt-steps'>Measure two videos of the same person — two runs with different "
                 "settings, or a video from any other tool — against the portrait they should show.</span>")

ABOUT_COMPARE = """
**Identity (cosine):** each frame's face descriptor against the portrait's (dlib's
face-recognition network), 1 = identical. **Lip sync (local r):** how closely the mouth's
opening follows the loudness of the speech over the surrounding two seconds, 1 = perfectly.
**Lip sync confidence** and **offset** come from lining up the mouth with the sound over the
whole clip; an offset near 0 ms is best. The phone checks look at the moments the speech has
a P/B/M (lips should close) or an open vowel (mouth should open). **ADFD** rolls identity,
sync and smoothness into one 0–100 score. Without an audio file the videos' own sound is used.
"""


# ----------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------
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
        except Exception:
            raise gr.Error("That file is not a picture PortraitTalk can read; please upload a JPEG, PNG "
                           "or WebP photo.", title="Can't read the photo", print_exception=False) from None

    image.preprocess = preprocess
    return image


def restore_cached_plots(plot: gr.LinePlot) -> gr.LinePlot:
    """Make cached example outputs draw the identity plot.

    Gradio stores a cached plot as the JSON of its plot data but hands the text back
    unparsed, and the example event skips postprocessing, so the browser would get a
    string instead of the table. Parsing it restores exactly what postprocess produced.
    """
    plot.read_from_flag = lambda payload: json.loads(payload) if isinstance(payload, str) and payload else payload
    return plot


def example_rows() -> tuple[list[list[Any]], list[str]]:
    """Each bundled portrait paired with a bundled speech clip (and its transcript)."""
    portraits = sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    clips = sorted(EXAMPLES.glob("*.wav"), key=lambda p: p.stat().st_size)  # shortest first
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


def example_cache_mode() -> str | None:
    """Eager on a Space (examples render once at start-up, every visitor then sees results
    instantly); lazy locally (rendered on first click). GRADIO_CACHE_MODE overrides."""
    mode = os.environ.get("GRADIO_CACHE_MODE", "").lower()
    if mode in ("eager", "lazy"):
        return mode
    return "eager" if os.environ.get("SPACE_ID") else "lazy"


HEADER = """
<div id="pt-header">
  <img src="gradio_api/file={logo}" alt="">
  <div>
    <h1>PortraitTalk</h1>
    <p>Turn one photo of a face and a speech recording into a video of that person saying it —
    with a check, frame by frame, that the face still looks like the same person.</p>
  </div>
</div>
"""

STEPS = ("<span class='pt-steps'>**1.** Add a portrait photo · **2.** Upload or record speech · "
         "**3.** Press **Generate**. No photo at hand? Click an example below the button.</span>")

ABOUT_SCORES = """
**Identity plot:** every point is one frame of the video. A face-recognition network (dlib's)
turns each frame and your portrait into a face descriptor and measures the distance between
them; the plot shows 1 − that distance, so 1 means identical. Frames above the red line
(distance {d}, the network's usual same-person threshold) show the same person.

**Average / lowest identity match:** the same measure over the whole video and at its worst
frame. **Face descriptor cosine:** the angle-based similarity of the same descriptors
(1 = identical), for comparison with other tools.

**Render time:** how long the video took to make; "seconds of work per second of speech"
below 1 means faster than real time. Extra photos of the same person make the reference
more reliable: the descriptor of the person is averaged over all of them.
""".format(d=SAME_PERSON_DISTANCE)


def build_demo() -> gr.Blocks:
    diffusion_ok, diffusion_reason = diffusion_availability()
    engines = [("Warp — fast, runs on CPU", "warp")]
    if diffusion_ok:
        engines.append(("Diffusion — slower, needs a GPU", "diffusion"))
    engine_note = ("The diffusion engine is available." if diffusion_ok
                   else f"Diffusion engine unavailable: {diffusion_reason}.")

    with gr.Blocks(title="PortraitTalk — make a portrait talk", delete_cache=DELETE_CACHE) as demo:
        gr.HTML(HEADER.format(logo=ASSETS / "logo.svg"))
        with gr.Tabs(elem_id="pt-tabs"):
            with gr.Tab("Generate", id="generate", elem_id="pt-tab-generate"):
                gr.Markdown(STEPS)
                with gr.Row(equal_height=False):
                    # ---------------- inputs ----------------
                    with gr.Column(scale=1, min_width=320):
                        portrait = gr.Image(label="1 · Portrait photo", type="filepath", image_mode=None,
                                            placeholder="Drop a photo here or click to upload: "
                                                        "one face, looking at the camera",
                                            sources=["upload", "webcam", "clipboard"], height=260,
                                            elem_id="pt-portrait")
                        explain_unreadable_images(portrait)
                        with gr.Accordion("More photos of the same person (optional)", open=False):
                            references = gr.File(label="Extra portraits: every video frame is compared with all of them",
                                                 file_count="multiple", file_types=["image"], elem_id="pt-references")
                        audio = gr.Audio(label=f"2 · Speech (up to {MAX_AUDIO_SECONDS:g} s)",
                                         sources=["upload", "microphone"], type="filepath", elem_id="pt-audio")
                        with gr.Row():
                            transcript = gr.Textbox("", label="What is said (optional)", max_lines=6,
                                                    elem_id="pt-transcript",
                                                    placeholder="The words, for better lip sync (English)")
                            prompt = gr.Textbox("", label="Style prompt (optional)", max_lines=3, elem_id="pt-prompt",
                                                placeholder="e.g. calm, slight smile, nodding")
                        go = gr.Button("3 · Generate video", variant="primary", size="lg", elem_id="pt-generate")
                        examples_slot = gr.Column()  # filled after the outputs exist
                        with gr.Accordion("Guidance: lip sync, head movement, expression, blinking", open=False):
                            audio_strength = gr.Slider(0, 2, 1, step=0.05, label="Lip-sync strength",
                                                       info="How strongly the mouth follows the speech. 0 = mouth still, 2 = exaggerated.")
                            identity_strength = gr.Slider(0, 2, 1, step=0.05, label="Identity strength",
                                                          info="How closely the face sticks to your photo. Higher = fewer changes to the face.")
                            prompt_strength = gr.Slider(0, 2, 1, step=0.05, label="Prompt strength",
                                                        info="How much the style prompt matters. 0 = ignore the prompt.")
                            head_motion = gr.Slider(0, 2, 1, step=0.05, label="Head movement",
                                                    info="0 = still head, 1 = natural nods and turns, 2 = lively.")
                            expression = gr.Slider(0, 2, 1, step=0.05, label="Expression intensity",
                                                   info="Eyebrows and smile. 0 = neutral face, 2 = very expressive.")
                            blink_rate = gr.Slider(0, 2, 1, step=0.05, label="Blinking",
                                                   info="0 = never blinks, 1 = natural, 2 = twice as often.")
                        with gr.Accordion("Advanced", open=False):
                            with gr.Row():
                                seed = gr.Number(0, label="Seed", precision=0, minimum=0,
                                                 info="Same seed + same inputs = same video.")
                                fps = gr.Slider(10, 30, 25, step=1, label="Frames per second")
                            max_size = gr.Dropdown(SIZE_CHOICES, value=DEFAULT_SIZE, label="Output size (long side, px)",
                                                   info="Bigger looks sharper but takes longer.")
                            engine = gr.Radio(engines, value="warp", label="Engine", interactive=len(engines) > 1)
                            gr.Markdown(engine_note, elem_id="pt-engine-note")
                            with gr.Row():
                                steps = gr.Slider(4, 50, DIFFUSION_STEPS_DEFAULT, step=1, label="Diffusion steps",
                                                  info="Diffusion engine only: more = finer detail, slower.",
                                                  interactive=diffusion_ok)
                                guidance = gr.Slider(1, 10, GUIDANCE_DEFAULT, step=0.5, label="Guidance scale",
                                                     info="Diffusion engine only: how strictly it follows the audio, identity and prompt.",
                                                     interactive=diffusion_ok)
                    # ---------------- outputs ----------------
                    with gr.Column(scale=1, min_width=320):
                        preview = gr.Image(label="Face found — this face will talk", visible=False,
                                           interactive=False, height=260, elem_id="pt-preview")
                        video = gr.Video(label="Talking video", interactive=False, buttons=["download"], height=420,
                                         elem_id="pt-video")
                        plot = gr.LinePlot(x="frame", y="similarity", color="series",
                                           color_map={PLOT_VIDEO: "#4f46e5", PLOT_LINE: "#dc2626"},
                                           x_title="Video frame", y_title="Identity match", color_title="Line",
                                           y_lim=[0, 1], label="Identity, frame by frame",
                                           caption="1 = identical to your portrait; above the red line = the same person",
                                           elem_id="pt-plot")
                        restore_cached_plots(plot)
                        summary = gr.Markdown(elem_id="pt-summary")
                        notes = gr.Markdown(elem_id="pt-notes")
                        downloads = gr.File(label="Downloads: identity scores (CSV, JSON) and motion track (JSON)",
                                            file_count="multiple", interactive=False, elem_id="pt-downloads")
                        with gr.Accordion("What do these numbers mean?", open=False):
                            gr.Markdown(ABOUT_SCORES)

                with examples_slot:
                    rows, labels = example_rows()
                    if rows:
                        gr.Examples(rows, inputs=[portrait, audio, transcript],
                                    outputs=[video, plot, summary, downloads, notes], fn=generate_example,
                                    cache_examples=True, cache_mode=example_cache_mode(), example_labels=labels,
                                    label="Examples — click one to see its finished video", elem_id="pt-examples")

            with gr.Tab("Compare", id="compare", elem_id="pt-tab-compare"):
                gr.Markdown(COMPARE_INTRO)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=260):
                        compare_portrait = gr.Image(label="Portrait", type="filepath",
                                                    image_mode=None, sources=["upload", "clipboard"],
                                                    height=220, elem_id="pt-compare-portrait")
                        explain_unreadable_images(compare_portrait)
                        with gr.Accordion("Speech and words (optional)", open=False):
                            compare_audio = gr.Audio(label="Speech (default: each video's own sound)",
                                                     sources=["upload"], type="filepath",
                                                     elem_id="pt-compare-audio")
                            compare_transcript = gr.Textbox("", label="What is said (English, optional)",
                                                            max_lines=6, elem_id="pt-compare-transcript")
                    players: list[gr.Video] = []  # side by side, A then B
                    for name in COMPARE_NAMES:
                        with gr.Column(scale=2, min_width=260):
                            player = gr.Video(label=f"Video {name}", sources=["upload"], height=300,
                                              elem_id=f"pt-compare-{name.lower()}")
                            use_last = gr.Button(f"Use my last result as {name}", size="sm",
                                                 elem_id=f"pt-use-last-{name.lower()}")
                            use_last.click(last_result, inputs=[video, portrait, compare_portrait],
                                           outputs=[player, compare_portrait], queue=False,
                                           api_visibility="private")
                            players.append(player)
                with gr.Row():
                    play_both = gr.Button("▶ Play both from the start (sound from A)", elem_id="pt-play-both")
                    compare_go = gr.Button("Compare", variant="primary", elem_id="pt-compare")
                verdict = gr.Markdown(elem_id="pt-verdict")
                with gr.Row(equal_height=False):
                    compare_table = gr.Dataframe(headers=list(COMPARE_HEADERS), label="Metrics",
                                                 interactive=False, wrap=True, max_height=720, scale=3,
                                                 column_widths=["46%", "20%", "20%", "14%"],
                                                 elem_id="pt-compare-table")
                    compare_plot = gr.LinePlot(x="time_s", y="value", color="series", scale=2,
                                               color_map=COMPARE_COLORS,
                                               x_title="Time (s)", y_title="Score", color_title="Curve",
                                               y_lim=[-1, 1], label="Identity and lip sync over time",
                                               caption="Identity: 1 = identical to the portrait. "
                                                       "Lip sync: 1 = the mouth follows the sound closely.",
                                               elem_id="pt-compare-plot")
                with gr.Accordion("What do these numbers mean?", open=False):
                    gr.Markdown(ABOUT_COMPARE)
                play_both.click(None, js=PLAY_BOTH_JS, api_visibility="private")
                compare_go.click(compare_videos,
                                 inputs=[compare_portrait, *players, compare_audio,
                                         compare_transcript],
                                 outputs=[compare_table, compare_plot, verdict], api_name="compare",
                                 show_progress_on=[compare_table, compare_plot],
                                 concurrency_id="render", concurrency_limit=RENDER_CONCURRENCY)

        inputs = [portrait, audio, transcript, prompt, references, audio_strength, identity_strength,
                  prompt_strength, head_motion, expression, blink_rate, seed, fps, max_size, engine,
                  steps, guidance]
        result_outputs = [preview, video, plot, summary, downloads, notes]
        # Two steps: a quick check that shows the chosen face (and any input error) at once,
        # then the render, whose progress bar runs on the video panel.
        # The previous result goes away first, so a failed check never leaves it on screen.
        go.click(clear_result, outputs=result_outputs, queue=False, show_progress="hidden",
                 api_visibility="private"
                 ).then(prepare, inputs=[portrait, audio, references, max_size], outputs=result_outputs,
                        api_name="prepare", api_visibility="undocumented", show_progress="hidden",
                        concurrency_id="prepare", concurrency_limit=4
                 ).success(generate, inputs=inputs, outputs=result_outputs, show_progress_on=[video],
                           api_name="generate", api_visibility="undocumented", scroll_to_output=True,
                           concurrency_id="render", concurrency_limit=RENDER_CONCURRENCY)

        # The documented API: the same inputs, the video and the full report out.
        api_video = gr.Video(label="video", visible=False)
        api_report = gr.JSON(label="report", visible=False)
        api_trigger = gr.Button(visible=False)
        api_trigger.click(render_api, inputs=inputs, outputs=[api_video, api_report], api_name="render",
                          concurrency_id="render", concurrency_limit=RENDER_CONCURRENCY)

    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=RENDER_CONCURRENCY)
    return demo


THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate",
                       # System fonts: the page makes no requests to font hosts.
                       font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


MAX_UPLOAD = os.environ.get("PORTRAITTALK_MAX_UPLOAD", "50mb")  # per file; larger uploads are refused
_UPLOAD_TRIMMER: threading.Event | None = None


def launch(demo: gr.Blocks, **overrides: Any):
    """Start the server: loopback unless GRADIO_SERVER_NAME says otherwise, never shared."""
    options: dict[str, Any] = dict(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        share=False, theme=THEME, css_paths=[ASSETS / "app.css"], favicon_path=ASSETS / "logo.svg",
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(ASSETS), str(RESULT_CACHE_DIR)], footer_links=["api", "gradio"],
    )
    options.update(overrides)
    global _UPLOAD_TRIMMER
    if _UPLOAD_TRIMMER is None:  # one per process, however many demos it launches
        _UPLOAD_TRIMMER = start_upload_trimmer(Path(gr.utils.get_upload_folder()), int(UPLOAD_CACHE_MB * 2**20))
    return demo.launch(**options)


def main() -> None:
    limit_malloc_arenas()  # first, before the server starts its request threads
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    t0 = time.perf_counter()
    PIPELINE.warm_up()
    log.info("models loaded in %.1f s", time.perf_counter() - t0)
    launch(build_demo())


if __name__ == "__main__":
    main()
