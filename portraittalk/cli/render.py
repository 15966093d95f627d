"""`python -m portraittalk render`: a portrait and a speech recording (or a text to say) → a talking-face MP4.

The options for the settings are made from :class:`~portraittalk.settings.RenderSettings`
(name, type, default, range, help), so the CLI and the app cannot disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from dataclasses import fields

from ..errors import InputError
from ..settings import RenderSettings
from .common import ProgressLine, check_files, read_text_arg, text_file


def option_name(f) -> str:
    return RenderSettings.spec(f).option or "--" + f.name.replace("_", "-")


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per RenderSettings field: its type, its default, its range in the help."""
    hints = typing.get_type_hints(RenderSettings)
    for f in fields(RenderSettings):
        spec, kind = RenderSettings.spec(f), hints[f.name]
        if isinstance(kind, types.UnionType):  # `str | None`: a value may be given or left out
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if kind is bool:  # a flag that turns the default off (or on)
            parser.add_argument(option_name(f), dest=f.name, action="store_false" if f.default else "store_true",
                                help=spec.help)
            continue
        bounds = (f" (a whole number from {spec.lo:g} up)" if spec.whole
                  else f" ({spec.lo:g} … {spec.hi:g})" if spec.lo is not None else "")
        parser.add_argument(option_name(f), dest=f.name, type=kind, default=f.default, choices=spec.choices or None,
                            metavar=None if spec.choices else option_name(f)[2:].replace("-", "_").upper(),
                            help=spec.help + bounds)


def add_render_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `render` command on the CLI's sub-parsers."""
    p = subparsers.add_parser("render", help="make a talking-face MP4 from a portrait and a speech recording")
    p.add_argument("--image", required=True, help="portrait photo (JPEG, PNG, WebP, BMP, TIFF)")
    p.add_argument("--audio", help="speech recording (WAV, MP3, M4A, OGG, FLAC …); or type it with --say")
    p.add_argument("--out", required=True, help="output video path (.mp4)")
    p.add_argument("--scores", help="write per-frame identity scores and the run report here (JSON)")
    p.add_argument("--motion", help="write the motion track here (JSON)")
    p.add_argument("--wav", help="write the synthesised speech here (WAV; with --say)")
    p.add_argument("--subtitles", help="write the spoken words here as subtitles (.vtt or .srt)")
    p.add_argument("--reference", action="append", default=[],
                   help="extra portrait of the same person (repeatable); used for identity scoring")
    p.add_argument("--progress-log", metavar="FILE",
                   help="append one line per progress step to FILE (fraction done, stage, message)")
    add_setting_options(p)
    return p


def run_render(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (InputError propagates to the CLI's handler)."""
    from ..io.paths import check_outputs
    from ..pipeline import PortraitTalkPipeline

    check_files((("portrait", args.image), ("audio", args.audio), *(("reference portrait", r) for r in args.reference)))
    if (args.audio is None) == (args.text is None):
        raise InputError("Give the speech either as a recording (--audio FILE) or as a text to say (--say TEXT).")
    if args.wav and args.text is None:
        raise InputError("--wav writes the speech made from a text; use it with --say.")
    # Every output is checked before the render, against the inputs and each other, so a bad
    # path never ends in a traceback after it, nor overwrites anything but a file.
    out = check_outputs({"talk.mp4": args.out, "scores.json": args.scores, "motion.json": args.motion,
                         "speech.wav": args.wav, "words.vtt": args.subtitles,
                         "progress.log": args.progress_log},
                        inputs=[args.image, args.audio, *args.reference, text_file(args.transcript),
                                text_file(args.text)])
    settings = RenderSettings(**{f.name: getattr(args, f.name) for f in fields(RenderSettings)})
    settings.transcript = read_text_arg(settings.transcript)
    settings.text = read_text_arg(settings.text, "text")
    progress = ProgressLine(out.get("progress.log"))
    result = PortraitTalkPipeline().render(args.image, args.audio, out["talk.mp4"], settings, progress,
                                           references=args.reference)
    progress.done()
    if args.scores:
        result.write_scores(out["scores.json"])
    if args.motion:
        result.write_motion(out["motion.json"])
    if args.wav:
        result.write_speech(out["speech.wav"])
    if args.subtitles:
        from ..io.subtitles import cues_from_words, write_subtitles
        write_subtitles(out["words.vtt"], cues_from_words(result.words))
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    summary = result.report.get("identity") or {}
    prompt = (result.report.get("prompt") or {}).get("summary")
    print(json.dumps({"video": str(result.video_path), "identity": summary.get("summary"),
                      "realtime_factor": result.report["realtime_factor"], "prompt": prompt}))
    return 0
