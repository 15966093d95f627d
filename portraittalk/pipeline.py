"""The one pipeline every front end calls (CLI, app, benchmark).

inputs → analysis (face, audio) → motion track → renderer → encoder → identity scores.

Models (face mesh, dlib descriptor, speech recogniser) load once per process in
:class:`PortraitTalkPipeline` and are reused across requests. Frames stream from the
renderer to the encoder and the identity scorer one at a time, so memory stays flat in the
clip length.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .contracts import FaceAnalysis, IdentityScores, MotionTrack, Portrait, SpeechAnalysis
from .errors import InputError
from .settings import MAX_AUDIO_SECONDS, RenderSettings

# Progress callback: (stage name, fraction of the whole job done 0…1, human message).
ProgressFn = Callable[[str, float, str], None]

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
                from .analysis.face import FaceAnalyzer
                self._face = FaceAnalyzer()
                self._face.warm_up()
            return self._face

    @property
    def identity_scorer(self):
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
        from .analysis import speech
        _ = self.face_analyzer, self.identity_scorer
        speech._phone_decoder(), speech._align_decoder()
        if text_model:
            from .motion.prompt import get_text_encoder
            get_text_encoder()

    # ------------------------------------------------------------------------------------
    def analyze_portrait(self, image: str | Path | bytes, max_size: int) -> tuple[Portrait, FaceAnalysis]:
        from .io.image import load_portrait
        portrait = load_portrait(image, max_size=max_size)
        return portrait, self.face_analyzer.analyze(portrait.rgb)

    def render(self, image: str | Path | bytes, audio: str | Path, out_path: str | Path,
               settings: RenderSettings | None = None, progress: ProgressFn | None = None,
               references: list[str | Path | bytes] | None = None) -> RenderResult:
        from .io.audio import load_audio, muxable_audio
        from .io.video import VideoEncoder
        from .motion.track import apply_prompt, build_motion_track
        from .motion.prompt import parse_prompt
        from .engines.warp.renderer import WarpRenderer
        from .analysis.speech import NO_SPEECH_WARNING, analyze_speech

        s = (settings or RenderSettings()).validated()
        out_path = check_output_path(out_path)  # before any work: a bad path fails at once
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
        with timed("prompt"):
            controls = parse_prompt(s.prompt, s.prompt_strength) if (s.prompt or "").strip() else None
        with timed("motion"):
            k = s.expression_intensity
            expression = {c: float(np.clip(controls.expression.get(c, 0.0) * k, -1, 1))
                          for c in ("smile", "brow_raise")} if controls else None
            motion = build_motion_track(
                speech, n_frames, s.fps, seed=s.seed, audio_strength=s.audio_strength,
                head_motion=float(np.clip(s.head_motion * (controls.head_motion_scale if controls else 1.0), 0, 2)),
                blink_rate=float(np.clip(s.blink_rate * (controls.blink_rate_scale if controls else 1.0), 0, 5)),
                expression=expression)
            apply_prompt(motion, controls, s.seed, s.expression_intensity, s.identity_strength)
        if controls is not None and controls.ignored:
            warnings.append("Part of the prompt was not used: " + "; ".join(
                f'"{i.phrase}" ({i.reason})' for i in controls.ignored) + ".")

        look = None
        if controls is not None and controls.style:
            from .engines.warp.looks import StyleFilter
            look = StyleFilter(controls.style, controls.style_strength,
                               face_size=max(face.box[2] - face.box[0], face.box[3] - face.box[1]))
        # Painterly looks are too slow per frame: the styled portrait is warped instead, and
        # only the repainted mouth is restyled per frame.
        base = look.apply(portrait.rgb) if look is not None and not look.per_pixel else portrait.rgb
        renderer = WarpRenderer(base, face)
        frames = self._frames(s, renderer, motion, portrait, face, clip, look)
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
        h, w = portrait.rgb.shape[:2]
        t0 = time.perf_counter()
        try:
            # NaN/inf samples are silenced in a temporary copy rather than left to become clicks.
            with muxable_audio(clip) as sound, \
                    VideoEncoder(out_path, (w, h), s.fps, audio_path=sound, frames=n_frames) as enc, \
                    _opencv_threads(1 if worker else None):
                for i, (rgb, box) in enumerate(frames):
                    enc.write(rgb)
                    if worker:
                        jobs.put((rgb, box))
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
        if speech.speech_ratio < 0.02 and not any("no speech" in w for w in warnings):
            warnings.append(NO_SPEECH_WARNING)
        report_progress("done", 1.0, "Done")
        release_freed_memory()
        report = build_report(out_path, s, portrait, face, clip, speech, motion, identity, timings, warnings)
        report["engine"] = s.engine
        report["prompt"] = controls.to_dict() if controls is not None else None
        if controls is not None:
            report["prompt"]["summary"] = controls.summary()
        return RenderResult(out_path, identity, motion, report, warnings)

    # ------------------------------------------------------------------------------------
    def _frames(self, s: RenderSettings, renderer, motion: MotionTrack, portrait: Portrait, face: FaceAnalysis,
                clip, look):
        """Full frames and face boxes, one at a time, from the chosen engine."""
        n = motion.n_frames
        if s.engine == "warp":
            for i in range(n):
                f = renderer.render(motion.frame(i))
                rgb = f.rgb
                if look is not None:
                    rgb = look.apply(rgb) if look.per_pixel else look.restyle_mouth(rgb, f.landmarks)
                yield rgb, f.box
            return
        yield from self._diffusion_frames(s, renderer, motion, portrait, face, clip)

    def _diffusion_frames(self, s: RenderSettings, renderer, motion: MotionTrack, portrait: Portrait,
                          face: FaceAnalysis, clip):
        """The PortraitTalk model renders the face crop; it is pasted back into the full frame.

        The warp engine's rig still provides each frame's landmarks: they become the
        model's structure maps (the motion track drives the diffusion engine too).
        """
        from .engines.diffusion.data import crop_square, face_crop_box, to_crop_coords
        from .engines.diffusion.engine import DiffusionEngine
        from .engines.diffusion.loading import configured_weights
        from .engines.diffusion.structure import structure_map_from_landmarks

        if configured_weights(s.weights) is None:
            # No PortraitTalk weights: refine the warp engine's frames with public base weights.
            yield from self._refined_frames(s, renderer, motion, portrait, face)
            return
        engine = DiffusionEngine.from_config(s.weights, s.device)  # clear error when unavailable
        box = face_crop_box(face.landmarks[:, :2], 1.6)
        size = engine.resolution()
        reference = crop_square(portrait.rgb, box, size)
        maps, boxes = [], []
        for i in range(motion.n_frames):
            rig = renderer.rig.pose(motion.frame(i))
            lm_full = rig.landmarks + renderer.origin.astype(np.float32)
            maps.append(structure_map_from_landmarks(to_crop_coords(lm_full, box, size), size))
            lo, hi = np.floor(lm_full.min(0)).astype(int), np.ceil(lm_full.max(0)).astype(int)
            boxes.append((int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])))
        crops = engine.render([reference], clip.samples, s.fps, motion.n_frames, prompt=s.prompt,
                              structure_maps=np.stack(maps), audio_scale=s.audio_strength,
                              identity_scale=s.identity_strength, text_scale=s.prompt_strength,
                              steps=int(s.diffusion_steps), guidance=float(s.guidance_scale), seed=s.seed)
        for crop, fbox in zip(crops, boxes):
            yield paste_crop(portrait.rgb, crop, box), fbox


    def _refined_frames(self, s: RenderSettings, renderer, motion: MotionTrack, portrait: Portrait,
                        face: FaceAnalysis):
        """Refine mode: the warp engine's face crops through AnimateDiff video-to-video with an
        IP-Adapter (identity) and the prompt, at a strength set by the prompt strength.

        The warp frames are rendered twice (once for the crops, once to paste into): that is
        cheaper than keeping every full frame in memory.
        """
        from .engines.diffusion.data import crop_square, face_crop_box
        from .engines.diffusion.engine import DiffusionEngine

        engine = DiffusionEngine.for_refine(s.device)  # clear error without a GPU
        box = face_crop_box(face.landmarks[:, :2], 1.6)
        crops = np.stack([crop_square(renderer.render(motion.frame(i)).rgb, box, REFINE_CROP)
                          for i in range(motion.n_frames)])
        refined = engine.refine(crops, [crop_square(portrait.rgb, box, REFINE_CROP)], prompt=s.prompt,
                                strength=float(np.clip(0.35 * s.prompt_strength, 0.05, 0.8)),
                                steps=int(s.diffusion_steps), guidance=float(s.guidance_scale),
                                identity_scale=float(np.clip(0.6 * s.identity_strength, 0, 1.2)), seed=s.seed)
        for i in range(motion.n_frames):
            f = renderer.render(motion.frame(i))
            yield paste_crop(f.rgb, refined[i], box), f.box


REFINE_CROP = 512  # face-crop side for refine mode (Stable Diffusion 1.5's native size)


def paste_crop(frame: np.ndarray, crop: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Put a square face crop back where it came from, with a soft elliptical edge."""
    import cv2
    x0, y0, x1, y1 = box
    side = x1 - x0
    s = crop.shape[0] / side
    h, w = frame.shape[:2]
    inv = np.array([[1 / s, 0, x0], [0, 1 / s, y0]], np.float64)
    warped = cv2.warpAffine(crop, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - (x0 + x1) / 2) / (side * 0.46)) ** 2 + ((yy - (y0 + y1) / 2) / (side * 0.48)) ** 2)
    alpha = np.clip((1.0 - r) / 0.12, 0, 1)[..., None]
    return (frame * (1 - alpha) + warped * alpha + 0.5).astype(np.uint8)


