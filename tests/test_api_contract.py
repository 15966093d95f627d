"""The app keeps its own API contract (README › API).

Every value the schema (``client.view_api()``) advertises is accepted, in the form it is
advertised; every value that is no number at all gets a sentence like the page's, through
gradio_client and through plain HTTP (JSON NaN and Infinity); a picture too large to
decode gets the same sentence in the app as on the command line; /compare is bounded like
the speech a render takes, and says its limit; an extra reference photo of someone else
is left out of the identity reference, with a warning, in the pipeline, the CLI and the app.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from portraittalk.io.audio import load_audio, write_wav
from portraittalk.io.video import probe_video
from portraittalk.settings import RenderSettings
from portraittalk.voices import VOICES

from . import faults
from .conftest import REPO, example_file, free_port

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SIZE = 256
LIMIT_S = 2.0  # this server's speech limit, so also its limit for videos to compare
PORTRAIT_SIDE = 600  # grace_hopper.jpg is 512×600: never enlarged


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    clip = load_audio(example_file("librivox_0880.wav"))
    return write_wav(tmp_path_factory.mktemp("api_speech") / "speech.wav", clip.samples[: int(1.5 * clip.sample_rate)],
                     clip.sample_rate)


@pytest.fixture(scope="module")
def app_server(pipeline, tmp_path_factory):
    if not (REPO / "app.py").is_file():
        pytest.skip("app.py is not in this checkout")
    sys.path.insert(0, str(REPO))
    import app
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    service = RenderService(pipeline, ServerSettings(max_audio_seconds=LIMIT_S, result_cache_entries=8,
                                                     result_cache=tmp_path_factory.mktemp("api_results")))
    demo = app.build_demo(service)
    _, url, _ = app.launch(demo, service.settings, server_name="127.0.0.1", server_port=free_port(),
                           prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False), demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return app_server[0]


def app_error(call) -> str:
    """The sentence an API client gets for a refused request: one line, no Python internals."""
    with pytest.raises(AppError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message.strip() and "Traceback" not in message and "upstream" not in message, message
    return message


# ------------------------------------------------------------------------------------------
# The schema's own values are accepted; anything else gets a sentence
# ------------------------------------------------------------------------------------------
def test_every_value_the_schema_advertises_is_accepted(client, speech):
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/render"]["parameters"]
    advertised = {p["parameter_name"]: p["type"]["enum"] for p in params if "enum" in p["type"]}
    assert set(advertised) == {"max_size", "engine", "voice", "language"}
    assert set(advertised["language"]) == set(RenderSettings.offered()["language"].choices)  # "" = detected
    assert [int(v) for v in advertised["max_size"]] == [256, 384, 512, 640, 768, 1024]
    assert set(advertised["voice"]) <= set(VOICES)  # every voice offered is one the synthesiser reads
    portrait = handle_file(str(example_file("grace_hopper.jpg")))
    for k, value in enumerate(advertised["max_size"]):
        given = str(value) if k % 2 == 0 else int(value)  # as the schema's type says (text), and as its list shows it
        video, report = client.predict(portrait, handle_file(str(speech)), api_name="/render", max_size=given,
                                       engine=advertised["engine"][0])
        assert max(report["video"]["size"]) == min(int(value), PORTRAIT_SIDE), (given, report["video"]["size"])
        assert probe_video(video).n_frames == report["video"]["frames"] == 38


BAD_VALUES = [
    ("seed", "abc", "whole number from 0 up"), ("blink_rate", "lots", "a number from 0 to 2"),
    ("fps", "fast", "a number from 10 to 30"), ("head_motion", [1, 2], "a number from 0 to 2"),
    ("max_size", "2048", "one of 256, 384, 512, 640, 768, 1024"), ("max_size", "huge", "one of 256"),
    ("engine", "gif", "one of warp"),
]


@pytest.mark.parametrize("name,value,allowed", BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES])
def test_a_value_the_page_could_not_send_gets_a_sentence(client, speech, name, value, allowed):
    message = app_error(lambda: client.predict(handle_file(str(example_file("grace_hopper.jpg"))),
                                               handle_file(str(speech)), api_name="/render", **{name: value}))
    assert message.startswith(f"The setting '{name}' needs ") and allowed in message, message
    assert message.endswith("is not a value it takes.") or message.endswith("is not a number it takes.")


@pytest.mark.parametrize("seed", ["NaN", "Infinity", "1e999"])
def test_json_nan_and_infinity_get_a_sentence_over_plain_http(client, speech, seed):
    """gradio_client cannot send them; a JSON client can (Python's json reads them)."""
    import httpx

    url = client.src.rstrip("/") + "/"

    def upload(path: Path) -> dict:
        stored = httpx.post(url + "gradio_api/upload", files=[("files", open(path, "rb"))], timeout=60).json()[0]
        return {"path": stored, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/render"]["parameters"]
    given = {"portrait": upload(example_file("grace_hopper.jpg")), "audio": upload(speech), "seed": "SEED",
             "max_size": SIZE}
    data = [given.get(p["parameter_name"], p.get("parameter_default")) for p in params]
    body = json.dumps({"data": data}).replace('"SEED"', seed)
    event = httpx.post(url + "gradio_api/call/render", content=body, headers={"content-type": "application/json"},
                       timeout=60).json()["event_id"]
    answer = httpx.get(url + f"gradio_api/call/render/{event}", timeout=300).text
    kind, payload = answer.strip().split("\n", 1)
    assert kind == "event: error"
    error = json.loads(payload.removeprefix("data: "))["error"]
    assert error == f"The setting 'seed' needs a whole number from 0 up; {'nan' if seed == 'NaN' else 'inf'} " \
                    "is not a number it takes."


# ------------------------------------------------------------------------------------------
# A picture too large to decode: the CLI's sentence in the app
# ------------------------------------------------------------------------------------------
def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def _jpeg_claiming(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("name,make", [("bomb.png", lambda: _png_claiming(30000, 30000)),
                                       ("huge.jpg", lambda: _jpeg_claiming(60000, 60000))])
def test_a_picture_too_large_gets_the_same_sentence_in_the_app_and_the_cli(client, speech, tmp_path, name, make):
    picture = tmp_path / name
    picture.write_bytes(make())
    in_app = app_error(lambda: client.predict(handle_file(str(picture)), handle_file(str(speech)), api_name="/render"))
    done = faults.run("portraittalk", "render", "--image", str(picture), "--audio", str(speech),
                      "--out", str(tmp_path / "talk.mp4"))
    assert done.returncode == 2 and done.stderr.strip() == f"error: {in_app}", (done.stderr, in_app)
    assert f"'{name}' is too large" in in_app


# ------------------------------------------------------------------------------------------
# /compare is bounded
# ------------------------------------------------------------------------------------------
def test_compare_is_bounded_like_speech_and_says_its_limit(client, app_server, pipeline, tmp_path):
    long_video = tmp_path / "three_seconds.mp4"
    pipeline.render(example_file("grace_hopper.jpg"), example_file("librivox_0880.wav"), long_video,
                    RenderSettings(max_size=SIZE, score_identity=False))
    assert probe_video(long_video).duration_s > LIMIT_S + 0.5
    message = app_error(lambda: client.predict(handle_file(str(example_file("grace_hopper.jpg"))),
                                               handle_file(str(long_video)), handle_file(str(long_video)),
                                               api_name="/compare"))
    assert message.startswith("Video A ('three_seconds.mp4') is 3.0 s long but the limit is 2.0 s"), message
    labels = [b.label for b in app_server[1].blocks.values() if str(getattr(b, "elem_id", "")).startswith("pt-compare-")
              and getattr(b, "label", None) and b.label.startswith("Video ")]
    assert labels == ["Video A (up to 2 s)", "Video B (up to 2 s)"]


# ------------------------------------------------------------------------------------------
# Extra references: someone else is left out, with a warning
# ------------------------------------------------------------------------------------------
def _same_person_copy(folder: Path) -> Path:
    """Another picture of the same person: the portrait smaller, recompressed and shifted."""
    photo = Image.open(example_file("grace_hopper.jpg")).convert("RGB")
    path = folder / "hopper_again.jpg"
    photo.crop((20, 10, 500, 590)).resize((360, 435)).save(path, quality=70)
    return path


def test_a_reference_of_someone_else_is_left_out_with_a_warning(pipeline, client, speech, tmp_path):
    settings = RenderSettings(max_size=SIZE)
    portrait, stranger = example_file("grace_hopper.jpg"), example_file("astronaut_eileen_collins.jpg")
    alone = pipeline.render(portrait, speech, tmp_path / "alone.mp4", settings)
    mixed = pipeline.render(portrait, speech, tmp_path / "mixed.mp4", settings,
                            references=[stranger, _same_person_copy(tmp_path)])
    warning = ("The extra reference portrait 'astronaut_eileen_collins.jpg' shows someone else than the portrait "
               "(face distance ")
    assert [w for w in mixed.warnings if "reference" in w] == [w for w in mixed.warnings if w.startswith(warning)]
    assert len([w for w in mixed.warnings if w.startswith(warning)]) == 1
    assert not [w for w in alone.warnings if "reference" in w]
    # The same person's copy is kept (the reference moves a little); the stranger is not blended in.
    only_same = pipeline.render(portrait, speech, tmp_path / "same.mp4", settings,
                                references=[_same_person_copy(tmp_path)])
    assert [f.distance for f in mixed.identity.frames] == [f.distance for f in only_same.identity.frames]
    assert [f.distance for f in mixed.identity.frames] != [f.distance for f in alone.identity.frames]

    done = faults.run("portraittalk", "render", "--image", str(portrait), "--audio", str(speech), "--out",
                      str(tmp_path / "cli.mp4"), "--reference", str(stranger), "--max-size", str(SIZE))
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "reference" in line] == \
        [line for line in done.stderr.splitlines() if line.startswith(f"warning: {warning}")] != []

    _, report = client.predict(handle_file(str(portrait)), handle_file(str(speech)), api_name="/render",
                               references=[handle_file(str(stranger))], max_size=SIZE)
    assert any(w.startswith(warning) for w in report["warnings"]), report["warnings"]
