"""Batch rendering on a local Ray instance (2 CPUs) started and stopped by this module.

Every render is short (256 px, 12 fps, 3–6 s of speech); the checks are on the written files:
decoded frames, durations, identity scores, and what a killed or crashed run leaves behind.
"""

from __future__ import annotations

import argparse
import csv
import functools
import http.server
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from portraittalk.batch import BatchOptions, run
from portraittalk.batch.engine import ray_session
from portraittalk.batch.hashing import job_key
from portraittalk.batch.jobs import read_jobs
from portraittalk.cli.batch import EXIT_JOBS_FAILED, add_batch_parser, run_batch
from portraittalk.errors import InputError
from portraittalk.io.audio import load_audio
from portraittalk.io.video import probe_video, read_frames
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES, REPO, free_port
from .test_bad_inputs import one_sentence

FPS, SIZE = 12, 256
RENDER_FILES = {"video.mp4", "scores.json", "motion.json", "log.txt", "job.json"}


def batch_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_batch_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["batch", *map(str, argv)])


def write_csv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def comparable(rows) -> list[tuple]:
    """A result row without its timings (they differ from run to run)."""
    return [(r.id, r.status, r.error, r.video_s, r.identity_mean, r.identity_min, r.frames_over_threshold)
            for r in rows]


def identity_cosines(folder: Path) -> list[float]:
    return [f["cosine"] for f in json.loads((folder / "scores.json").read_text())["identity"]["frames"]]


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with 2 CPUs; yields its address. Its files, and the temporary
    folders of workers killed mid-job, go to one temporary folder (this process has already
    fixed its own, so only Ray and subprocesses see TMPDIR). Its token comes from the
    environment, so Ray writes none to ~/.ray."""
    import ray
    temp = tempfile.mkdtemp(prefix="ptray-")  # short: Ray's socket paths have a length limit
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "TMPDIR", "RAY_USAGE_STATS_ENABLED", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_TMPDIR=temp, TMPDIR=temp, RAY_USAGE_STATS_ENABLED="0",
                      RAY_AUTH_TOKEN=secrets.token_hex(16))
    try:
        with ray_session(None, num_cpus=2):
            yield ray.get_runtime_context().gcs_address
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def examples_url():
    """The examples folder served over HTTP on loopback (a job may name its audio by URL)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def jobs_file(tmp_path_factory, examples_url) -> Path:
    """Four short jobs: three good ones (one portrait by relative path, one audio by URL), one
    whose 'portrait' is a text file; the first aligns a transcript."""
    folder = tmp_path_factory.mktemp("jobs")
    (folder / "faces").mkdir()
    shutil.copy(EXAMPLES / "astronaut_eileen_collins.jpg", folder / "faces" / "collins.jpg")
    common = {"fps": FPS, "max_size": SIZE}
    return write_csv(folder / "jobs.csv", [
        {"id": "hopper", "portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav",
         "transcript": f"@{EXAMPLES / 'librivox_0880.txt'}", "seed": 7, **common},
        {"id": "collins", "portrait": "faces/collins.jpg", "audio": EXAMPLES / "librivox_0880.wav",
         "seed": 1, "head_motion": 0.5, **common},
        {"id": "not-a-photo", "portrait": EXAMPLES / "librivox_0880.txt", "audio": EXAMPLES / "librivox_0880.wav",
         **common},
        {"id": "from-url", "portrait": EXAMPLES / "grace_hopper.jpg", "audio": f"{examples_url}/librivox_0920.wav",
         "seed": 2, **common},
    ])


@pytest.fixture(scope="module")
def batch(ray_address, jobs_file, tmp_path_factory):
    """The four jobs run once, uninterrupted."""
    return run(BatchOptions(jobs_file, tmp_path_factory.mktemp("batch") / "out"))


# -- a whole batch ----------------------------------------------------------------------------
def test_three_videos_and_one_failed_row(batch, face_analyzer):
    rows = {r.id: r for r in batch.rows}
    assert [r.id for r in batch.rows] == ["hopper", "collins", "not-a-photo", "from-url"]
    assert {i for i, r in rows.items() if r.status == "done"} == {"hopper", "collins", "from-url"}
    failed = rows["not-a-photo"]
    assert failed.status == "failed" and "librivox_0880.txt" in one_sentence(failed.error)
    assert "not an image" in failed.error
    failed_folder = batch.out_dir / "not-a-photo"
    assert {p.name for p in failed_folder.iterdir()} == {"log.txt", "job.json"}
    assert failed.error in (failed_folder / "log.txt").read_text()

    audio = {"hopper": "librivox_0880.wav", "collins": "librivox_0880.wav", "from-url": "librivox_0920.wav"}
    for job_id, clip in audio.items():
        row, folder = rows[job_id], batch.out_dir / job_id
        assert {p.name for p in folder.iterdir()} == RENDER_FILES
        duration = load_audio(EXAMPLES / clip).duration_s
        info = probe_video(folder / "video.mp4")
        assert abs(info.duration_s - duration) <= 1 / FPS + 1e-6 and info.fps == pytest.approx(FPS)
        assert max(info.width, info.height) <= SIZE
        report = json.loads((folder / "scores.json").read_text())
        assert report["input"]["audio"]["name"] == clip and report["video"]["frames"] == info.n_frames
        assert len(report["identity"]["frames"]) == info.n_frames
        summary = report["identity"]["summary"]
        assert (row.identity_mean, row.identity_min, row.frames_over_threshold) == (
            summary["mean_cosine"], summary["min_cosine"], summary["frames_over_threshold"])
        assert row.identity_min >= 0.9 and row.realtime_factor > 0 and row.video_s == report["video"]["duration_s"]
        assert json.loads((folder / "motion.json").read_text())
        # The decoded video still shows a face where the portrait's was.
        last = list(read_frames(folder / "video.mp4"))[-1]
        assert face_analyzer.analyze(last).faces_found >= 1
        assert "done:" in (folder / "log.txt").read_text()


