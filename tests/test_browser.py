"""The Space in a real browser: headless Chromium opens the page, uploads a portrait and a
speech clip, presses Generate and waits for the video to play.

Needs the Debian `chromium` package (/usr/bin/chromium) and the `playwright` Python package,
which drives that browser (it never downloads one). Skips with the reason when either is
missing. Screenshots (1280×800 desktop and 390×844 phone) are written to
$PORTRAITTALK_SCREENSHOTS, or to pytest's temporary folder, whose path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import wave
from pathlib import Path

import pytest

from .conftest import EXAMPLES, REPO, SAMPLES, example_file, free_port

sys.path.insert(0, str(REPO))

CHROMIUM = os.environ.get("PORTRAITTALK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Running as root in a container needs --no-sandbox; the rest keeps Chromium off the network.
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
RENDER_TIMEOUT_MS = 240_000  # a 3 s clip renders in ~10 s on two idle cores; leave room for a busy CI

if not Path(CHROMIUM).is_file():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    target = os.environ.get("PORTRAITTALK_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {path}")
    return path


@pytest.fixture(scope="module")
def app_url(pipeline, tmp_path_factory):
    import app
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    service = RenderService(pipeline, ServerSettings(result_cache=tmp_path_factory.mktemp("results"),
                                                     result_cache_entries=8))
    demo = app.build_demo(service)
    _, url, _ = app.launch(demo, service.settings, server_name="127.0.0.1", server_port=free_port(),
                           prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.wait_for_selector("#pt-generate", timeout=60_000)
    return page


def upload_and_generate(page, portrait: Path, clip: Path) -> None:
    page.locator("#pt-portrait input[type=file]").set_input_files(str(portrait))
    page.locator("#pt-audio input[type=file]").set_input_files(str(clip))
    # The uploads are in once both players show them.
    page.wait_for_selector("#pt-portrait img[src*='/file=']", timeout=30_000)
    page.wait_for_selector("#pt-audio [data-testid='waveform-controls']", timeout=30_000)
    page.click("#pt-generate")


def test_visitor_uploads_generates_and_gets_a_playing_video(browser, app_url, screenshot_dir):
    from portraittalk.server.service import example_rows

    rows, _ = example_rows(EXAMPLES)
    if not rows:
        pytest.skip("no examples in this checkout")
    # The first example's files, uploaded by hand: a real render, which the example then reuses.
    portrait, clip, transcript = Path(rows[0][0]), Path(rows[0][1]), rows[0][2]
    with wave.open(str(clip)) as w:
        clip_seconds = w.getnframes() / w.getframerate()
    page = open_page(browser, app_url, 1280, 800)
    page.screenshot(path=str(screenshot_dir / "desktop_start.png"))
    page.fill("#pt-transcript textarea", transcript)
    upload_and_generate(page, portrait, clip)

    # The chosen face appears first, then the video.
    page.wait_for_selector("#pt-preview img", timeout=60_000)
    page.wait_for_selector("#pt-video video[src]", timeout=RENDER_TIMEOUT_MS)
    src = page.locator("#pt-video video").get_attribute("src")
    response = page.request.get(src)
    assert response.ok and response.body()[4:8] == b"ftyp"
    # The browser itself can play it: metadata loads and the duration is the clip's.
    duration = page.locator("#pt-video video").evaluate(
        """v => new Promise(done => {
               if (v.readyState >= 1) return done(v.duration);
               v.addEventListener('loadedmetadata', () => done(v.duration));
               v.addEventListener('error', () => done(-1));
           })""")
    assert duration == pytest.approx(clip_seconds, abs=0.15)

    n_frames = round(clip_seconds * 25)
    # The outputs arrive together but are drawn one after another: wait for the summary's words.
    page.locator("#pt-summary", has_text=f"of {n_frames} frames").wait_for(timeout=30_000)
    summary = page.locator("#pt-summary").inner_text()
    match = re.search(r"in (\d+) of (\d+) frames", summary)
    assert match and int(match.group(2)) == n_frames and int(match.group(1)) >= 0.9 * n_frames
    page.wait_for_selector("#pt-plot svg, #pt-plot canvas", timeout=30_000)
    downloads = page.locator("#pt-downloads").inner_text().replace("\n", "")  # name and extension sit apart
    for name in ("scores.csv", "scores.json", "motion.json"):
        assert name in downloads
    page.wait_for_timeout(1000)  # let the plot finish drawing before the picture is taken
    page.screenshot(path=str(screenshot_dir / "desktop_result.png"), full_page=True)
    page.close()

    # On a phone, a visitor taps the first example and gets its finished video without waiting.
    phone = open_page(browser, app_url, 390, 844)
    phone.screenshot(path=str(screenshot_dir / "phone_start.png"))
    phone.locator("#pt-examples button.gallery-item").first.click()
    phone.wait_for_selector("#pt-video video[src]", timeout=60_000)
    phone.locator("#pt-summary", has_text=f"of {n_frames} frames").wait_for(timeout=30_000)
    phone.wait_for_selector("#pt-plot svg, #pt-plot canvas", timeout=30_000)  # drawn from the cache too
    assert phone.locator("#pt-transcript textarea").input_value() == transcript
    phone.wait_for_timeout(1500)
    phone.screenshot(path=str(screenshot_dir / "phone_result_view.png"))
    phone.screenshot(path=str(screenshot_dir / "phone_result.png"), full_page=True)
    inputs_box = phone.locator("#pt-generate").bounding_box()
    video_box = phone.locator("#pt-video").bounding_box()
    assert video_box["y"] > inputs_box["y"]  # one column: the result comes below the inputs
    assert video_box["width"] <= 390
    phone.close()


def test_a_photo_without_a_face_shows_a_plain_sentence(browser, app_url, screenshot_dir, tmp_path):
    coffee = SAMPLES / "images" / "coffee_no_face.png"
    if not coffee.is_file():
        pytest.skip("shared/samples is not next to the checkout")
    page = open_page(browser, app_url, 1280, 800)
    upload_and_generate(page, coffee, example_file("librivox_0880.wav"))
    toast = page.get_by_text("No face was found in the portrait", exact=False)
    toast.first.wait_for(timeout=60_000)
    page.screenshot(path=str(screenshot_dir / "desktop_no_face.png"))
    body = page.locator("body").inner_text()
    assert "front-facing photo" in body
    assert "Traceback" not in body and "Exception" not in body
    assert page.locator("#pt-video video[src]").count() == 0
    page.close()


def test_visitor_types_a_sentence_chooses_a_face_and_gets_a_playing_video(browser, app_url, screenshot_dir,
                                                                           generated):
    """Two faces: a click on the right one makes it talk; the speech is typed, not recorded."""
    from portraittalk.voices import synthesize_speech

    sentence = "Maybe Bob will bring the map back by May."
    seconds = synthesize_speech(sentence, "heart").duration_s
    page = open_page(browser, app_url, 1280, 800)
    page.locator("#pt-portrait input[type=file]").set_input_files(str(generated.path("two_faces.jpg")))
    # Every face is outlined and numbered as soon as the photo is in; a click on face 2 chooses it.
    preview = page.locator("#pt-preview img")
    preview.wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('#pt-preview img').naturalWidth > 0")
    box = preview.bounding_box()
    natural = preview.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = max(natural[0] / box["width"], natural[1] / box["height"])  # the picture is fitted inside the box
    left = box["x"] + (box["width"] - natural[0] / scale) / 2
    top = box["y"] + (box["height"] - natural[1] / scale) / 2
    # Face 2 (Eileen Collins) sits in the right part of the picture, a third of the way down.
    page.mouse.click(left + 0.79 * natural[0] / scale, top + 0.5 * natural[1] / scale)
    page.wait_for_function("() => document.querySelector('#pt-face input').value === '2'", timeout=30_000)
    page.get_by_role("tab", name="… or type it").click()
    page.fill("#pt-say textarea", sentence)
    assert "characters" in page.locator("#pt-tab-type").inner_text()  # the length limit is said
    page.screenshot(path=str(screenshot_dir / "desktop_typed_two_faces.png"))
    page.click("#pt-generate")

    page.wait_for_selector("#pt-video video[src]", timeout=RENDER_TIMEOUT_MS)
    video = page.locator("#pt-video video")
    duration = video.evaluate("""v => new Promise(done => {
               if (v.readyState >= 1) return done(v.duration);
               v.addEventListener('loadedmetadata', () => done(v.duration));
               v.addEventListener('error', () => done(-1));
           })""")
    assert duration == pytest.approx(seconds, abs=0.15)
    # It plays: time runs on once started.
    playing = video.evaluate("""v => new Promise(done => {
               v.muted = true;
               v.play().then(() => setTimeout(() => done([v.paused, v.currentTime]), 800), () => done([true, 0]));
           })""")
    assert not playing[0] and playing[1] > 0.2
    page.locator("#pt-notes", has_text="timed by the voice").wait_for(timeout=30_000)
    downloads = page.locator("#pt-downloads").inner_text().replace("\n", "")
    assert "speech.wav" in downloads and "scores.json" in downloads
    page.screenshot(path=str(screenshot_dir / "desktop_typed_result.png"), full_page=True)
    page.close()
