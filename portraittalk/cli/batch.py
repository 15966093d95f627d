"""`python -m portraittalk batch JOBS --out DIR`: many videos, on this machine or a Ray cluster.

Exit codes: 0 every job done; 2 the JOBS file (or the cluster) cannot be used, nothing ran;
3 the batch ran but some jobs failed or did not run (results.csv says which and why).
"""

from __future__ import annotations

import argparse
import json

EXIT_JOBS_FAILED = 3


def add_batch_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    b = subparsers.add_parser(
        "batch", help="render many videos from a CSV or JSONL file of jobs, locally or on a Ray cluster",
        description="One job per row: portrait, audio (paths relative to the JOBS file, or URLs), and "
                    "optionally id, transcript (text or @file.txt), prompt, references (';'-separated) "
                    "and any render setting by name (fps, seed, max_size, head_motion, …).")
    b.add_argument("jobs", metavar="JOBS", help="the jobs, a .csv or .jsonl file")
    b.add_argument("--out", required=True, help="folder for one sub-folder per job, results.csv and summary.md")
    b.add_argument("--address", default=None,
                   help="join a running Ray cluster: 'auto' (one started with 'ray start' on this machine), "
                        "HOST:PORT or ray://HOST:PORT (default: a local instance sized to this machine)")
    b.add_argument("--workers", type=int, default=None,
                   help="number of render workers (default: the cluster's CPUs / 2, at least 1)")
    b.add_argument("--resume", action="store_true",
                   help="keep jobs already done with the same inputs and settings")
    b.add_argument("--fail-fast", action="store_true", help="stop at the first failed job")
    return b


def run_batch(args: argparse.Namespace) -> int:
    from ..batch import BatchOptions, run
    from ..batch.outputs import RESULTS_CSV, SUMMARY_MD

    result = run(BatchOptions(args.jobs, args.out, address=args.address, workers=args.workers,
                              resume=args.resume, fail_fast=args.fail_fast))
    counts = {s: sum(r.status == s for r in result.rows) for s in ("done", "failed", "not run")}
    print(json.dumps({**counts, "results": str(result.out_dir / RESULTS_CSV),
                      "summary": str(result.out_dir / SUMMARY_MD)}))
    return 0 if counts["done"] == len(result.rows) else EXIT_JOBS_FAILED
