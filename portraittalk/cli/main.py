"""Command line: `python -m portraittalk render|evaluate|bench|batch|compare …`, one module per command.

Bad input ends with one sentence on stderr and exit code 2; a bug ends with exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import PortraitTalkError
from .batch import add_batch_parser, run_batch
from .bench import add_bench_parser, run_bench
from .common import quiet_native_logs
from .compare import add_compare_parser, run_compare
from .evaluate import add_evaluate_parser, run_evaluate
from .render import add_render_parser, run_render

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
COMMANDS = ((add_render_parser, run_render), (add_evaluate_parser, run_evaluate), (add_bench_parser, run_bench),
            (add_batch_parser, run_batch), (add_compare_parser, run_compare))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m portraittalk",
                                     description="Portrait + speech → talking-face video with identity scores.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, run in COMMANDS:
        add_parser(sub).set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PortraitTalkError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
