"""What runs in a batch worker process: the models load once, then jobs render one by one.

Inputs arrive as bytes and outputs go back as bytes, so a worker node needs no shared
filesystem with the driver; the files only exist in a temporary folder during the render.
"""

from __future__ import annotations

import os
import resource
import socket
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PortraitTalkError
from ..settings import RenderSettings


@dataclass
class NamedBytes:
    name: str  # the file name the pipeline sees (it appears in messages and the report)
    data: bytes


@dataclass
class WorkItem:
    job_id: str
    portrait: NamedBytes
    audio: NamedBytes
    references: list[NamedBytes]
    settings: RenderSettings


@dataclass
class JobOutcome:
    """A finished job as it comes back to the driver."""

    job_id: str
    error: str | None  # one sentence when the job failed
    log: str
    seconds: float | None = None  # on the worker, from receiving the inputs to having the outputs in memory
    worker: str = ""  # host:pid; empty when the job never finished on a worker
    video: bytes | None = None
    scores_json: str | None = None
    motion_json: str | None = None
    video_s: float | None = None
    cpu_s: float | None = None  # CPU time of the worker process and its encoder during the job
    realtime_factor: float | None = None
    identity_mean: float | None = None
    identity_min: float | None = None
    frames_over_threshold: int | None = None


def _cpu_time() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class _Log:
    t0: float = field(default_factory=time.perf_counter)
    lines: list[str] = field(default_factory=list)
    stage: str = ""

    def add(self, message: str) -> None:
        self.lines.append(f"{time.perf_counter() - self.t0:7.2f}s  {message}")

    def progress(self, stage: str, frac: float, message: str) -> None:
        if stage != self.stage:  # one line per stage, not per frame
            self.stage = stage
            self.add(message)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class RenderWorker:
    """One per worker process (the engine wraps it with ``ray.remote``)."""

    def __init__(self) -> None:
        from ..pipeline import PortraitTalkPipeline
        self._pipeline = PortraitTalkPipeline()
        self._pipeline.warm_up(text_model=False)  # the prompt model loads with the first prompt
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ready(self) -> str:
        return self.name

    def render(self, item: WorkItem) -> JobOutcome:
        log, cpu0 = _Log(), _cpu_time()
        log.add(f"job {item.job_id} on worker {self.name}")
        log.add(f"inputs: portrait {_describe(item.portrait)}, audio {_describe(item.audio)}"
                + "".join(f", reference {_describe(r)}" for r in item.references))
        log.add(f"settings: {asdict(item.settings)}")
        with tempfile.TemporaryDirectory(prefix="portraittalk-job-") as tmp:
            folder = Path(tmp)
            portrait, audio = _save(folder / "portrait", item.portrait), _save(folder / "audio", item.audio)
            references: list[str | Path | bytes] = [_save(folder / f"reference{i}", r)
                                                    for i, r in enumerate(item.references)]
            try:
                result = self._pipeline.render(portrait, audio, folder / "video.mp4", item.settings,
                                               progress=log.progress, references=references)
            except PortraitTalkError as err:
                log.add(f"failed: {err}")
                return JobOutcome(item.job_id, str(err), log.text(), _since(log.t0), self.name)
            except Exception as err:  # noqa: BLE001 (a bug fails this job, not the whole batch)
                log.add("failed with an internal error:\n" + traceback.format_exc())
                sentence = (f"PortraitTalk failed on this job with an internal error ({type(err).__name__}); "
                            "log.txt in the job's folder has the details.")
                return JobOutcome(item.job_id, sentence, log.text(), _since(log.t0), self.name)
            # The worker's temporary path means nothing on the driver, which writes video.mp4.
            result.report["video"]["path"] = "video.mp4"
            for warning in result.warnings:
                log.add(f"warning: {warning}")
            log.add(f"timings (s): {result.report['timings_s']}")
            summary = result.identity.summary() if result.identity is not None else {}
            outcome = JobOutcome(
                item.job_id, None, "", 0.0, self.name, video=(folder / "video.mp4").read_bytes(),
                scores_json=result.write_scores(folder / "scores.json").read_text(),
                motion_json=result.write_motion(folder / "motion.json").read_text(),
                video_s=result.report["video"]["duration_s"], realtime_factor=result.report["realtime_factor"],
                identity_mean=summary.get("mean_cosine"), identity_min=summary.get("min_cosine"),
                frames_over_threshold=summary.get("frames_over_threshold"))
        outcome.seconds, outcome.cpu_s = _since(log.t0), round(_cpu_time() - cpu0, 3)
        log.add(f"done: {outcome.video_s} s of video, realtime factor {outcome.realtime_factor}, "
                f"CPU time {outcome.cpu_s} s, "
                f"identity mean {outcome.identity_mean} min {outcome.identity_min}")
        outcome.log = log.text()
        return outcome


def _save(folder: Path, item: NamedBytes) -> Path:
    folder.mkdir()
    path = folder / item.name
    path.write_bytes(item.data)
    return path


def _describe(item: NamedBytes) -> str:
    return f"{item.name} ({len(item.data) / 1e3:.0f} kB)"


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
