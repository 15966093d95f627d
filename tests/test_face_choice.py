"""Choosing the face that talks in a photo with two faces: the chosen face's mouth moves on the
re-detected output frames while the other stays still, the report names it and scores it, the
page's preview numbers the faces and a click chooses one; bad numbers are one sentence in the
pipeline, the CLI and the app."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from portraittalk.analysis.face import faces_left_to_right, mouth_gap_ratio
from portraittalk.errors import InputError
from portraittalk.io.image import load_portrait
from portraittalk.io.video import read_frames
from portraittalk.settings import RenderSettings

from .conftest import EXAMPLES, REPO


@pytest.fixture(scope="module")
def two_faces(generated):
    return generated.path("two_faces.jpg")


@pytest.fixture(scope="module")
def second_face_render(pipeline, two_faces, tmp_path_factory):
    """Grace Hopper (face 1, the larger, on the left) and Eileen Collins (face 2): face 2 talks."""
    out = tmp_path_factory.mktemp("face_choice") / "face2.mp4"
    settings = RenderSettings(face=2, transcript=(EXAMPLES / "librivox_0880.txt").read_text(), seed=2)
    return pipeline.render(two_faces, EXAMPLES / "librivox_0880.wav", out, settings)


def test_the_chosen_face_talks_and_the_other_stays_still(second_face_render, two_faces, face_analyzer):
    rgb = load_portrait(two_faces).rgb
    boxes = [f.box for f in faces_left_to_right(face_analyzer.detect_faces(rgb))]
    assert len(boxes) == 2
    gaps = np.array([[mouth_gap_ratio(face_analyzer.mesh_in_box(frame, box)) for box in boxes]
                     for frame in read_frames(second_face_render.video_path)])
    low, high = np.percentile(gaps, [5, 95], axis=0)
    print(f"\nmouth opening (5th–95th percentile): face 1 {low[0]:.3f}–{high[0]:.3f}, face 2 {low[1]:.3f}–{high[1]:.3f}")
    assert high[1] - low[1] > 0.2  # face 2 opens and closes its mouth
    assert high[0] - low[0] < 0.01  # face 1 keeps the portrait's closed mouth
    assert abs(np.median(gaps[:, 0]) - mouth_gap_ratio(face_analyzer.analyze(rgb, 1).landmarks)) < 0.01


def test_the_report_names_the_chosen_face_and_scores_it(second_face_render, two_faces, face_analyzer):
    report = second_face_render.report
    face = report["input"]["face"]
    assert (face["number"], face["faces_found"]) == (2, 2)
    x0, y0, x1, y1 = face["box"]
    detected = faces_left_to_right(face_analyzer.detect_faces(load_portrait(two_faces).rgb))[1].box
    assert x0 < (detected[0] + detected[2]) / 2 < x1 and y0 < (detected[1] + detected[3]) / 2 < y1
    assert x0 > load_portrait(two_faces).rgb.shape[1] / 2  # Collins, on the right
    assert report["settings"]["face"] == 2
    # Identity is measured on face 2 against face 2: the same person in every frame.
    summary = report["identity"]["summary"]
    assert summary["frames_within_threshold"] == summary["frames"] == report["video"]["frames"]
    assert not any("faces were found" in w for w in report["warnings"])


def test_a_face_number_that_does_not_exist_through_pipeline_and_cli(pipeline, two_faces, tmp_path):
    with pytest.raises(InputError, match="There is no face 3 in the portrait: it has 2 faces, numbered 1 to 2"):
        pipeline.render(two_faces, EXAMPLES / "librivox_0880.wav", tmp_path / "x.mp4", RenderSettings(face=3))
    done = subprocess.run([sys.executable, "-m", "portraittalk", "render", "--image", str(two_faces),
                           "--audio", str(EXAMPLES / "librivox_0880.wav"), "--out", str(tmp_path / "x.mp4"),
                           "--face", "3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: There is no face 3 in the portrait: it has 2 faces, numbered 1 to 2 from the left; choose one of them."]
    assert not (tmp_path / "x.mp4").exists()


def test_the_preview_numbers_the_faces_and_a_click_chooses_one(pipeline, two_faces, tmp_path):
    from portraittalk.server.faces import CHOSEN, PREVIEW_SIZE
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    service = RenderService(pipeline, ServerSettings(result_cache=tmp_path))
    rgb = load_portrait(two_faces, max_size=PREVIEW_SIZE).rgb
    boxes = service.face_boxes(rgb)
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes

    def outlined(preview, box) -> bool:
        x0, y0, x1, y1 = box
        edge = preview[(y0 + y1) // 2, x0]  # the middle of the box's left side
        return bool(np.abs(edge.astype(int) - CHOSEN).max() <= 2)

    preview, number = service.faces_shown(str(two_faces))
    assert number == 0 and outlined(preview, boxes[0]) and not outlined(preview, boxes[1])  # the largest
    preview, number = service.faces_shown(str(two_faces), click=((bx0 + bx1) / 2, (by0 + by1) / 2))
    assert number == 2 and outlined(preview, boxes[1]) and not outlined(preview, boxes[0])
    # A click on face 1's number tag, just above its box, chooses face 1.
    preview, number = service.faces_shown(str(two_faces), click=(ax0 + 5, ay0 - 5))
    assert number == 1 and outlined(preview, boxes[0])
    # The number typed in: face 2; a number with no face shows no preview (the render says why).
    assert service.faces_shown(str(two_faces), 2)[1] == 2
    assert service.faces_shown(str(two_faces), 5) == (None, 0)
    assert service.faces_shown(None) == (None, 0)
    # The preview's numbers match the pixels the page sends.
    assert preview.shape == rgb.shape and max(preview.shape[:2]) == PREVIEW_SIZE


def test_the_render_api_takes_the_face(pipeline, two_faces, tmp_path):
    """/render with face=2 (and a typed text): the report names face 2; face 3 is one sentence."""
    pytest.importorskip("gradio_client")
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    from .test_app import start

    client, demo = start(RenderService(pipeline, ServerSettings(result_cache=tmp_path)))
    try:
        _, report = client.predict(handle_file(str(two_faces)), None, text="Bob, bring me the map.", face=2,
                                   max_size=256, api_name="/render")
        assert report["input"]["face"]["number"] == 2 and report["input"]["speech"]["source"] == "synthesised"
        with pytest.raises(AppError, match="There is no face 3 in the portrait") as err:
            client.predict(handle_file(str(two_faces)), None, text="Bob.", face=3, max_size=256, api_name="/render")
        assert "Traceback" not in str(err.value)
    finally:
        demo.close()
