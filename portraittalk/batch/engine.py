"""Ray: the local instance or the cluster a batch runs on, and the pool of render workers.

Each worker is a Ray actor that loads the models once and renders one job at a time. Ray
restarts an actor whose process dies and runs its job once more; a job whose worker dies on
both tries is given up, and the batch carries on.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import ray
from ray import ObjectRef
from ray.actor import ActorHandle

from ..errors import EngineUnavailableError
from .worker import JobOutcome, RenderWorker, WorkItem

# A render runs the warp renderer, the identity scorer (a thread) and ffmpeg's encoder (a
# process) at once, about 1.5 cores busy, so a worker reserves two CPUs: on two cores, one
# such worker beat two workers of one CPU (docs/BATCH.md), with one copy of the models.
CPUS_PER_WORKER = 2
TRIES_PER_JOB = 2
POLL_S = 1.0  # how often the progress display hears from a busy pool
CONNECT_TIMEOUT_S = 10

Worker = ActorHandle[RenderWorker]


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[None]:
    """Connected to Ray inside the block: the cluster at ``address``, or a new local instance
    with ``num_cpus`` (default: this machine's). A connection the process already has is used
    as it is and left open."""
    if ray.is_initialized():
        yield
        return
    # The driver's own package goes to every worker, so cluster nodes run the same code.
    init = functools.partial(ray.init, logging_level=logging.ERROR, log_to_driver=False,
                             runtime_env={"py_modules": [str(Path(__file__).resolve().parents[1])],
                                          "excludes": ["__pycache__"]})
    try:
        if address:
            _check_reachable(address)
            init(address=address)
        else:
            init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
        reason = str(err).strip().splitlines()[0].split(". ")[0].rstrip(".")
        raise EngineUnavailableError(f"Could not start or reach {where} ({reason}); "
                                     "check the address, or start a cluster with 'ray start --head'.") from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on (Ray itself would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto', or a form Ray checks itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {host}:{port}: {err.strerror or err}") from None


@dataclass
class Finished:
    item: WorkItem
    outcome: JobOutcome
    round_trip_s: float  # on the driver: from handing the job to a worker to holding its outputs


class WorkerPool:
    """``size`` render workers (default: the cluster's CPUs / CPUS_PER_WORKER)."""

    def __init__(self, workers: int | None = None) -> None:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        self.size = workers or max(1, int(cpus // CPUS_PER_WORKER))
        # More workers than fit share the cores (Ray takes four decimals of a CPU).
        self.cpus_each = math.floor(min(CPUS_PER_WORKER, cpus / self.size) * 1e4) / 1e4 if cpus else CPUS_PER_WORKER
        self.ready_s: float | None = None  # from starting the workers until the first had its models loaded
        self._t0 = 0.0
        self._actors: list[Worker] = []
        self._starting: dict[ObjectRef[str], Worker] = {}  # ready future -> actor
        self._idle: list[Worker] = []
        self._running: dict[ObjectRef[JobOutcome], tuple[Worker, WorkItem, float]] = {}  # -> actor, item, handed over
        self._last_death: Exception | None = None

    def _start(self) -> None:
        actor_class = ray.remote(RenderWorker).options(
            num_cpus=self.cpus_each, max_restarts=-1, max_task_retries=TRIES_PER_JOB - 1)
        self._t0 = time.perf_counter()
        # Ray types ActorClass.remote() as "a handle or the class"; it returns a handle.
        self._actors = [cast(Worker, actor_class.remote()) for _ in range(self.size)]
        self._starting = {actor.ready.remote(): actor for actor in self._actors}

    @property
    def running(self) -> int:
        return len(self._running)

    def results(self, items: Iterator[WorkItem], tick: Callable[[], None] = lambda: None) -> Iterator[Finished]:
        """Render every item on the next idle worker; yield each as it finishes (any order).

        The workers start with the first item, so a batch with nothing to render loads no models."""
        first = next(items, None)
        if first is None:
            return
        self._start()
        items = itertools.chain([first], items)
        exhausted = False
        while True:
            while self._idle and not exhausted:
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                actor = self._idle.pop()
                self._running[actor.render.remote(item)] = (actor, item, time.perf_counter())
            if not self._running and (exhausted or not self._starting):
                if not exhausted:
                    raise EngineUnavailableError(
                        f"Every batch worker failed to start ({_last_line(self._last_death)}); "
                        "check that PortraitTalk's requirements are installed on every node.")
                return
            done, _ = ray.wait([*self._starting, *self._running], num_returns=1, timeout=POLL_S)
            for future in done:
                if future in self._starting:
                    self._started(future)
                else:
                    yield self._finish(future)
            tick()

    def close(self) -> None:
        """Stop every worker at once (a job still running is abandoned)."""
        for actor in self._actors:
            ray.kill(actor)

    def _started(self, future: ObjectRef[str]) -> None:
        actor = self._starting.pop(future)
        try:
            ray.get(future)
        except ray.exceptions.RayError as err:  # its models did not load: the worker is gone
            self._last_death = err
            return
        if self.ready_s is None:
            self.ready_s = round(time.perf_counter() - self._t0, 3)
        self._idle.append(actor)

    def _finish(self, future: ObjectRef[JobOutcome]) -> Finished:
        actor, item, t0 = self._running.pop(future)
        try:
            outcome = ray.get(future)
            self._idle.append(actor)
        except ray.exceptions.RayError as err:
            outcome = JobOutcome(
                item.job_id, "The worker rendering this job stopped before finishing it, on both tries "
                "(its process was killed, ran out of memory or lost its node); the job was given up.",
                f"{type(err).__name__}: {err}\n")
            # Ray restarts the worker; it takes new jobs once its models are loaded again.
            self._starting[actor.ready.remote()] = actor
        return Finished(item, outcome, round(time.perf_counter() - t0, 3))


def _last_line(err: Exception | None) -> str:
    lines = [line.strip() for line in str(err or "no reason given").splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"
