"""`python -m portraittalk bench`: time to the first streamed piece, per-stage wall and CPU
seconds, real-time factors and peak memory, at 512 px and 1024 px, for 10 s and 60 s of speech.

Each case runs in a fresh child process (so peak memory is that render's own): it loads the
models and renders a short warm-up clip first (compiled kernels, caches), then renders the
example portrait with real speech (the bundled LibriVox clips joined end to end) exactly as
the page does, writing the streamed pieces. The example portrait is 512×600; for 1024 px it is
upscaled (Lanczos) to a long side of 1024 first, so the video really is that size.

Real-time factor (RTF) = seconds of work / seconds of audio. CPU seconds are measured per
thread and for ffmpeg's process, so they stay meaningful on a busy machine, where wall-clock
figures are not: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PORTRAIT = EXAMPLES / "grace_hopper.jpg"
WARM_UP_CLIP = EXAMPLES / "librivox_0880.wav"
# The issue's targets, printed beside the figures.
TARGETS: dict[str, dict[int, float]] = {"render_rtf": {512: 0.25, 1024: 0.5}, "total_rtf": {512: 0.5}}
FIRST_CHUNK_TARGET_S = 3.0
# Stages in the table: (name, label). Nested stages are taken out of "render".
STAGES = (("face_analysis", "face analysis"), ("audio_decode", "audio decode"), ("speech_analysis", "speech analysis"),
          ("motion", "motion planning"), ("render", "render (+ frames to the encoder)"),
          ("identity_scoring", "identity: align + network (thread)"), ("ffmpeg", "ffmpeg: colours, x264, AAC (process)"))


def speech_of(seconds: float, out_dir: Path) -> Path:
    """A WAV of ``seconds`` of real speech: the example clips one after another with a breath between."""
    import numpy as np

    from ..io.audio import ANALYSIS_RATE, load_audio, write_wav

    clips = [load_audio(p).samples for p in sorted(EXAMPLES.glob("librivox_*.wav"))]
    pause = np.zeros(int(0.4 * ANALYSIS_RATE), np.float32)
    target = int(round(seconds * ANALYSIS_RATE))
    parts: list[np.ndarray] = []
    total = 0
    while total < target:
        parts.append(np.concatenate([clips[len(parts) % len(clips)], pause]))
        total += len(parts[-1])
    return write_wav(out_dir / f"speech_{seconds:g}s.wav", np.concatenate(parts)[:target], ANALYSIS_RATE)


def portrait_at(size: int, out_dir: Path) -> Path:
    """The example portrait with a long side of ``size`` (upscaled when the file is smaller)."""
    from PIL import Image

    image = Image.open(PORTRAIT).convert("RGB")
    scale = size / max(image.size)
    if scale <= 1:
        return PORTRAIT
    path = out_dir / f"{PORTRAIT.stem}_{size}.png"
    image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS).save(path)
    return path


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). Unlike ru_maxrss it does not inherit
    the peak of the process that started this one (Linux carries that across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_case(image: str, audio: str, size: int, out: str, conn: Any) -> None:
    from ..pipeline import PortraitTalkPipeline, RenderResult
    from ..settings import RenderSettings

    pipe = PortraitTalkPipeline()
    pipe.warm_up(text_model=False)
    work = Path(out).parent
    pipe.render(image, WARM_UP_CLIP, work / "warm-up.mp4", RenderSettings(max_size=size))
    load = os.getloadavg()[0]
    cpu0, children0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
    result = None
    for event in pipe.render_stream(image, audio, out, RenderSettings(max_size=size), stream_dir=work / "stream"):
        if isinstance(event, RenderResult):
            result = event
    assert result is not None
    conn.send({"wall_s": time.perf_counter() - t0, "process_cpu_s": time.process_time() - cpu0,
               "ffmpeg_cpu_s": _children_cpu() - children0, "peak_rss_mb": peak_rss_mb(),
               "load": [load, os.getloadavg()[0]], "stages": result.stages, "first_chunk_s": result.first_chunk_s,
               "report": result.report})
    conn.close()


def run_case(image: Path, audio: Path, size: int, out: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_case, args=(str(image), str(audio), size, str(out), child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def case_figures(r: dict[str, Any]) -> dict[str, Any]:
    """Per-stage (wall s, CPU s) and the headline figures of one case."""
    rep = r["report"]
    duration, frames = rep["input"]["audio"]["duration_s"], rep["video"]["frames"]
    stages = {k: tuple(v) for k, v in r["stages"].items()}
    zero = (0.0, 0.0)
    loop = stages.get("render_encode", zero)
    nested = [stages.get(k, zero) for k in ("speech_analysis", "motion")]
    table = {k: stages.get(k, zero) for k, _ in STAGES}
    table["render"] = (loop[0] - sum(n[0] for n in nested), loop[1] - sum(n[1] for n in nested))
    table["ffmpeg"] = (table["render"][0], r["ffmpeg_cpu_s"])  # runs beside the loop
    render_encode = rep["timings_s"]["render_encode"]
    cpu_total = r["process_cpu_s"] + r["ffmpeg_cpu_s"]
    summ = (rep.get("identity") or {}).get("summary", {})
    return {
        "case": f"{rep['video']['size'][0]}×{rep['video']['size'][1]}, {duration:.0f} s", "seconds": duration,
        "frames": frames, "size": rep["video"]["size"], "stages": table,
        "first_chunk_s": r["first_chunk_s"], "render_rtf": render_encode / duration,
        "total_rtf": rep["timings_s"]["total"] / duration, "cpu_ms_per_frame": 1000 * cpu_total / frames,
        "cpu_rtf": cpu_total / duration, "peak_rss_mb": r["peak_rss_mb"], "load": r["load"],
        "identity": [summ.get("mean_cosine"), summ.get("min_cosine")],
    }


def markdown(figures: list[dict[str, Any]]) -> str:
    """The headline table and one per-stage table per case."""
    lines = ["| case | first piece | render+encode RTF | total RTF | CPU ms/frame (all processes) | CPU RTF | "
             "peak RSS | load | identity cosine mean/min |", "|" + "---|" * 9]
    for f in figures:
        lines.append(f"| {f['case']} | {f['first_chunk_s']:.2f} s | {f['render_rtf']:.3f} | {f['total_rtf']:.3f} | "
                     f"{f['cpu_ms_per_frame']:.1f} | {f['cpu_rtf']:.3f} | {f['peak_rss_mb']:.0f} MB | "
                     f"{f['load'][0]:.1f}–{f['load'][1]:.1f} | {f['identity'][0]}/{f['identity'][1]} |")
    for f in figures:
        lines += ["", f"**{f['case']}** ({f['frames']} frames): wall and CPU seconds per stage",
                  "", "| stage | wall s | CPU s | CPU ms/frame |", "|---|---|---|---|"]
        for key, label in STAGES:
            wall, cpu = f["stages"][key]
            lines.append(f"| {label} | {wall:.2f} | {cpu:.2f} | {1000 * cpu / f['frames']:.2f} |")
    return "\n".join(lines)


def verdict(figures: list[dict[str, Any]]) -> list[str]:
    """Each target against its figure (wall-clock figures: on this machine, at its load)."""
    out = []
    for f in figures:
        size = max(f["size"])
        for key in ("render_rtf", "total_rtf"):
            goal = TARGETS[key].get(size)
            if goal is not None:
                out.append(f"{f['case']}: {key} {f[key]:.3f} (target ≤ {goal}) {'ok' if f[key] <= goal else 'MISSED'}")
        if size == 512 and f["seconds"] >= 60:
            out.append(f"{f['case']}: first piece {f['first_chunk_s']:.2f} s after the request (target ≤ "
                       f"{FIRST_CHUNK_TARGET_S:g} s to play in the page) "
                       + ("ok" if f["first_chunk_s"] <= FIRST_CHUNK_TARGET_S else "MISSED"))
    return out


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `bench` command on the CLI's sub-parsers."""
    p = subparsers.add_parser("bench", help="time every stage at 512 and 1024 px and print the tables")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="video long sides (px)")
    p.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0], help="speech lengths")
    p.add_argument("--out-dir", default=None, help="keep the videos, bench.md and bench.json here")
    return p


def run_bench(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    if not PORTRAIT.is_file() or not sorted(EXAMPLES.glob("librivox_*.wav")):
        print("No examples found in", EXAMPLES)
        return 1
    work = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="portraittalk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = []
    for size in args.sizes:
        image = portrait_at(size, work)
        for seconds in args.seconds:
            case = work / f"{size}px_{seconds:g}s"
            case.mkdir(exist_ok=True)
            figures.append(case_figures(run_case(image, speech_of(seconds, work), size, case / "video.mp4")))
            print(f"{figures[-1]['case']} done", flush=True)
    table = markdown(figures)
    notes = verdict(figures)
    print("\n" + table + "\n\n" + "\n".join(notes))
    print(f"\ncpus: {os.cpu_count()}  ·  RTF = seconds of work per second of audio  ·  first piece: from the "
          "request to the first playable piece of the streamed video")
    (work / "bench.md").write_text(table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    (work / "bench.json").write_text(json.dumps({"cpus": os.cpu_count(), "cases": figures, "targets": notes},
                                                indent=1, default=str))
    print(f"videos, bench.md and bench.json in {work}")
    return 0
