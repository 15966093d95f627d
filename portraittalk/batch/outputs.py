"""What a batch leaves in its output folder: one folder per job, results.csv and results.jsonl.

A job's folder is written under ``DIR/.partial`` and renamed into place once every file is in
it, so a folder at ``DIR/<id>`` is always complete, even when the driver is killed. Its
``job.json`` holds the content hash and the result row that ``--resume`` reads back.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TextIO

from ..errors import InputError
from .worker import JobOutcome

PARTIAL = ".partial"
RESULTS_CSV, RESULTS_JSONL, SUMMARY_MD, PLOT_PNG = "results.csv", "results.jsonl", "summary.md", "identity.png"
RESERVED_NAMES = frozenset({RESULTS_CSV, RESULTS_JSONL, SUMMARY_MD, PLOT_PNG})  # no job id may take these


@dataclass
class ResultRow:
    id: str
    status: str  # "done", "failed" or "not run"
    error: str = ""  # the one-sentence reason when it failed
    seconds: float | None = None  # render time on the worker
    realtime_factor: float | None = None
    video_s: float | None = None
    identity_mean: float | None = None  # cosine similarity to the portrait, over the frames
    identity_min: float | None = None
    frames_over_threshold: int | None = None

    @classmethod
    def from_outcome(cls, outcome: JobOutcome) -> "ResultRow":
        return cls(outcome.job_id, "failed" if outcome.error else "done", outcome.error or "", outcome.seconds,
                   outcome.realtime_factor, outcome.video_s, outcome.identity_mean, outcome.identity_min,
                   outcome.frames_over_threshold)


COLUMNS = [f.name for f in fields(ResultRow)]


def prepare(out_dir: str | Path) -> Path:
    """The output folder, created, with what a killed earlier run left half-written removed."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"The output '{out}' is a file; give a folder for the batch's results.") from None
    except OSError as err:
        raise InputError(f"The output folder '{out}' cannot be created ({err.strerror}); "
                         "choose another place.") from None
    clear_partial(out)
    return out


def clear_partial(out: Path) -> None:
    """Remove job folders that were still being written (by this run or a killed one)."""
    shutil.rmtree(out / PARTIAL, ignore_errors=True)


def write_job(out: Path, row: ResultRow, key: str, log: str, outcome: JobOutcome | None = None) -> Path:
    """Write the job's folder in one step: the old folder (if any) is replaced only when the new
    one is complete."""
    staging = out / PARTIAL / f"{row.id}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    if outcome is not None and outcome.video is not None:
        (staging / "video.mp4").write_bytes(outcome.video)
        (staging / "scores.json").write_text(outcome.scores_json or "")
        (staging / "motion.json").write_text(outcome.motion_json or "")
    (staging / "log.txt").write_text(log)
    (staging / "job.json").write_text(json.dumps({"key": key, "result": asdict(row)}, indent=1))
    final = out / row.id
    retired = None
    if final.exists():
        retired = staging.with_name(staging.name + ".old")
        final.rename(retired)
    staging.rename(final)
    if retired is not None:
        shutil.rmtree(retired)
    return final


def finished_row(out: Path, job_id: str, key: str) -> ResultRow | None:
    """The result of a job already done with exactly these inputs and settings, if any."""
    try:
        record = json.loads((out / job_id / "job.json").read_text())
        row = ResultRow(**record["result"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if record.get("key") != key or row.status != "done" or not (out / job_id / "video.mp4").is_file():
        return None
    return row


def write_results(out: Path, rows: list[ResultRow]) -> None:
    """results.csv and results.jsonl, one row per job in the JOBS file's order."""
    def replace(name: str, write: Callable[[TextIO], object]) -> None:
        tmp = out / f".{name}.tmp"
        with tmp.open("w", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, out / name)

    def csv_rows(f: TextIO) -> None:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in asdict(r).items()} for r in rows)

    replace(RESULTS_CSV, csv_rows)
    replace(RESULTS_JSONL, lambda f: f.writelines(json.dumps(asdict(r)) + "\n" for r in rows))
