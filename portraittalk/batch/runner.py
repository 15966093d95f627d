"""A batch from start to end: read JOBS, skip what is done, render the rest on Ray, write results.

The driver reads each job's inputs only when a worker is free for it, so memory stays flat in
the number of jobs; every finished job is written at once, so an interruption loses nothing
that had finished.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .engine import Finished, WorkerPool, ray_session
from .hashing import job_key
from .jobs import Job, read_input, read_jobs, source_name
from .outputs import ResultRow, clear_partial, finished_row, prepare, write_job, write_results
from .report import BatchStats, plot_identity, write_summary
from .worker import JobOutcome, NamedBytes, WorkItem


@dataclass
class BatchOptions:
    jobs_file: str | Path
    out_dir: str | Path
    address: str | None = None  # None: a new local Ray instance
    workers: int | None = None  # None: as many as the CPUs allow
    resume: bool = False
    fail_fast: bool = False
    num_cpus: int | None = None  # size of the local instance (default: this machine's CPUs)


@dataclass
class BatchResult:
    out_dir: Path
    rows: list[ResultRow]  # one per job, in the JOBS file's order
    stats: BatchStats


def run(options: BatchOptions) -> BatchResult:
    """Run a batch. Problems with the JOBS file raise InputError before any work starts."""
    jobs = read_jobs(options.jobs_file)
    if options.workers is not None and options.workers < 1:
        raise InputError(f"The number of workers must be 1 or more (got {options.workers}).")
    out = prepare(options.out_dir)
    t0 = time.perf_counter()
    with ray_session(options.address, options.num_cpus):
        connect_s = time.perf_counter() - t0
        batch, pool = _Batch(jobs, out, options), WorkerPool(options.workers)
        try:
            for finished in pool.results(batch.work(), tick=lambda: batch.progress.show(pool.running)):
                batch.received(finished)
                if batch.stopped:
                    break
        finally:
            pool.close()
            batch.progress.close()
        wall_s = time.perf_counter() - t0
    stats = BatchStats(wall_s=round(wall_s, 3), workers=pool.size, cpus_each=pool.cpus_each,
                       connect_s=round(connect_s, 3), ready_s=pool.ready_s, overheads_s=batch.overheads_s,
                       cpu_s=batch.cpu_s, kept=batch.kept)
    clear_partial(batch.out)
    rows = [batch.rows.get(job.id) or ResultRow(job.id, "not run") for job in jobs]
    write_results(batch.out, rows)
    write_summary(batch.out, rows, stats)
    plot_identity(batch.out, rows)
    return BatchResult(batch.out, rows, stats)


class _Batch:
    """The driver's state: what is done, what each pending job's content hash is."""

    def __init__(self, jobs: list[Job], out: Path, options: BatchOptions) -> None:
        self.jobs, self.out, self.options = jobs, out, options
        self.by_id = {job.id: job for job in jobs}
        self.rows: dict[str, ResultRow] = {}
        self.keys: dict[str, str] = {}
        self.kept: set[str] = set()
        self.overheads_s: list[float] = []
        self.cpu_s: list[float] = []
        self.stopped = False  # --fail-fast saw a failure
        self.progress = _Progress(len(jobs))

    def work(self) -> Iterator[WorkItem]:
        """The jobs that need rendering, read from disk (or downloaded) one at a time."""
        for job in self.jobs:
            if job.settings is not None:
                try:
                    portrait, audio = read_input(job.portrait, "portrait"), read_input(job.audio, "audio")
                    references = [read_input(r, "reference portrait") for r in job.references]
                except InputError as err:
                    job = dataclasses.replace(job, settings=None, error=str(err))
            if job.settings is None:  # a bad value in the JOBS file or an unreadable input: error says which
                self.finish(JobOutcome(job.id, job.error, ""), "")
                if self.stopped:
                    return
                continue
            key = job_key(portrait, audio, references, job.settings)
            done = finished_row(self.out, job.id, key) if self.options.resume else None
            if done is not None:
                self.rows[job.id] = done
                self.kept.add(job.id)
                self.progress.keep()
                continue
            self.keys[job.id] = key
            extra = [NamedBytes(source_name(r), data) for r, data in zip(job.references, references, strict=True)]
            yield WorkItem(job.id, NamedBytes(source_name(job.portrait), portrait),
                           NamedBytes(source_name(job.audio), audio), extra, job.settings)

    def received(self, finished: Finished) -> None:
        """A job back from a worker: its timings noted, its folder written."""
        outcome = finished.outcome
        note = f"driver: round trip {finished.round_trip_s:.3f} s"
        if outcome.seconds is not None:
            overhead = max(0.0, finished.round_trip_s - outcome.seconds)
            self.overheads_s.append(overhead)
            note += f", of which {overhead:.3f} s outside the worker's own work"
        if outcome.cpu_s is not None:
            self.cpu_s.append(outcome.cpu_s)
        self.finish(outcome, note + "\n")

    def finish(self, outcome: JobOutcome, driver_note: str) -> None:
        job = self.by_id[outcome.job_id]
        row = ResultRow.from_outcome(outcome)
        header = f"job {job.id}, line {job.line} of {Path(self.options.jobs_file).name}\n"
        failure = f"failed: {outcome.error}\n" if outcome.error and outcome.error not in outcome.log else ""
        write_job(self.out, row, self.keys.get(job.id, ""), header + outcome.log + failure + driver_note, outcome)
        self.rows[job.id] = row
        self.progress.record(row)
        self.stopped = self.stopped or (self.options.fail_fast and row.status == "failed")


class _Progress:
    """A progress bar on stderr: jobs done, failed and running, with tqdm's ETA."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="job", desc="batch", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
        self.counts = {"done": 0, "failed": 0, "kept": 0}
        self.running = 0
        self.live = sys.stderr.isatty()  # a log file gets a line per change, not one per second

    def keep(self) -> None:
        # A job finished by an earlier run leaves the total, so the ETA counts only real work.
        self.counts["kept"] += 1
        self.bar.total -= 1
        self._postfix(True)

    def record(self, row: ResultRow) -> None:
        self.counts[row.status] += 1
        self.bar.update(1)
        self._postfix(True)

    def show(self, running: int) -> None:
        """Called about once a second: the running count and, on a terminal, the clock and ETA."""
        changed, self.running = running != self.running, running
        self._postfix(changed or self.live)

    def _postfix(self, refresh: bool) -> None:
        self.bar.set_postfix({**self.counts, "running": self.running}, refresh=refresh)

    def close(self) -> None:
        self.bar.close()
