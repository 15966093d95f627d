"""Time the diffusion engine: ``python -m portraittalk.engines.diffusion.benchmark [--weights X | --tiny]``.

Prints seconds per generated frame (after one warm-up run) for the given weights on the given
device, so speed claims come from a measurement on the machine that will serve them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m portraittalk.engines.diffusion.benchmark",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="checkpoint folder or Hub id (default: PORTRAITTALK_WEIGHTS)")
    p.add_argument("--tiny", action="store_true", help="toy random components (checks the code path, not speed)")
    p.add_argument("--device", default=None)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, nargs=3, default=(3.5, 2.0, 3.5), metavar=("AUDIO", "IDENTITY", "TEXT"))
    args = p.parse_args(argv)

    import torch

    from .guidance import guidance_branches
    from .pipeline import PortraitTalkPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        from .tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
    else:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        pipe = PortraitTalkPipeline.from_pretrained(args.weights, torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    size = int(pipe.config["resolution"])
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    fps = 25.0
    audio = (0.1 * rng.standard_normal(int(args.frames / fps * 16000) + 16000)).astype(np.float32)
    audio_g, identity_g, text_g = args.guidance
    kw = dict(fps=fps, prompt="a person talking", num_inference_steps=args.steps, audio_guidance_scale=audio_g,
              identity_guidance_scale=identity_g, text_guidance_scale=text_g)

    pipe([reference], audio, num_frames=min(args.frames, int(pipe.config["clip_length"])), **kw)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    pipe([reference], audio, num_frames=args.frames, **kw)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    passes = len(guidance_branches(identity_g, audio_g, text_g))
    print(f"{device}: {args.frames} frames at {size}px, {args.steps} steps, {passes} guidance passes: "
          f"{seconds:.1f} s ({seconds / args.frames:.3f} s per frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
