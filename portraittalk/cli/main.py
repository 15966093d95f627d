"""Command line: `python -m portraittalk render …` and `python -m portraittalk bench`.

Bad input ends with one sentence on stderr and exit code 2; a bug ends with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import PortraitTalkError

EXIT_BAD_INPUT = 2


def _quiet_native_logs() -> None:
    """Keep stderr for this program's own messages.

    mediapipe/TFLite write chatter straight to file descriptor 2 from native threads, at
    moments no Python code can bracket. So fd 2 goes to /dev/null and Python's ``sys.stderr``
    (errors, warnings, progress, tracebacks) writes to a copy of the real stderr instead.
    PORTRAITTALK_NATIVE_LOGS=1 keeps the native messages (for debugging).
    """
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("PORTRAITTALK_NATIVE_LOGS") == "1":
        return
    try:
        sys.stderr.flush()
        own = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError):  # no usable fd 2: nothing to separate
        return
    sys.stderr = os.fdopen(own, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m portraittalk",
                                     description="Portrait + speech → talking-face video with identity scores.")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="make a talking-face MP4 from a portrait and a speech recording")
    r.add_argument("--image", required=True, help="portrait photo (JPEG, PNG, WebP, BMP, TIFF)")
    r.add_argument("--audio", required=True, help="speech recording (WAV, MP3, M4A, OGG, FLAC …)")
    r.add_argument("--out", required=True, help="output video path (.mp4)")
    r.add_argument("--scores", help="write per-frame identity scores and the run report here (JSON)")
    r.add_argument("--motion", help="write the motion track here (JSON)")
    r.add_argument("--transcript", help="what is said (text, or @file.txt); improves lip sync for English")
    r.add_argument("--reference", action="append", default=[],
                   help="extra portrait of the same person (repeatable); used for identity scoring")
    r.add_argument("--fps", type=float, default=25.0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-size", type=int, default=1024, help="cap on the video's long side in pixels")
    r.add_argument("--prompt", default="", help='what the face should do or look like, e.g. "smiling, calm, sepia"')
    r.add_argument("--audio-strength", type=float, default=1.0, help="0 = mouth still … 2 = exaggerated")
    r.add_argument("--identity-strength", type=float, default=1.0,
                   help="above 1 keeps expression and pose closer to the portrait (identity-adapter scale on diffusion)")
    r.add_argument("--prompt-strength", type=float, default=1.0, help="how strongly the prompt acts, 0 … 2")
    r.add_argument("--expression-intensity", type=float, default=1.0, help="scales prompt expressions, 0 … 2")
    r.add_argument("--head-motion", type=float, default=1.0, help="0 = still head … 2 = lively")
    r.add_argument("--blink-rate", type=float, default=1.0, help="0 = no blinks … 2 = twice as often")
    r.add_argument("--engine", default="warp", choices=["warp", "diffusion"])
    r.add_argument("--weights", default=None,
                   help="diffusion engine weights: a local folder or a Hub id (default: $PORTRAITTALK_WEIGHTS)")
    r.add_argument("--device", default=None, help="diffusion engine device (default: the GPU)")
    r.add_argument("--steps", type=int, default=25, help="diffusion engine denoising steps")
    r.add_argument("--guidance", type=float, default=3.5, help="diffusion engine classifier-free guidance")
    r.add_argument("--no-identity", action="store_true", help="skip per-frame identity scoring")
    from .evaluate import add_evaluate_parser
    add_evaluate_parser(sub)
    b = sub.add_parser("bench", help="time every stage on the bundled examples and print a table")
    b.add_argument("--seconds", type=float, default=None, help="also time a clip of this length (looped audio)")
    b.add_argument("--out-dir", default=None, help="keep the rendered videos here")
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_native_logs()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            return _render(args)
        if args.command == "evaluate":
            from .evaluate import run_evaluate
            return run_evaluate(args)
        if args.command == "bench":
            from .bench import run_bench
            return run_bench(seconds=args.seconds, out_dir=args.out_dir)
    except PortraitTalkError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    return 1


def check_files(labelled_paths) -> None:
    """Every given (label, path) must be an existing file, or one sentence says which is not."""
    from ..errors import InputError
    for label, path in labelled_paths:
        if path is not None and not Path(path).is_file():
            raise InputError(f"The {label} file '{path}' does not exist; check the path.")


def read_text_arg(value: str | None) -> str | None:
    """A text option given inline, or as @file.txt (read as UTF-8, bad bytes replaced)."""
    from ..errors import InputError
    if not value or not value.startswith("@"):
        return value
    try:
        return Path(value[1:]).read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise InputError(f"The transcript file '{value[1:]}' cannot be read; check the path.") from None


def _render(args: argparse.Namespace) -> int:
    from ..io.paths import check_output_path
    from ..pipeline import PortraitTalkPipeline
    from ..settings import RenderSettings

    check_files((("portrait", args.image), ("audio", args.audio)))
    # Report files are checked before the render, so a bad path never ends in a traceback after it.
    for report, example_name in ((args.scores, "scores.json"), (args.motion, "motion.json")):
        if report:
            check_output_path(report, example_name)
    transcript = read_text_arg(args.transcript)
    settings = RenderSettings(
        fps=args.fps, seed=args.seed, max_size=args.max_size, transcript=transcript,
        prompt=args.prompt, audio_strength=args.audio_strength, identity_strength=args.identity_strength,
        prompt_strength=args.prompt_strength, expression_intensity=args.expression_intensity,
        head_motion=args.head_motion, blink_rate=args.blink_rate, engine=args.engine,
        score_identity=not args.no_identity, weights=args.weights, device=args.device,
        diffusion_steps=args.steps, guidance_scale=args.guidance)

    def progress(stage: str, frac: float, msg: str) -> None:
        if sys.stderr.isatty():
            print(f"\r{int(frac * 100):3d}% {msg:<40}", end="", file=sys.stderr, flush=True)

    result = PortraitTalkPipeline().render(args.image, args.audio, args.out, settings, progress,
                                           references=args.reference)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.scores:
        result.write_scores(args.scores)
    if args.motion:
        result.write_motion(args.motion)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    summary = result.report.get("identity") or {}
    prompt = (result.report.get("prompt") or {}).get("summary")
    print(json.dumps({"video": str(result.video_path), "identity": summary.get("summary"),
                      "realtime_factor": result.report["realtime_factor"], "prompt": prompt}))
    return 0
