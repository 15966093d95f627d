"""The Space's Compare tab: two videos measured against one portrait, through /compare.

Two short videos of the same portrait and clip are rendered directly with the app's own
pipeline: one whose mouth follows the speech (head held still) and one whose mouth stays
still (audio strength 0). The app, launched on loopback as in tests/test_app.py, must see
the same person in both and prefer the first one's lip sync.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file  # noqa: E402  (test_app skips when gradio_client is missing)
from gradio_client.exceptions import AppError  # noqa: E402

from tests.conftest import example_file
from tests.test_app import client, service  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="module")
def two_videos(service, tmp_path_factory):  # noqa: F811
    """(portrait, transcript, mouth moving video, mouth still video), rendered at 256 px."""
    from portraittalk.settings import RenderSettings

    portrait = example_file("grace_hopper.jpg")
    clip = example_file("librivox_0880.wav")
    transcript = example_file("librivox_0880.txt").read_text().strip()
    folder = tmp_path_factory.mktemp("compare")
    videos = []
    for name, setting in (("mouth_moves.mp4", dict(head_motion=0.0)), ("mouth_still.mp4", dict(audio_strength=0.0))):
        settings = RenderSettings(max_size=256, transcript=transcript, score_identity=False, **setting)
        service.pipeline.render(portrait, clip, folder / name, settings)
        videos.append(folder / name)
    return portrait, transcript, videos[0], videos[1]


def table_rows(table) -> dict[str, list[str]]:
    """Metric → [A, B, Better] from what gradio_client returns for a Dataframe."""
    data = table["data"] if isinstance(table, dict) else table.values.tolist()
    headers = table["headers"] if isinstance(table, dict) else list(table.columns)
    assert headers == ["Metric", "A", "B", "Better"]
    return {row[0]: list(row[1:]) for row in data}


def plot_points(plot) -> list[dict]:
    value = plot["value"] if isinstance(plot, dict) and "value" in plot else plot
    columns = [c if isinstance(c, str) else c[0] for c in value["columns"]]
    return [dict(zip(columns, row)) for row in value["data"]]


def test_compare_finds_the_same_person_and_the_video_that_speaks(client, two_videos):  # noqa: F811
    portrait, transcript, moving, still = two_videos
    table, plot, verdict = client.predict(handle_file(str(portrait)), handle_file(str(moving)),
                                          handle_file(str(still)), None, transcript, api_name="/compare")
    rows = table_rows(table)
    # Both videos show the portrait's person: high similarity, no frame beyond dlib's threshold.
    identity = [float(v) for v in rows["Identity: mean similarity"][:2]]
    assert min(identity) > 0.9 and abs(identity[0] - identity[1]) < 0.05
    assert rows["Identity: frames not the same person"][:2] == ["0.0 %", "0.0 %"]
    # The mouth that follows the speech wins the sync rows; the still mouth does not open at vowels.
    assert rows["Lip sync: confidence"][2] == "A"
    assert rows["Mouth open at open vowels"][2] == "A"
    assert float(rows["Lip sync: confidence"][0]) > float(rows["Lip sync: confidence"][1]) + 0.1
    assert "A is better in sync" in verdict or "A is better on both counts" in verdict

    points = plot_points(plot)
    series = {p["series"] for p in points}
    assert series == {"A identity", "A lip sync", "B identity", "B lip sync"}
    # One identity point per video frame (3 s at 25 fps), on one time axis.
    for name in ("A", "B"):
        times = [p["time_s"] for p in points if p["series"] == f"{name} identity"]
        assert len(times) == 75 and times == sorted(times) and times[-1] == pytest.approx(74 / 25)
    # The table's mean is the mean of the plotted identity curve.
    for column, name in enumerate(("A", "B")):
        curve = [p["value"] for p in points if p["series"] == f"{name} identity"]
        assert np.mean(curve) == pytest.approx(identity[column], abs=0.001)


def test_compare_explains_bad_inputs(client, two_videos, tmp_path):  # noqa: F811
    import imageio_ffmpeg

    portrait, _, moving, _ = two_videos
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    # A real video with nothing face-like in it: a moving grey gradient.
    faceless = tmp_path / "gradient.mp4"
    writer = imageio_ffmpeg.write_frames(str(faceless), (64, 64), fps=25, macro_block_size=16)
    writer.send(None)
    for i in range(10):
        writer.send(np.full((64, 64, 3), 40 + 10 * i, np.uint8) + np.arange(64, dtype=np.uint8)[None, :, None])
    writer.close()
    cases = [
        ((portrait, moving, notes), "Video B ('notes.txt') is not a video PortraitTalk can read"),
        ((portrait, moving, None), "Please add video B"),
        ((None, moving, moving), "Please add the portrait photo"),
        ((portrait, faceless, moving), "No face was found in any frame of 'gradient.mp4'"),
    ]
    for (image, a, b), expected in cases:
        args = [handle_file(str(x)) if x is not None else None for x in (image, a, b)]
        with pytest.raises(AppError) as err:
            client.predict(*args, None, "", api_name="/compare")
        message = str(err.value)
        assert expected in message, message
        assert "Traceback" not in message and "\n" not in message


def test_last_result_fills_a_slot_and_the_portrait_only_when_empty():
    from app import Handlers

    last_result = Handlers.last_result
    video, portrait = "/results/abc/portraittalk.mp4", "/uploads/grace_hopper.jpg"
    assert last_result(video, portrait, None) == (video, portrait)
    slot, kept = last_result(video, portrait, "/uploads/someone.jpg")
    assert slot == video and kept == {"__type__": "update"}  # the Compare tab's own portrait stays
    assert last_result(None, portrait, None) == ({"__type__": "update"}, {"__type__": "update"})


def test_compare_tab_in_a_browser(client, two_videos, tmp_path):  # noqa: F811
    """The Compare tab at 1280×800 after a comparison (skips without Chromium/playwright)."""
    import tests.test_browser as browser_test  # skips this test when the browser is missing

    portrait, transcript, moving, still = two_videos
    shots = Path(os.environ.get("PORTRAITTALK_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {shots}")
    with browser_test.playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_test.CHROMIUM, headless=True,
                                    args=browser_test.CHROMIUM_ARGS)
        try:
            page = browser_test.open_page(browser, client.src, 1280, 800)
            page.get_by_role("tab", name="Compare").click()
            page.locator("#pt-compare-portrait input[type=file]").set_input_files(str(portrait))
            page.locator("#pt-compare-a input[type=file]").set_input_files(str(moving))
            page.locator("#pt-compare-b input[type=file]").set_input_files(str(still))
            page.wait_for_selector("#pt-compare-a video[src]", timeout=30_000)
            page.wait_for_selector("#pt-compare-b video[src]", timeout=30_000)
            page.wait_for_selector("#pt-compare-portrait img[src*='/file=']", timeout=30_000)
            # The same words as the API test: both evaluations come from the app's cache.
            page.get_by_text("Speech and words (optional)").click()
            page.fill("#pt-compare-transcript textarea", transcript)
            page.click("#pt-compare")
            page.locator("#pt-verdict", has_text="better").wait_for(timeout=120_000)
            page.wait_for_selector("#pt-compare-plot svg, #pt-compare-plot canvas", timeout=30_000)
            assert "Identity: mean similarity" in page.locator("#pt-compare-table").inner_text()
            # "Play both" starts the two players together from the start.
            page.click("#pt-play-both")
            page.wait_for_timeout(600)
            playing = page.evaluate("""() => ['#pt-compare-a video', '#pt-compare-b video'].map(
                s => { const v = document.querySelector(s); return [v.paused, v.currentTime]; })""")
            assert all(not paused for paused, _ in playing), playing
            assert abs(playing[0][1] - playing[1][1]) < 0.25, playing
            page.evaluate("() => document.querySelectorAll('video').forEach(v => v.pause())")
            page.wait_for_timeout(800)  # let the plot finish drawing
            page.screenshot(path=str(shots / "desktop_compare.png"))
            page.screenshot(path=str(shots / "desktop_compare_full.png"), full_page=True)
        finally:
            browser.close()
