"""Many visitors at once: concurrent `gradio_client` requests against `python app.py` on loopback.

The app is started the way a user starts it (``python app.py``, port from
GRADIO_SERVER_PORT, no server name given) with its own upload and result folders and a
fake token in its environment. Then 3 rounds of 8 simultaneous visitors, each with their
own portrait and recording, all different: every request must come back with *its own*
video (its frame count, its file names) or a clean refusal; afterwards the server's memory
is back near where it was after its first render, its result folder is bounded, it listens
on loopback only, and its log holds no traceback and no secret. Latency percentiles are
printed (run with ``-s`` to see them) and recorded as test properties.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portraittalk.io.audio import ffmpeg_exe
from portraittalk.io.video import probe_video

from .conftest import EXAMPLES, REPO, free_port

gradio_client = pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")

ROUNDS, VISITORS = 3, 8
FPS, SIZE = 10, 256  # the app's lowest frame rate and size: many requests, little CPU each
RESULT_ENTRIES = 4
START_TIMEOUT_S = 150
SECRET = "hf_PortraitTalkLoadTestNotARealToken"


def rss_mb(pid: int) -> float:
    """Resident memory of the server and the ffmpeg encoders it runs."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            # By name: a child caught between fork and exec would count the server's pages twice.
            if child.name().startswith("ffmpeg"):
                total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (REPO / "app.py").is_file():
        pytest.skip("app.py is not in this checkout")
    for name in ("grace_hopper.jpg", "astronaut_eileen_collins.jpg", "librivox_0880.wav"):
        if not (EXAMPLES / name).is_file():
            pytest.skip(f"examples/{name} is not in this checkout")
    root = tmp_path_factory.mktemp("load_server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_SERVER_NAME", "GRADIO_SHARE")}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(root / "uploads"),
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_EXAMPLES_CACHE=str(root / "examples_cache"),
               PORTRAITTALK_RESULT_CACHE=str(root / "results"),
               PORTRAITTALK_RESULT_CACHE_ENTRIES=str(RESULT_ENTRIES), HF_TOKEN=SECRET, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log_path = root / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    client = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                client = gradio_client.Client(url, verbose=False)
                break
        except (OSError, Exception):  # not listening yet, or the API not ready yet
            time.sleep(1.0)
    if client is None:
        tail = log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        _stop(proc)
        log.close()
        pytest.skip(f"`python app.py` did not start within {START_TIMEOUT_S} s; its log ends with:\n{tail}")
    try:
        yield {"url": url, "proc": proc, "root": root, "log": log_path, "client": client}
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def visitors(server) -> list[list[tuple[Path, Path, int]]]:
    """Per round, per visitor: (portrait, recording, expected frame count), every one different:
    a differently framed portrait under its own name and a clip of its own length."""
    folder = server["root"] / "visitors"
    folder.mkdir()
    faces = [Image.open(EXAMPLES / n).convert("RGB") for n in ("grace_hopper.jpg", "astronaut_eileen_collins.jpg")]
    rounds = []
    for r in range(ROUNDS):
        batch = []
        for v in range(VISITORS):
            face = faces[(r + v) % 2]
            w, h = face.size
            shift = 4 * (r * VISITORS + v)  # a different crop per request: different bytes, same person
            crop = face.crop((shift % 40, shift % 32, w - 40 + shift % 40, h - 32 + shift % 32))
            crop.thumbnail((SIZE, SIZE))
            portrait = folder / f"visitor_r{r}_v{v}.png"
            crop.save(portrait)
            seconds = 0.6 + 0.1 * v  # 6 … 13 frames: each visitor's own count
            clip = folder / f"voice_r{r}_v{v}.wav"
            subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i",
                            str(EXAMPLES / "librivox_0880.wav"), "-t", f"{seconds:.1f}", str(clip)], check=True)
            batch.append((portrait, clip, round(seconds * FPS)))
        rounds.append(batch)
    return rounds


