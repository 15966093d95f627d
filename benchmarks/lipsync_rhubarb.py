"""Lip sync measured against Rhubarb Lip Sync's mouth shapes, on the landmarks of the output video.

    python benchmarks/lipsync_rhubarb.py                         # every dev clip, grace_hopper at 512 px
    python benchmarks/lipsync_rhubarb.py --repo ../main          # the same measure of another checkout
    python benchmarks/lipsync_rhubarb.py --clips jfk_inaugural_en_16k --json out.json --keep videos/

A development tool, not a test: it reads ``../shared`` (the dev clips in ``samples/audio``, Rhubarb's
timelines in ``samples/rhubarb``, the comparator ``tools/rhubarb_compare.py``) at run time.

For each clip, with no transcript:

1. the speech is analysed on its own (wall and process CPU seconds per audio second: the
   recogniser's threads count in the CPU figure), then rendered (examples/grace_hopper.jpg, 512 px,
   no identity scoring);
2. the face mesh is found again on every decoded frame, and the mouth opening is the inner-lip gap
   over the mouth width (``mouth_gap_ratio``);
3. ``rhubarb_compare.compare`` scores that opening against Rhubarb's timeline: English clips against
   the ``.pocketsphinx.tsv`` (its English recogniser), the others against the ``.phonetic.tsv``
   (its language-independent one). Reported: agreement at offset 0, the best offset and its agreement;
4. bilabial closure: the share of Rhubarb's closed-lips cues (shape A: M, B, P) inside speech whose
   middle frame (±1) shows the lips together (gap < 0.06 of the mouth width). For the LibriVox
   examples, whose reference phone alignments ship with them, the same over their P/B/M phones.

Timing figures are noisy on a shared machine: take several runs and the medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CLOSED_GAP = 0.06
FPS = 25.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=HERE, help="the checkout whose portraittalk is measured")
    p.add_argument("--shared", type=Path, default=HERE.parent / "shared", help="the shared folder")
    p.add_argument("--clips", nargs="*", help="clip names (without .wav); default: all, plus the LibriVox examples")
    p.add_argument("--max-size", type=int, default=512)
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--keep", type=Path, help="keep the videos in this folder")
    return p.parse_args()


def comparator(shared: Path):
    spec = importlib.util.spec_from_file_location("rhubarb_compare", shared / "tools" / "rhubarb_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def openings(video: Path, box: tuple, face_analyzer) -> list[float]:
    from portraittalk.analysis.face import mouth_gap_ratio
    from portraittalk.io.video import read_frames

    return [mouth_gap_ratio(face_analyzer.mesh_in_box(frame, box)) for frame in read_frames(video)]


def closed_share(gaps: list[float], times: list[float]) -> tuple[int, int]:
    """(closed, total) over the frames showing ``times`` (±1 frame)."""
    shut = 0
    for t in times:
        i = int(t * FPS)
        shut += min(gaps[max(0, i - 1):i + 2]) < CLOSED_GAP
    return shut, len(times)


def main() -> int:
    args = parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    import numpy as np

    from portraittalk.analysis.speech import analyze_speech
    from portraittalk.io.audio import load_audio
    from portraittalk.pipeline import PortraitTalkPipeline
    from portraittalk.settings import RenderSettings

    rc = comparator(args.shared)
    audio_dir, rhubarb_dir = args.shared / "samples" / "audio", args.shared / "samples" / "rhubarb"
    examples = args.repo / "examples"
    clips = [(p.stem, p) for p in sorted(audio_dir.glob("*.wav"))]
    clips += [(p.stem, p) for p in sorted(examples.glob("librivox_*.wav"))]
    if args.clips:
        clips = [c for c in clips if c[0] in args.clips]
    pipeline = PortraitTalkPipeline()
    pipeline.warm_up(text_model=False)
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="lipsync-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, wav in clips:
        english = "_en_" in name or name.startswith("librivox")
        clip = load_audio(wav)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        analysis = analyze_speech(clip, FPS)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        video = out_dir / f"{name}.mp4"
        result = pipeline.render(examples / "grace_hopper.jpg", wav, video,
                                 RenderSettings(max_size=args.max_size, score_identity=False))
        gaps = openings(video, tuple(result.report["input"]["face"]["box"]), pipeline.face_analyzer)
        row = {"clip": name, "seconds": round(clip.duration_s, 2), "method": analysis.method,
               "language": analysis.language, "speech_wall_rtf": round(wall / clip.duration_s, 3),
               "speech_cpu_rtf": round(cpu / clip.duration_s, 3)}
        kind = "pocketsphinx" if english else "phonetic"
        tsv = rhubarb_dir / f"{name}.{kind}.tsv"
        if tsv.is_file():
            starts, shapes, end = rc.read_tsv(tsv)
            scored = rc.compare(rc.frame_labels(starts, shapes, end, FPS), np.array(gaps), 10)
            row.update(reference=kind, agreement_0=round(scored["at_offset_0"]["agreement"], 3),
                       best_offset=scored["best_offset"], agreement_best=round(scored["best"]["agreement"], 3))
            bounds = list(starts) + [end]
            cues = [(a + b) / 2 for a, b, s in zip(bounds, bounds[1:], shapes) if s == "A"]
            row["closed_rhubarb_A"] = closed_share(gaps, cues)
        phone_file = examples / f"{name}.phone.json"
        if phone_file.is_file():
            doc = json.loads(phone_file.read_text())
            mids = [p["b"] + p["d"] / 2 for w in doc["w"] for p in w["w"]
                    if p["t"].rstrip("012").upper() in ("P", "B", "M")]
            row["closed_reference_PBM"] = closed_share(gaps, mids)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def print_table(rows: list[dict]) -> None:
    def share(pair):
        return f"{pair[0]}/{pair[1]} ({pair[0] / pair[1]:.0%})" if pair and pair[1] else "–"

    print("\n| clip | s | method | language | vs Rhubarb | agreement @0 | best offset | agreement @best | "
          "closed (Rhubarb A) | closed (ref. P/B/M) | speech wall × | speech CPU × |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['seconds']} | {r['method']} | {r['language']} | {r.get('reference', '–')} | "
              f"{r.get('agreement_0', '–')} | {r.get('best_offset', '–')} | {r.get('agreement_best', '–')} | "
              f"{share(r.get('closed_rhubarb_A'))} | {share(r.get('closed_reference_PBM'))} | "
              f"{r['speech_wall_rtf']} | {r['speech_cpu_rtf']} |")
    english = [r["agreement_0"] for r in rows if "agreement_0" in r and r.get("reference") == "pocketsphinx"
               and "singing" not in r["clip"]]
    if english:
        print(f"\nEnglish speech vs pocketsphinx timelines: median agreement @0 {statistics.median(english):.3f}")


if __name__ == "__main__":
    sys.exit(main())