def test_results_files_summary_and_plot(batch):
    out = batch.out_dir
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in table] == [r["id"] for r in lines] == [r.id for r in batch.rows]
    for row, from_csv, from_jsonl in zip(batch.rows, table, lines):
        assert from_csv["status"] == from_jsonl["status"] == row.status
        assert from_jsonl["identity_min"] == row.identity_min and from_csv["error"] == row.error
    summary = (out / "summary.md").read_text()
    assert "4 jobs: 3 done" in summary and "1 failed" in summary and "videos per minute" in summary
    worst_first = sorted((r for r in batch.rows if r.identity_min is not None), key=lambda r: r.identity_min)
    positions = [summary.index(f"| {r.id} |") for r in worst_first]
    assert positions == sorted(positions)
    assert "| not-a-photo |" in summary.split("## Failed jobs")[1]
    with Image.open(out / "identity.png") as plot:
        assert plot.format == "PNG" and plot.width >= 400
    assert not (out / ".partial").exists()


def test_batch_video_is_the_cli_render(batch, tmp_path):
    out = tmp_path / "cli.mp4"
    subprocess.run([sys.executable, "-m", "portraittalk", "render", "--image", str(EXAMPLES / "grace_hopper.jpg"),
                    "--audio", str(EXAMPLES / "librivox_0880.wav"),
                    "--transcript", f"@{EXAMPLES / 'librivox_0880.txt'}",
                    "--fps", str(FPS), "--max-size", str(SIZE), "--seed", "7", "--out", str(out),
                    "--scores", str(tmp_path / "cli.json")], cwd=REPO, check=True, capture_output=True)
    ours, theirs = list(read_frames(batch.out_dir / "hopper" / "video.mp4")), list(read_frames(out))
    assert len(ours) == len(theirs) == probe_video(out).n_frames
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    assert identity_cosines(batch.out_dir / "hopper") == [
        f["cosine"] for f in json.loads((tmp_path / "cli.json").read_text())["identity"]["frames"]]


# -- interruptions ----------------------------------------------------------------------------
def test_resume_after_killing_the_driver(batch, ray_address, jobs_file, tmp_path):
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "portraittalk", "batch", str(jobs_file), "--out", str(out),
                               "--address", ray_address], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any(out.glob("*/job.json")) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.poll() is None, "the batch ended before it could be interrupted"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
    folders = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert folders and all((p / "job.json").is_file() for p in folders)  # nothing half-written looks complete
    assert not (out / "results.csv").exists()
    done = [p for p in folders if (p / "video.mp4").exists()]
    assert done
    stamps = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for p in done for f in p.iterdir()}

    resumed = run(BatchOptions(jobs_file, out, resume=True))
    assert resumed.stats.kept == {p.name for p in done}
    assert all((f.stat().st_ino, f.stat().st_mtime_ns) == stamp for f, stamp in stamps.items())
    assert comparable(resumed.rows) == comparable(batch.rows)
    for row in resumed.rows:
        if row.status == "done":
            assert identity_cosines(out / row.id) == identity_cosines(batch.out_dir / row.id)
            assert {p.name for p in (out / row.id).iterdir()} == RENDER_FILES


