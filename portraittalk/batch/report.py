"""summary.md (totals, throughput, the worst identity cases first) and the identity plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .outputs import PLOT_PNG, SUMMARY_MD, ResultRow

WORST_SHOWN = 20


@dataclass
class _Identity:
    """A scored job's identity figures."""

    id: str
    mean_cosine: float
    min_cosine: float
    frames_over_threshold: int | None


def _identity(rows: list[ResultRow]) -> list[_Identity]:
    """The jobs with identity scores, in the JOBS file's order."""
    return [_Identity(r.id, r.identity_mean, r.identity_min, r.frames_over_threshold) for r in rows
            if r.identity_mean is not None and r.identity_min is not None]


@dataclass
class BatchStats:
    wall_s: float
    workers: int
    cpus_each: float
    connect_s: float  # starting or joining Ray
    ready_s: float | None  # until the first worker had its models loaded
    overheads_s: list[float] = field(default_factory=list)  # per job: round trip minus the worker's own time
    cpu_s: list[float] = field(default_factory=list)  # per job done in this run
    kept: set[str] = field(default_factory=set)  # ids of jobs done by an earlier run (--resume)


def write_summary(out: Path, rows: list[ResultRow], stats: BatchStats) -> Path:
    count = {s: sum(r.status == s for r in rows) for s in ("done", "failed", "not run")}
    fresh = [r for r in rows if r.status == "done" and r.id not in stats.kept]
    # A job done on a worker has its timings and, when scored, its identity figures.
    realtime = [r.realtime_factor for r in fresh if r.realtime_factor is not None]
    render_s = [r.seconds for r in fresh if r.seconds is not None]
    lines = ["# Batch summary", "",
             f"{len(rows)} jobs: {count['done']} done ({len(stats.kept)} kept from an earlier run), "
             f"{count['failed']} failed, {count['not run']} not run.", ""]
    video_s = sum(r.video_s or 0 for r in fresh)
    minutes = stats.wall_s / 60
    lines.append(
        f"This run rendered {len(fresh)} videos ({video_s:.1f} s of video) in {stats.wall_s:.1f} s on "
        f"{stats.workers} worker(s) of {stats.cpus_each:g} CPU(s): "
        f"{len(fresh) / minutes if minutes else 0:.2f} videos per minute, "
        f"batch realtime factor {stats.wall_s / video_s if video_s else 0:.2f} (wall time / video time)"
        + (f", per-job realtime factor median {statistics.median(realtime):.2f}." if realtime else "."))
    lines += ["", f"Ray: started or joined in {stats.connect_s:.1f} s; the first worker had its models loaded "
              + (f"{stats.ready_s:.1f} s later." if stats.ready_s is not None else "never (no job reached a worker).")]
    if stats.overheads_s and render_s:
        lines.append(f"Overhead per job (sending inputs, returning outputs, scheduling): median "
                     f"{statistics.median(stats.overheads_s):.3f} s, against a median render of "
                     f"{statistics.median(render_s):.2f} s.")
    if stats.cpu_s and render_s:
        lines.append(f"A render kept {sum(stats.cpu_s) / sum(render_s):.2f} cores busy on average "
                     "(CPU time of the worker and its encoder / render time).")
    scored = sorted(_identity(rows), key=lambda s: s.min_cosine)
    if scored:
        lines += ["", "## Identity, worst first", "",
                  "| job | min cosine | mean cosine | frames over threshold |", "|---|---|---|---|"]
        lines += [f"| {s.id} | {s.min_cosine:.4f} | {s.mean_cosine:.4f} | {s.frames_over_threshold} |"
                  for s in scored[:WORST_SHOWN]]
        if len(scored) > WORST_SHOWN:
            lines.append(f"\n({len(scored) - WORST_SHOWN} more in results.csv.)")
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        lines += ["", "## Failed jobs", "", "| job | why |", "|---|---|"]
        lines += [f"| {r.id} | {r.error.replace('|', '/')} |" for r in failed]
    path = out / SUMMARY_MD
    path.write_text("\n".join(lines) + "\n")
    return path


def plot_identity(out: Path, rows: list[ResultRow]) -> Path:
    """Mean (bar) and minimum (dot) identity cosine per job, in the JOBS file's order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = _identity(rows)
    fig = Figure(figsize=(min(16, 5 + 0.35 * len(scored)), 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if scored:
        x = range(len(scored))
        ax.bar(x, [s.mean_cosine for s in scored], color="#7aa6d6", label="mean cosine")
        ax.plot(x, [s.min_cosine for s in scored], "o", color="#b03030", label="min cosine")
        ax.set_ylim(max(0.0, min(s.min_cosine for s in scored) - 0.05), 1.0)
        if len(scored) <= 60:  # beyond that the labels would overlap
            ax.set_xticks(list(x), [s.id for s in scored], rotation=60, ha="right", fontsize=8)
        fig.legend(loc="upper right", ncol=2, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no identity scores in this batch", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("identity (cosine to the portrait)")
    ax.set_title("Identity per job", loc="left")
    fig.tight_layout()
    path = out / PLOT_PNG
    fig.savefig(path)
    return path
