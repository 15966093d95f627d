"""Peak memory of a render against the length of the speech: is it flat in the clip length?

    python benchmarks/long_audio_memory.py                       # 10 s, 60 s, 180 s at 512 px, identity on
    python benchmarks/long_audio_memory.py --seconds 10 60 --max-size 256 --no-identity --json

Each length renders in a fresh child process, so every figure is that render's own. The
speech is the bundled LibriVox clips (real speech) joined end to end until the length is
reached. Per render it reports:

* ``peak_rss_mb``: the child's peak resident memory (VmHWM), models included;
* ``rss_models_mb``: its resident memory after the models were loaded, before the render;
* ``rss_at_mb``: resident memory sampled at 25 %, 50 %, 75 % and 100 % of the frames: a render
  whose memory is flat in the length stays level through the clip;
* ``ffmpeg_peak_mb``: the largest resident memory seen in the child's own child processes
  (the ffmpeg video encoder), sampled every 50 ms;
* ``wall_s`` and the real-time factor (render seconds per second of speech).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEFAULT_SECONDS = (10.0, 60.0, 180.0)
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from portraittalk.cli.bench import peak_rss_mb, speech_of  # noqa: E402  (after the path is set)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def render_and_measure(image: Path, audio: Path, out: Path, max_size: int, identity: bool) -> dict:
    """Run in the child: load the models, render once, return the memory figures."""
    from portraittalk.pipeline import PortraitTalkPipeline
    from portraittalk.settings import RenderSettings

    pipe = PortraitTalkPipeline()
    _ = pipe.face_analyzer
    if identity:
        _ = pipe.identity_scorer
    rss_models = _rss_mb()
    samples: dict[str, float] = {}
    marks = (0.25, 0.5, 0.75, 1.0)

    def progress(stage: str, frac: float, msg: str) -> None:
        if stage != "render":
            return
        done = (frac - 0.2) / 0.75  # the pipeline reports rendering as 0.2 … 0.95
        for m in marks:
            if done >= m - 1e-6 and f"{int(m * 100)}%" not in samples:
                samples[f"{int(m * 100)}%"] = round(_rss_mb(), 1)

    # The peaks between progress reports, sampled by a thread (ffmpeg's through psutil, which
    # accelerate already depends on; ru_maxrss of children would count the forking parent).
    try:
        import psutil
        me = psutil.Process()
    except ImportError:
        me = None
    peak = [0.0, 0.0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            if me is not None:
                for child in me.children(recursive=True):
                    try:
                        # By name: a child caught between fork and exec still shows Python's pages.
                        if child.name().startswith("ffmpeg"):
                            peak[1] = max(peak[1], child.memory_info().rss / 2**20)
                    except psutil.Error:
                        pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    result = pipe.render(image, audio, out, RenderSettings(max_size=max_size, score_identity=identity), progress)
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    return {
        "seconds": result.report["input"]["audio"]["duration_s"],
        "frames": result.report["video"]["frames"],
        "size": result.report["video"]["size"],
        "identity": identity,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_during_render_mb": round(peak[0], 1),
        "rss_models_mb": round(rss_models, 1),
        "rss_at_mb": samples,
        "ffmpeg_peak_mb": round(peak[1], 1) if me is not None else None,
        "wall_s": round(wall, 2),
        "realtime_factor": round(wall / max(result.report["input"]["audio"]["duration_s"], 1e-6), 3),
    }


def measure(seconds: float, max_size: int = 512, identity: bool = True,
            image: Path = EXAMPLES / "grace_hopper.jpg", timeout_s: float = 3600) -> dict:
    """Render `seconds` of speech in a fresh child process and return its memory figures."""
    with tempfile.TemporaryDirectory(prefix="portraittalk-memory-") as tmp:
        folder = Path(tmp)
        audio = speech_of(seconds, folder)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(image), str(audio),
               str(folder / "out.mp4"), str(max_size), "1" if identity else "0"]
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"the {seconds:g} s render failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    lines = ["| speech | frames | size | identity | models loaded | RSS at 25/50/75/100 % of frames | "
             "peak RSS | ffmpeg peak | wall | × real time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        at = " / ".join(f"{r['rss_at_mb'].get(k, float('nan')):.0f}" for k in ("25%", "50%", "75%", "100%"))
        lines.append(f"| {r['seconds']:.0f} s | {r['frames']} | {'×'.join(map(str, r['size']))} | "
                     f"{'on' if r['identity'] else 'off'} | {r['rss_models_mb']:.0f} MB | {at} MB | "
                     f"{r['peak_rss_mb']:.0f} MB | {r['ffmpeg_peak_mb'] or float('nan'):.0f} MB | {r['wall_s']:.0f} s | "
                     f"{r['realtime_factor']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=list(DEFAULT_SECONDS))
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        image, audio, out, max_size, identity = args.child
        print(json.dumps(render_and_measure(Path(image), Path(audio), Path(out), int(max_size), identity == "1")))
        return 0
    rows = []
    for seconds in args.seconds:
        rows.append(measure(seconds, args.max_size, not args.no_identity))
        if not args.json:
            print(f"{seconds:g} s done: peak {rows[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=1) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