# glibc's M_ARENA_MAX option for mallopt().
_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's per-thread allocation arenas for a long-running server.

    Every request thread otherwise gets an arena of its own that keeps its high-water mark,
    so a server's memory would ratchet up with each burst of visitors.
    """
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, count)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@contextlib.contextmanager
def _opencv_threads(count: int | None):
    """OpenCV's thread count inside the block (None: unchanged). With identity scoring in a
    thread beside it and ffmpeg encoding, the renderer's own worker threads only contend for
    the same cores (measured: 20.8 → 18.7 ms a frame on 2 cores)."""
    import cv2
    before = cv2.getNumThreads()
    if count is not None:
        cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def release_freed_memory() -> None:
    """Give memory freed by a finished render back to the system (glibc keeps it otherwise,
    so a long-running server would sit at its highest peak). Frames are freed by reference
    counting, so no garbage collection pass is needed (it would cost ~0.3 s)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def check_output_path(out_path: str | Path, example_name: str = "talk.mp4") -> Path:
    """A file can be written there, or one sentence says why not (nothing is overwritten but a file)."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise InputError(f"The output '{out_path}' is a folder; give a file name such as '{out_path / example_name}'.")
    parent = out_path.parent
    for p in (parent, *parent.parents):
        if p.exists() and not p.is_dir():
            raise InputError(f"The output folder '{parent}' cannot be created because '{p}' is a file.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"The output folder '{parent}' cannot be created ({err.strerror}); choose another place.") from None
    return out_path


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
    from .analysis.face import estimate_yaw_degrees
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
