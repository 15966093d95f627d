"""`python -m portraittalk evaluate`: measure any talking-face video against its portrait.

    python -m portraittalk evaluate --video V.mp4 --image PORTRAIT.jpg
        [--audio SPEECH.wav] [--transcript "what is said" | @file.txt] [--json OUT.json]

Prints a readable table of the metrics (docs/METRICS.md defines them) and, with --json,
writes the full report (summary, per-section details, per-frame curves). Bad input raises
InputError, which the CLI turns into one sentence and exit code 2.
"""

from __future__ import annotations

import argparse

from .common import ProgressLine, check_files, read_text_arg, text_file


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `evaluate` command on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "evaluate", help="measure a talking-face video: identity, lip sync, facial dynamics, background",
        description="Measure a talking-face video (ours or another system's) from its decoded frames.")
    p.add_argument("--video", required=True, help="the talking-face video to measure (MP4, MOV, WebM …)")
    p.add_argument("--image", required=True, help="the portrait the video should show")
    p.add_argument("--audio", help="the speech recording (default: the video's own sound track)")
    p.add_argument("--transcript", help="what is said (text, or @file.txt); enables forced alignment for English")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the full report here (JSON)")
    return p


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (InputError propagates to the CLI's handler)."""
    from ..evaluation import evaluate_video
    from ..io.paths import check_outputs, write_file

    check_files((("video", args.video), ("portrait", args.image), ("audio", args.audio)))
    out = check_outputs({"report.json": args.json_out},
                        inputs=[args.video, args.image, args.audio, text_file(args.transcript)])
    transcript = read_text_arg(args.transcript)
    progress = ProgressLine()
    result = evaluate_video(args.video, args.image, args.audio, transcript, progress=progress)
    progress.done()
    print(result.to_text())
    if args.json_out:
        write_file(out["report.json"], result.to_json())
        print(f"report: {args.json_out}")
    return 0