def request(url: str, portrait: Path, clip: Path) -> tuple[float, object]:
    """One visitor: their own client, one /render call; (seconds, (video, report) or the error)."""
    from gradio_client import handle_file

    client = gradio_client.Client(url, verbose=False)
    t0 = time.perf_counter()
    try:
        out = client.predict(handle_file(str(portrait)), handle_file(str(clip)), api_name="/render",
                             max_size=SIZE, fps=FPS)
    except Exception as err:  # noqa: BLE001 (a refusal must be a sentence; checked by the caller)
        out = err
    return time.perf_counter() - t0, out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def test_concurrent_visitors_each_get_their_own_video(server, visitors, record_property):
    url, pid = server["url"], server["proc"].pid
    # One render first: lazily built state (renderer caches, the descriptor) now exists, so
    # what follows measures the load, not the start-up.
    warm_portrait, warm_clip, warm_frames = visitors[0][0]
    _, warm = request(url, warm_portrait, warm_clip)
    assert not isinstance(warm, Exception), warm
    baseline = rss_mb(pid)

    latencies: list[float] = []
    refused: list[str] = []
    peak = baseline
    after_round: list[float] = []
    t_all = time.perf_counter()
    for batch in visitors:
        with ThreadPoolExecutor(max_workers=VISITORS) as pool:
            futures = [pool.submit(request, url, p, c) for p, c, _ in batch]
            while not all(f.done() for f in futures):
                peak = max(peak, rss_mb(pid))
                time.sleep(0.25)
            answers = [f.result() for f in futures]
        time.sleep(1.0)  # let finished requests release their buffers
        after_round.append(rss_mb(pid))
        for (portrait, clip, frames), (seconds, out) in zip(batch, answers):
            if isinstance(out, Exception):
                # A refusal (queue full) is allowed, as one plain sentence.
                message = str(out)
                assert "Traceback" not in message and "\n" not in message.strip(), message
                refused.append(message)
                continue
            latencies.append(seconds)
            video, report = out
            # Its own inputs, nobody else's: the file names and the length of its recording.
            assert report["input"]["image"]["name"] == portrait.name
            assert report["input"]["audio"]["name"] == clip.name
            assert report["video"]["frames"] == frames
            assert probe_video(video).n_frames == frames
            assert len(report["identity"]["frames"]) == frames
    wall = time.perf_counter() - t_all

    after = after_round[-1]
    figures = {
        "requests": ROUNDS * VISITORS, "succeeded": len(latencies), "refused": len(refused),
        "latency_p50_s": round(percentile(latencies, 50), 2), "latency_p90_s": round(percentile(latencies, 90), 2),
        "latency_max_s": round(max(latencies), 2), "wall_s": round(wall, 1),
        "rss_baseline_mb": round(baseline), "rss_peak_mb": round(peak),
        "rss_after_each_round_mb": [round(m) for m in after_round],
    }
    for key, value in figures.items():
        record_property(key, value)
    print("\nload test:", figures)
    assert len(latencies) >= ROUNDS * VISITORS // 2  # the queue (16 places) holds a round of 8
    # Memory comes back near its level after the first render, and does not creep up round by round.
    # (The app caps glibc's per-thread arenas, so bursts of uploads do not ratchet it up.)
    assert after - baseline < 150, figures
    assert after_round[-1] - after_round[0] < 60, figures


def test_server_is_local_private_bounded_and_quiet(server):
    """After the load: loopback only, no share link, a bounded result folder, no leftovers,
    no tracebacks and no secrets in the log."""
    proc = psutil.Process(server["proc"].pid)
    listening = [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    results = server["root"] / "results"
    entries = [p for p in results.iterdir()] if results.is_dir() else []
    assert len([p for p in entries if p.is_dir() and not p.name.startswith("work-")]) <= RESULT_ENTRIES
    assert not [p for p in entries if p.name.startswith("work-")]  # no half-finished work left
    assert not list(results.rglob(".encoding-*")) and not list(results.rglob(".muxing-*"))
    log = server["log"].read_text(encoding="utf-8", errors="replace")
    assert "Running on local URL" in log and "127.0.0.1" in log
    assert "gradio.live" not in log and "public URL" not in log.replace("To create a public link", "")
    assert "Traceback" not in log
    assert SECRET not in log


def test_oversized_upload_is_refused_with_a_message(server):
    """An upload over the size limit is refused before it is stored; the server keeps serving."""
    from gradio_client import handle_file

    big = server["root"] / "enormous.wav"
    with open(big, "wb") as f:
        f.truncate(300 * 2**20)  # 300 MB (sparse on disk)
    with pytest.raises(Exception) as err:
        server["client"].predict(handle_file(str(EXAMPLES / "grace_hopper.jpg")), handle_file(str(big)),
                                 api_name="/render", max_size=SIZE)
    message = str(err.value)
    assert "Traceback" not in message
    assert "size" in message.lower() or "large" in message.lower() or "413" in message, message
    assert not list((server["root"] / "uploads").rglob("enormous.wav"))
    # Still serving.
    assert server["proc"].poll() is None
