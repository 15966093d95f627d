"""Ctrl-C and SIGTERM stop a render cleanly: one line, exit 130 or 143, nothing left behind.

Real signals go to a real `python -m portraittalk render` at three moments, found from the
progress log it writes (never from a sleep): while the face and speech are analysed, early
in rendering and late in rendering. Ctrl-C goes to the whole process group, as a terminal
sends it (so ffmpeg gets it too); SIGTERM to the program alone, as `kill` sends it. After
each run: the exit code, exactly one line on stderr (no traceback, no "terminate called"
from a native thread), no temporary file in the output folder or in the process's own
$TMPDIR, no child process still alive, and no deadlock (a timeout guards every run).

In the library, an exception raised into a render (here from its progress callback) stops
the scoring thread and ffmpeg and removes the half-written video.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from portraittalk.io.audio import load_audio, write_wav
from portraittalk.settings import RenderSettings

from .conftest import REPO, example_file

RUN_TIMEOUT_S = 180  # far beyond a render of this clip: reaching it means a deadlock


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """Eight seconds of real speech (an example clip, repeated): renders long enough to be interrupted late."""
    clip = load_audio(example_file("librivox_0880.wav"))
    samples = np.tile(clip.samples, int(np.ceil(8.0 / clip.duration_s)))[: 8 * clip.sample_rate]
    return write_wav(tmp_path_factory.mktemp("interrupt_speech") / "speech.wav", samples, clip.sample_rate)


def _at(stage: str, least: float = 0.0):
    """A moment in the progress log: the first line of ``stage`` at or past ``least`` of the job."""
    def reached(line: str) -> bool:
        frac, name, _ = line.split(" ", 2)
        return name == stage and float(frac) >= least
    return reached


MOMENTS = {
    "analysing": _at("audio"),  # the face is analysed, the speech is being decoded and read
    "early_rendering": _at("render"),  # the first frame has gone to the encoder
    "late_rendering": _at("render", 0.2 + 0.75 * 0.75),  # three quarters of the frames are out
}
SIGNALS = {"ctrl_c": (signal.SIGINT, "SIGINT", 130), "sigterm": (signal.SIGTERM, "SIGTERM", 143)}


def _wait_for(log: Path, reached, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        if log.exists() and any(reached(line) for line in log.read_text().splitlines() if line.strip()):
            return
        if proc.poll() is not None:
            pytest.fail(f"the render ended before the moment to interrupt it: {proc.communicate()}")
        time.sleep(0.01)
    pytest.fail("the render never reached the moment to interrupt it")


@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize("how", list(SIGNALS))
def test_an_interrupted_render_exits_cleanly(tmp_path, speech, moment, how):
    signum, name, code = SIGNALS[how]
    out, tmp = tmp_path / "out", tmp_path / "tmpdir"
    out.mkdir()
    tmp.mkdir()
    log = tmp_path / "progress.log"
    env = {**os.environ, "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "portraittalk", "render", "--image", str(example_file("grace_hopper.jpg")),
         "--audio", str(speech), "--out", str(out / "talk.mp4"), "--scores", str(out / "scores.json"),
         "--motion", str(out / "motion.json"), "--progress-log", str(log), "--max-size", "512"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group, like a command started from a terminal
    try:
        _wait_for(log, MOMENTS[moment], proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        names = [c.name() for c in children]
        if how == "ctrl_c":
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, stderr
    assert stderr.splitlines() == [f"error: interrupted ({name})."], stderr
    assert not stdout
    assert sorted(p.name for p in out.iterdir()) == [], "a temporary or half-written file was left"
    assert sorted(p.name for p in tmp.iterdir()) == [], "the process left something in its $TMPDIR"
    if moment != "analysing":
        assert any("ffmpeg" in n for n in names), names  # the encoder was running when the signal came
    for child in children:  # ffmpeg and anything else the render started: gone, not even a zombie
        assert not child.is_running(), child


def test_an_exception_inside_a_render_stops_the_scoring_thread_and_ffmpeg(pipeline, speech, tmp_path):
    """A render stopped from inside (a KeyboardInterrupt in a notebook, a failing progress
    callback): the scoring thread ends, ffmpeg is gone, no half-written video is left."""
    out = tmp_path / "talk.mp4"
    before = set(threading.enumerate())
    started: list[threading.Thread] = []
    encoders: list[psutil.Process] = []

    class Stop(KeyboardInterrupt):
        pass

    def progress(stage: str, frac: float, msg: str) -> None:
        if stage == "render" and frac > 0.5:
            started.extend(t for t in threading.enumerate() if t not in before)
            encoders.extend(c for c in psutil.Process().children(recursive=True) if "ffmpeg" in c.name())
            raise Stop

    with pytest.raises(Stop):
        pipeline.render(example_file("grace_hopper.jpg"), speech, out,
                        RenderSettings(max_size=256, score_identity=True), progress)
    assert started and encoders  # the scoring thread and ffmpeg were at work …
    assert not any(t.is_alive() for t in started), [t.name for t in started if t.is_alive()]  # … and have ended
    assert not any(c.is_running() for c in encoders)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
