"""`python -m portraittalk compare`: two videos of the same person measured against the portrait,
and one MP4 showing them side by side with their key metrics.

    python -m portraittalk compare A.mp4 B.mp4 --image PORTRAIT.jpg --out SIDE.mp4
        [--audio SPEECH.wav] [--transcript "what is said" | @file.txt] [--json OUT.json]

Prints the comparison table; with --json, writes both evaluations and the table. Bad input
raises InputError, which the CLI turns into one sentence and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import ProgressLine, check_files, read_text_arg, text_file


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `compare` command on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "compare", help="measure two talking-face videos and put them side by side in one MP4",
        description="Measure two videos against one portrait and write them side by side, labelled, with "
                    "one sound track and a caption row of identity, lip sync and audio-visual offset.")
    p.add_argument("video_a", metavar="A.mp4", help="the first video (left)")
    p.add_argument("video_b", metavar="B.mp4", help="the second video (right)")
    p.add_argument("--image", required=True, help="the portrait both videos should show")
    p.add_argument("--out", required=True, help="the side-by-side video to write (.mp4)")
    p.add_argument("--audio", help="the speech both videos say (default: each video's own sound; "
                                   "the side-by-side carries A's)")
    p.add_argument("--transcript", help="what is said (text, or @file.txt); enables forced alignment for English")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write both evaluations and the table here (JSON)")
    return p


def run_compare(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code (InputError propagates to the CLI's handler)."""
    from ..evaluation import compare, evaluate_video
    from ..evaluation.side_by_side import Panel, caption, side_by_side_video
    from ..io.paths import check_outputs, write_file

    check_files((("video A", args.video_a), ("video B", args.video_b), ("portrait", args.image),
                 ("audio", args.audio)))
    inputs = [args.video_a, args.video_b, args.image, args.audio, text_file(args.transcript)]
    outputs = check_outputs({"side_by_side.mp4": args.out, "comparison.json": args.json_out}, inputs)
    out = outputs["side_by_side.mp4"]
    transcript = read_text_arg(args.transcript)
    progress = ProgressLine()
    evaluations = []
    for name, video in (("A", args.video_a), ("B", args.video_b)):
        def report(stage: str, frac: float, msg: str, name: str = name) -> None:
            progress(stage, frac, f"Video {name}: {msg}")
        evaluations.append(evaluate_video(video, args.image, args.audio, transcript, progress=report))
    progress("video", 1.0, "Writing the side-by-side video")
    panels = [Panel(Path(video), f"{name} · {Path(video).name}", caption(ev.summary()))
              for name, video, ev in zip("AB", (args.video_a, args.video_b), evaluations)]
    side_by_side_video(panels[0], panels[1], out, args.audio)
    progress.done()
    rows, _ = compare(evaluations[0], evaluations[1], names=("A", "B"))
    widths = [max(len(str(row[k])) for row in rows) for k in range(3)]
    for label, a, b, better in [["", "A", "B", "better"], *rows]:
        print(f"{label:{widths[0]}}  {a:>{widths[1]}}  {b:>{widths[2]}}  {better}")
    if args.json_out:
        write_file(outputs["comparison.json"], json.dumps({"side_by_side": str(out), "table": rows,
                                                          "a": evaluations[0].to_dict(),
                                                          "b": evaluations[1].to_dict()}, indent=1))
        print(f"report: {args.json_out}")
    print(f"video: {out}")
    return 0