def _kill_next_render(already: list[int], timeout: float = 240) -> None:
    """SIGKILL the first of this test's Ray workers seen rendering (not one killed before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.pid not in already and "RenderWorker.render" in " ".join(proc.cmdline()):
                    proc.send_signal(signal.SIGKILL)
                    already.append(proc.pid)
                    return
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError("no worker was seen rendering")


def test_a_killed_worker_is_retried_once(ray_address, tmp_path):
    """Job a: its worker is killed once, the retry finishes it. Job b: killed on both tries, it
    is recorded as failed. Job c: the restarted worker renders it."""
    jobs = write_csv(tmp_path / "jobs.csv", [
        {"id": name, "portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav",
         "fps": FPS, "max_size": SIZE, "seed": seed, "score_identity": "false"}
        for seed, name in enumerate("abc")])
    out = tmp_path / "out"
    killed: list[int] = []

    def killer() -> None:
        _kill_next_render(killed)
        deadline = time.monotonic() + 240
        while not (out / "a" / "job.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill_next_render(killed)
        _kill_next_render(killed)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = run(BatchOptions(jobs, out, workers=1))
    thread.join(timeout=5)
    assert len(killed) == 3
    rows = {r.id: r for r in result.rows}
    assert rows["a"].status == "done" and (out / "a" / "video.mp4").is_file()
    assert rows["b"].status == "failed" and "on both tries" in one_sentence(rows["b"].error)
    assert not (out / "b" / "video.mp4").exists() and "Error" in (out / "b" / "log.txt").read_text()
    assert rows["c"].status == "done"
    assert probe_video(out / "c" / "video.mp4").n_frames == rows["c"].video_s * FPS


def test_fail_fast_stops_at_the_first_failure(ray_address, tmp_path):
    jobs = write_csv(tmp_path / "jobs.csv", [
        {"portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav", "fps": "fast"},
        {"portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav", "fps": FPS}])
    assert run_batch(batch_args(jobs, "--out", tmp_path / "out", "--fail-fast")) == EXIT_JOBS_FAILED
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [(r["id"], r["status"]) for r in rows] == [("job-0001", "failed"), ("job-0002", "not run")]
    assert one_sentence(rows[0]["error"]) == "The setting 'fps' must be a number (got 'fast')."
    assert not (tmp_path / "out" / "job-0002").exists()


# -- the JOBS file ----------------------------------------------------------------------------
@pytest.mark.parametrize("rows, words", [
    ([{"portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav", "colour": "red"}],
     ["unknown column", "'colour'"]),
    ([{"portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav"},
      {"portrait": EXAMPLES / "grace_hopper.jpg", "audio": "missing.wav"}],
     ["audio file", "missing.wav", "line 3", "does not exist"]),
    ([{"id": "x", "portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav"}] * 2,
     ["'x'", "lines 2 and 3"]),
    ([{"id": "../x", "portrait": EXAMPLES / "grace_hopper.jpg", "audio": EXAMPLES / "librivox_0880.wav"}],
     ["'../x'", "folder name"]),
])
def test_bad_jobs_file_stops_before_any_work(tmp_path, rows, words):
    jobs = write_csv(tmp_path / "jobs.csv", rows)
    with pytest.raises(InputError) as err:
        run_batch(batch_args(jobs, "--out", tmp_path / "out"))
    message = one_sentence(str(err.value))
    assert all(w in message for w in words), message
    assert not (tmp_path / "out").exists()


def test_unreadable_jobs_files(tmp_path):
    cases = {"jobs.txt": "portrait,audio\n", "jobs.jsonl": '{"portrait": "a.jpg"\n', "empty.csv": "portrait,audio\n",
             "binary.csv": b"\xff\xfe\x00bad"}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(InputError) as err:
            read_jobs(path)
        assert name in one_sentence(str(err.value))
    with pytest.raises(InputError, match="does not exist"):
        read_jobs(tmp_path / "nowhere.csv")


def test_a_bad_value_fails_only_its_row(tmp_path):
    good = {"portrait": str(EXAMPLES / "grace_hopper.jpg"), "audio": str(EXAMPLES / "librivox_0880.wav")}
    lines = [{**good, "id": "ok", "fps": 30, "score_identity": False, "prompt": "smiling"},
             {**good, "id": "slow", "fps": 1},
             {**good, "id": "half-seed", "seed": 1.5},
             {**good, "id": "yes-no", "score_identity": "maybe"}]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    jobs = {job.id: job for job in read_jobs(path)}
    assert jobs["ok"].error is None
    assert jobs["ok"].settings == RenderSettings(fps=30.0, score_identity=False, prompt="smiling")
    assert jobs["slow"].error == "The setting 'fps' must be between 5 and 60 (got 1.0)."
    assert jobs["half-seed"].error == "The setting 'seed' must be a whole number (got 1.5)."
    assert jobs["yes-no"].error == "The setting 'score_identity' must be true or false (got 'maybe')."
    assert all(job.settings is None for i, job in jobs.items() if i != "ok")


def test_content_hash_follows_inputs_and_settings():
    portrait, audio = (EXAMPLES / "grace_hopper.jpg").read_bytes(), (EXAMPLES / "librivox_0880.wav").read_bytes()
    base = job_key(portrait, audio, [], RenderSettings(fps=12))
    assert base == job_key(portrait, audio, [], RenderSettings(fps=12.0))
    changed = [job_key(portrait[:-1], audio, [], RenderSettings(fps=12)),
               job_key(portrait, audio, [portrait], RenderSettings(fps=12)),
               job_key(portrait, audio, [], RenderSettings(fps=12, prompt="smiling")),
               job_key(portrait, audio, [], RenderSettings(fps=12, transcript="he was")),
               job_key(audio, portrait, [], RenderSettings(fps=12))]
    assert len({base, *changed}) == 6
