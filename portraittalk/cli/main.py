"""Command line: `python -m portraittalk render|evaluate|bench|batch|compare …`, one module per command.

Bad input ends with one sentence on stderr and exit code 2; a bug ends with exit code 1;
Ctrl-C or SIGTERM ends with one line and exit code 130 or 143 (see ``interrupts``).
"""

from __future__ import annotations

import argparse
import signal
import sys

from ..errors import PortraitTalkError
from . import interrupts
from .batch import add_batch_parser, run_batch
from .bench import add_bench_parser, run_bench
from .common import quiet_native_logs
from .compare import add_compare_parser, run_compare
from .evaluate import add_evaluate_parser, run_evaluate
from .render import add_render_parser, run_render

EXIT_BAD_INPUT = 2
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
    """The program: it takes over stderr (see ``quiet_native_logs``) and SIGINT/SIGTERM."""
    quiet_native_logs()
    interrupts.install()
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except KeyboardInterrupt:
        interrupts.end(interrupts.received() or signal.SIGINT)
    except PortraitTalkError as err:
        _end_if_interrupted()  # e.g. ffmpeg stopped by the same Ctrl-C: the interrupt is the news
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException:
        _end_if_interrupted()
        raise
    _end_if_interrupted()
    return code


def _end_if_interrupted() -> None:
    signum = interrupts.received()
    if signum is not None:
        interrupts.end(signum)
