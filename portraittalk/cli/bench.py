"""`python -m portraittalk bench`: per-stage timing, real-time factor and peak memory.

Each case runs in a fresh child process (so peak memory is that render's own), loads the
models first, then renders an example portrait with an example speech clip. Real-time
factor = seconds of work / seconds of audio (< 1 is faster than real time). Targets from
the project brief, printed next to the figures: render + encode ≤ 0.5 × audio, identity
scoring ≤ 1.0 × audio more, peak memory of a 60 s clip < 2 GB.
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

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_cases() -> list[tuple[Path, Path]]:
    portraits = sorted(p for p in EXAMPLES.glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    clips = sorted(EXAMPLES.glob("*.wav"))
    if not portraits or not clips:
        return []
    # Every portrait once, cycling through the clips.
    return [(p, clips[i % len(clips)]) for i, p in enumerate(portraits)]


def _looped_audio(src: Path, seconds: float, out_dir: Path) -> Path:
    import numpy as np

    from ..io.audio import load_audio, write_wav
    clip = load_audio(src)
    reps = int(np.ceil(seconds / clip.duration_s))
    samples = np.tile(clip.samples, reps)[: int(seconds * clip.sample_rate)]
    return write_wav(out_dir / f"{src.stem}_{int(seconds)}s.wav", samples, clip.sample_rate)


def _run_case(image: str, audio: str, out: str, quality: bool, conn) -> None:
    from ..pipeline import PortraitTalkPipeline
    from ..settings import RenderSettings
    pipe = PortraitTalkPipeline()
    t0 = time.perf_counter()
    pipe.warm_up(text_model=False)
    load_s = time.perf_counter() - t0
    transcript = Path(audio).with_suffix(".txt")
    res = pipe.render(image, audio, out, RenderSettings(
        transcript=transcript.read_text() if transcript.exists() else None))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"load_s": load_s, "peak_mb": peak_mb, "report": res.report}
    if quality:
        # Quality as a viewer sees it: measured on the decoded MP4, not on internal state.
        from ..evaluation import VideoEvaluator, evaluate_video
        ev = evaluate_video(out, image, audio, transcript.read_text() if transcript.exists() else None,
                            evaluator=VideoEvaluator(pipe.face_analyzer, pipe.identity_scorer))
        result["quality"] = ev.summary()
        result["quality_row"] = ev.to_markdown_row()
    conn.send(result)
    conn.close()


def run_case(image: Path, audio: Path, out: Path, quality: bool = True) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_case, args=(str(image), str(audio), str(out), quality, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `bench` command on the CLI's sub-parsers."""
    p = subparsers.add_parser("bench", help="time every stage on the bundled examples and print a table")
    p.add_argument("--seconds", type=float, default=None, help="also time a clip of this length (looped audio)")
    p.add_argument("--out-dir", default=None, help="keep the rendered videos here")
    return p


def run_bench(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    seconds, out_dir = args.seconds, args.out_dir
    cases = example_cases()
    if not cases:
        print("No examples found in", EXAMPLES)
        return 1
    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="portraittalk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if seconds:
        cases.append((cases[0][0], _looped_audio(cases[0][1], seconds, work)))
    cols = ["case", "audio s", "frames", "size", "face", "speech", "motion", "render+enc", "identity*",
            "RTF render", "RTF identity", "RTF total", "peak MB"]
    rows = []
    quality_rows, results = [], []
    for k, (image, audio) in enumerate(cases):
        long_case = seconds is not None and k == len(cases) - 1
        r = run_case(image, audio, work / f"{image.stem}__{audio.stem}.mp4", quality=not long_case)
        results.append(r)
        if "quality_row" in r:
            quality_rows.append(r["quality_row"])
        rep = r["report"]
        t = rep["timings_s"]
        dur = rep["input"]["audio"]["duration_s"]
        ident = t.get("identity_wait_after_render", 0.0)
        rows.append([
            f"{image.stem[:18]} + {audio.stem[:18]}", f"{dur:.1f}", str(rep["video"]["frames"]),
            "x".join(map(str, rep["video"]["size"])), f"{t.get('face_analysis', 0):.2f}",
            f"{t.get('audio_decode', 0) + t.get('speech_analysis', 0):.2f}", f"{t.get('motion', 0):.2f}",
            f"{t.get('render_encode', 0):.2f}", f"{ident:.2f}", f"{t.get('render_encode', 0) / dur:.2f}",
            f"{ident / dur:.2f}", f"{rep['realtime_factor']:.2f}", f"{r['peak_mb']:.0f}",
        ])
        summ = (rep.get("identity") or {}).get("summary", {})
        rows[-1].append(f"{summ.get('mean_cosine', float('nan')):.3f}/{summ.get('min_cosine', float('nan')):.3f}")
    cols.append("identity mean/min")
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"\ncpus: {os.cpu_count()}  ·  times in seconds  ·  RTF = seconds of work per second of audio"
          "\n* identity = extra wait for scoring after the last frame was encoded (scoring runs beside rendering)"
          "\ntargets: RTF render ≤ 0.50, RTF identity ≤ 1.00, peak < 2048 MB for a 60 s clip")
    if quality_rows:
        from ..evaluation import VideoEvaluation
        print("\nQuality, measured on the decoded videos (python -m portraittalk evaluate):")
        print(VideoEvaluation.markdown_header())
        print("\n".join(quality_rows))
    md = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if quality_rows:
        from ..evaluation import VideoEvaluation
        md += ["", VideoEvaluation.markdown_header(), *quality_rows]
    (work / "bench.md").write_text("\n".join(md) + "\n")
    (work / "bench.json").write_text(json.dumps(
        {"columns": cols, "rows": rows, "runs": [{k: v for k, v in r.items() if k != "quality_row"} for r in results]},
        indent=1, default=str))
    print(f"videos, bench.md and bench.json in {work}")
    return 0
