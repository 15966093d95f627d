"""Long input: memory flat in the clip length, over-long uploads refused cheaply, no leftovers.

The full figures (10 s, 60 s and 180 s at 512 px with identity scoring) come from
``benchmarks/long_audio_memory.py``; here a bounded version of the same property runs in
child processes so each peak is that render's own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from portraittalk.errors import InputError
from portraittalk.io.audio import ANALYSIS_RATE, load_audio, write_wav
from portraittalk.io.video import probe_video
from portraittalk.settings import MAX_AUDIO_SECONDS, RenderSettings

from .conftest import EXAMPLES, REPO

BENCHMARK = REPO / "benchmarks" / "long_audio_memory.py"


def benchmark_module():
    if not BENCHMARK.is_file():
        pytest.skip("benchmarks/long_audio_memory.py is not in this checkout")
    if not sorted(EXAMPLES.glob("librivox_*.wav")):
        pytest.skip("examples/librivox_*.wav are not in this checkout")
    spec = importlib.util.spec_from_file_location("long_audio_memory", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.xfail(strict=False, reason="about 9 MB stays allocated per 24 s speech window since recognition runs "
                   "window by window (30 s → 150 s at 128 px: peak 676 → 739 MB, level 541 → 582 MB); "
                   "12 s → 60 s measures +31 to +52 MB against the 50 MB bound")
def test_peak_memory_does_not_grow_with_the_clip_length():
    bench = benchmark_module()
    # Both long enough to be analysed window by window beside the render, as every recording over
    # 8 s is (a shorter one is recognised whole before its first frame, with less alongside it).
    short = bench.measure(12, max_size=128, identity=False, timeout_s=600)
    long = bench.measure(60, max_size=128, identity=False, timeout_s=600)
    assert (short["frames"], long["frames"]) == (300, 1500)
    # While frames stream, memory stays level from the first quarter of the clip to its end.
    assert long["rss_at_mb"]["100%"] - long["rss_at_mb"]["25%"] < 30, long
    # Five times the speech may cost at most 50 MB more at the peak (about 1.5 MB per second
    # of speech: the 10-minute limit then stays within a gigabyte).
    assert long["peak_rss_mb"] - short["peak_rss_mb"] < 50, (short, long)


_REFUSE_LONG = """
import json, sys
from portraittalk.io.audio import load_audio
from portraittalk.errors import InputError
try:
    load_audio(sys.argv[1], max_duration_s=float(sys.argv[2]))
    message = None
except InputError as err:
    message = str(err)
# VmHWM: this process's own peak (ru_maxrss would include the parent's, carried across exec).
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"message": message, "peak_mb": peak_kb / 1024}))
"""


def test_an_hour_long_upload_is_refused_without_decoding_it_all(tmp_path):
    # One hour of quiet hiss at 8 kHz, 16-bit: 58 MB on disk, 230 MB if decoded to floats.
    hiss = (np.random.default_rng(0).standard_normal(3600 * 8000) * 0.001).astype(np.float32)
    path = write_wav(tmp_path / "meeting_recording.wav", hiss, 8000)
    del hiss
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _REFUSE_LONG, str(path), str(MAX_AUDIO_SECONDS)],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["message"] == ("The recording is 60:00 min long but the limit is 10:00 min; "
                                 "please trim it or upload a shorter clip.")
    # Only a little past the limit is decoded: 601 s of 16 kHz floats is 38 MB.
    assert result["peak_mb"] < 250, result


def _float_speech(path: Path) -> Path:
    """The example speech as a 32-bit float WAV with NaN samples (muxed from a cleaned copy)."""
    x = load_audio(EXAMPLES / "librivox_0880.wav").samples.copy()
    x[::500] = np.nan
    data = x.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, ANALYSIS_RATE, ANALYSIS_RATE * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
                     + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


def _our_temp_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("portraittalk-sound-*")}


def test_finished_and_cancelled_renders_leave_no_temporary_files(pipeline, tmp_path):
    if not (EXAMPLES / "librivox_0880.wav").is_file():
        pytest.skip("examples/librivox_0880.wav is not in this checkout")
    audio = _float_speech(tmp_path / "float_speech.wav")
    before = _our_temp_dirs()
    out_dir = tmp_path / "videos"
    settings = RenderSettings(max_size=128, score_identity=False)

    done = pipeline.render(EXAMPLES / "grace_hopper.jpg", audio, out_dir / "done.mp4", settings)
    assert probe_video(done.video_path).audio_codec == "aac"

    class Cancelled(Exception):
        pass

    def cancel_midway(stage: str, fraction: float, message: str) -> None:
        if stage == "render" and fraction > 0.5:
            raise Cancelled  # what a visitor closing the page does to a gradio request

    with pytest.raises(Cancelled):
        pipeline.render(EXAMPLES / "grace_hopper.jpg", audio, out_dir / "cancelled.mp4", settings, cancel_midway)
    with pytest.raises(InputError):
        pipeline.render(EXAMPLES / "grace_hopper.jpg", tmp_path / "missing.wav", out_dir / "failed.mp4", settings)

    assert sorted(p.name for p in out_dir.iterdir()) == ["done.mp4"]  # no half-written video, no temp file
    assert _our_temp_dirs() <= before
