"""The run report (SCORES.json) of a real render: its layout, its figures, and its download form."""

from __future__ import annotations

import json

import pytest

from portraittalk.io.video import probe_video
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES

SCORES_KEYS = ["video", "identity", "timings_s", "realtime_factor", "input", "settings", "warnings", "engine", "prompt"]


@pytest.fixture(scope="module")
def result(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "talk.mp4"
    return pipeline.render(EXAMPLES / "grace_hopper.jpg", EXAMPLES / "librivox_0880.wav", out,
                           RenderSettings(max_size=256, fps=10, prompt="smiling"))


def test_the_report_describes_the_video_that_was_written(result, tmp_path):
    rep = result.report
    assert list(rep) == SCORES_KEYS
    info = probe_video(result.video_path)
    assert rep["video"]["path"] == str(result.video_path)
    assert rep["video"]["frames"] == info.n_frames == result.motion.n_frames
    assert rep["video"]["size"] == [info.width, info.height]
    assert rep["video"]["duration_s"] == round(info.n_frames / 10, 3)
    assert rep["engine"] == "warp" and rep["settings"]["prompt"] == "smiling"
    assert "smil" in rep["prompt"]["summary"]
    # Seconds of work per second of speech.
    assert abs(rep["realtime_factor"] * rep["input"]["audio"]["duration_s"] - rep["timings_s"]["total"]) < 0.01
    frames = rep["identity"]["frames"]
    assert [f["frame"] for f in frames] == list(range(info.n_frames))
    assert all(f["time_s"] == round(f["frame"] / 10, 3) for f in frames)
    assert rep["identity"]["summary"]["frames"] == len(frames)
    # SCORES.json is the report as it is.
    assert json.loads(result.write_scores(tmp_path / "scores.json").read_text()) == json.loads(json.dumps(rep))


def test_the_download_names_the_video_by_file_name_only(result):
    download = result.run_report.for_download("portraittalk.mp4")
    assert "path" not in download["video"] and download["video"]["file"] == "portraittalk.mp4"
    assert {k: v for k, v in download["video"].items() if k != "file"} == \
        {k: v for k, v in result.report["video"].items() if k != "path"}
    assert {k: v for k, v in download.items() if k != "video"} == \
        {k: v for k, v in result.report.items() if k != "video"}
