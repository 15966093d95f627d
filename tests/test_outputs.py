"""Writing outputs never destroys anything (README › Output files).

Through the pipeline and the command line: an output is a new path or an existing regular
file, never a device, a named pipe or a socket; a symlink is followed to its file and
stays; an output that is an input, or another output, is refused (compared as files, not
as spellings), and so is an unwritable place, all before any work; a write that fails late
(a full disk) ends in one sentence and leaves what was written complete; new files follow
the umask; names with a colon are files. The contact sheet tool follows the same rules.
Read-only folders and full disks are made by tests/faults.py, the same for every user.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portraittalk.errors import InputError
from portraittalk.io.audio import load_audio, write_wav
from portraittalk.io.video import probe_video
from portraittalk.settings import RenderSettings

from . import faults
from .conftest import REPO, example_file

SIZE = 256
FPS = 25
SECONDS = 1.5


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(portrait, 1.5 s of speech), copies of the examples in a folder of their own."""
    folder = tmp_path_factory.mktemp("output_inputs")
    clip = load_audio(example_file("librivox_0880.wav"))
    speech = write_wav(folder / "speech.wav", clip.samples[: int(SECONDS * clip.sample_rate)], clip.sample_rate)
    portrait = folder / "face.jpg"
    portrait.write_bytes(example_file("grace_hopper.jpg").read_bytes())
    return portrait, speech


@pytest.fixture(scope="module")
def video(pipeline, inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("output_video") / "talk.mp4"
    pipeline.render(*inputs, out, RenderSettings(max_size=SIZE, score_identity=False))
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(done: subprocess.CompletedProcess, phrase: str) -> str:
    """Exit code 2 and exactly one ``error:`` line holding ``phrase``; nothing on stdout."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in done.stderr and not done.stdout.strip()
    return lines[0]


def render_cli(inputs, out: Path | str, *extra: str, **options) -> subprocess.CompletedProcess:
    portrait, speech = inputs
    return faults.run("portraittalk", "render", "--image", str(portrait), "--audio", str(speech), "--out", str(out),
                      "--max-size", str(SIZE), "--no-identity", *extra, **options)


def assert_video(path: Path) -> None:
    """A complete MP4: every frame of the speech and its sound track."""
    info = probe_video(path)
    assert info.n_frames == round(SECONDS * FPS) and info.audio_codec == "aac"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------------
# Devices, pipes, sockets: refused; symlinks: followed
# ------------------------------------------------------------------------------------------
def _fifo(folder: Path) -> Path:
    path = folder / "pipe.mp4"
    os.mkfifo(path)
    return path


def _socket(folder: Path) -> Path:
    path = folder / "socket.mp4"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


def _link_to_fifo(folder: Path) -> Path:
    link = folder / "link.mp4"
    link.symlink_to(_fifo(folder))
    return link


NODES = {"fifo": (_fifo, "named pipe (FIFO)", stat.S_ISFIFO), "socket": (_socket, "a socket", stat.S_ISSOCK),
         "symlink_to_fifo": (_link_to_fifo, "named pipe (FIFO)", stat.S_ISFIFO)}


@pytest.mark.parametrize("kind", list(NODES))
def test_a_pipe_or_socket_is_never_replaced(pipeline, inputs, tmp_path, kind):
    make, phrase, still = NODES[kind]
    node = make(tmp_path)
    with pytest.raises(InputError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        pipeline.render(*inputs, node, RenderSettings(max_size=SIZE, score_identity=False))
    assert still(os.stat(node).st_mode)
    for option in ("--out", "--scores", "--motion"):
        args = ["--scores", str(tmp_path / "s.json")] if option == "--out" else [option, str(node)]
        out = node if option == "--out" else tmp_path / "v.mp4"
        refused(render_cli(inputs, out, *args), "which PortraitTalk never replaces")
        assert still(os.stat(node).st_mode) and not (tmp_path / "v.mp4").exists()


def test_a_character_device_is_never_replaced(pipeline, inputs, tmp_path, monkeypatch):
    """/dev/null and /dev/full are character devices; a real one is never touched here, so
    the file system reports one (os.stat's mode) for a file in a test folder."""
    device = tmp_path / "null"
    device.write_bytes(b"")
    real_stat = os.stat

    def fake_stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if os.fspath(path) == str(device):
            return os.stat_result((stat.S_IFCHR | 0o666, *st[1:10]))
        return st

    monkeypatch.setattr(os, "stat", fake_stat)
    with pytest.raises(InputError, match="is a character device, which PortraitTalk never replaces"):
        pipeline.render(*inputs, device, RenderSettings(max_size=SIZE, score_identity=False))
    monkeypatch.undo()
    assert device.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_symlink_is_followed_to_its_file_and_stays(inputs, tmp_path):
    target = tmp_path / "videos" / "kept.mp4"
    target.parent.mkdir()
    target.write_bytes(b"an older video")
    target.chmod(0o640)
    link = tmp_path / "latest.mp4"
    link.symlink_to(target)
    scores_link = tmp_path / "scores.json"
    scores_link.symlink_to(tmp_path / "videos" / "scores-real.json")  # dangling: the file is made
    done = render_cli(inputs, link, "--scores", str(scores_link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert_video(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    assert scores_link.is_symlink() and json.loads(scores_link.read_text())["video"]["frames"] == round(SECONDS * FPS)
    assert leftovers(tmp_path) == leftovers(target.parent) == []


# ------------------------------------------------------------------------------------------
# An output that is an input, or another output
# ------------------------------------------------------------------------------------------
def _hard_link(folder: Path, to: Path) -> Path:
    link = folder / "also_the_portrait.json"
    os.link(to, link)
    return link


def _symlink(folder: Path, to: Path) -> Path:
    link = folder / "link.mp4"
    link.symlink_to(to)
    return link


@pytest.mark.parametrize("case", ["out_is_the_audio", "out_is_the_portrait_spelt_otherwise", "out_links_to_audio",
                                  "scores_hard_link_to_portrait", "motion_is_the_transcript"])
def test_an_output_that_is_an_input_is_refused_before_any_work(pipeline, inputs, tmp_path, case):
    folder = tmp_path / "copies"
    folder.mkdir()
    portrait, speech = (folder / p.name for p in inputs)
    for source, copy in zip(inputs, (portrait, speech)):
        copy.write_bytes(source.read_bytes())
    transcript = folder / "words.txt"
    transcript.write_text("he was not an ill disposed young man")
    (folder / "sub").mkdir()
    out, extra = folder / "talk.mp4", []
    if case == "out_is_the_audio":
        out = speech
    elif case == "out_is_the_portrait_spelt_otherwise":
        out = folder / "sub" / ".." / portrait.name
    elif case == "out_links_to_audio":
        out = _symlink(folder, speech)
    elif case == "scores_hard_link_to_portrait":
        extra = ["--scores", str(_hard_link(folder, portrait))]
    else:
        extra = ["--transcript", f"@{transcript}", "--motion", str(transcript)]
    before = {p.name: digest(p) for p in folder.iterdir() if p.is_file()}
    done = faults.run("portraittalk", "render", "--image", str(portrait), "--audio", str(speech), "--out", str(out),
                      "--max-size", str(SIZE), "--no-identity", "--progress-log", str(tmp_path / "progress"), *extra)
    refused(done, "is the input file")
    assert {p.name: digest(p) for p in folder.iterdir() if p.is_file()} == before
    assert not (tmp_path / "progress").exists()  # refused before any work
    if not extra:
        with pytest.raises(InputError, match="is the input file"):
            pipeline.render(portrait, speech, out, RenderSettings(max_size=SIZE, score_identity=False))
        assert {p.name: digest(p) for p in folder.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("case", ["scores_is_the_video", "scores_is_the_motion_spelt_otherwise",
                                  "motion_links_to_the_scores"])
def test_two_outputs_on_one_file_are_refused(inputs, tmp_path, case):
    out, scores = tmp_path / "talk.mp4", tmp_path / "report.json"
    (tmp_path / "sub").mkdir()
    motion = {"scores_is_the_video": tmp_path / "motion.json",
              "scores_is_the_motion_spelt_otherwise": tmp_path / "sub" / ".." / "report.json",
              "motion_links_to_the_scores": _symlink(tmp_path, scores)}[case]
    if case == "scores_is_the_video":
        scores = out
    refused(render_cli(inputs, out, "--scores", str(scores), "--motion", str(motion)), "are the same file")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------------------------------
# Unwritable places, full disks
# ------------------------------------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write to (its mode, and tests/faults.py for root, whom modes don't stop)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    (folder / "old.json").write_text("{}")
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("where", ["out", "scores", "motion"])
def test_an_unwritable_folder_is_refused_before_any_work(inputs, tmp_path, read_only, where):
    paths = {"out": tmp_path / "talk.mp4", "scores": tmp_path / "scores.json", "motion": tmp_path / "motion.json"}
    paths[where] = read_only / ("talk.mp4" if where == "out" else "new.json")
    done = render_cli(inputs, paths["out"], "--scores", str(paths["scores"]), "--motion", str(paths["motion"]),
                      read_only=read_only)
    refused(done, f"The output folder '{read_only}' cannot be written to (read-only file system)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["read_only"]  # no video made first
    assert sorted(p.name for p in read_only.iterdir()) == ["old.json"]


def test_evaluate_json_refuses_a_folder_and_an_unwritable_place(video, inputs, tmp_path, read_only):
    portrait, _ = inputs
    for target, phrase in ((tmp_path, "is a folder; give a file name such as"),
                           (read_only / "report.json", "cannot be written to (read-only file system)"),
                           (video, "is the input file")):
        done = faults.run("portraittalk", "evaluate", "--video", str(video), "--image", str(portrait),
                          "--json", str(target), read_only=read_only)
        refused(done, phrase)
    assert_video(video)


def test_a_late_write_failure_says_so_and_keeps_what_was_written(inputs, tmp_path):
    """The disk fills after the video: one sentence, the video complete, the old scores intact."""
    scores = tmp_path / "scores.json"
    scores.write_text('{"old": true}')
    out = tmp_path / "talk.mp4"
    done = render_cli(inputs, out, "--scores", str(scores), full=tmp_path)
    refused(done, f"Writing '{scores}' failed (no space left on device); nothing was changed there")
    assert_video(out)
    assert json.loads(scores.read_text()) == {"old": True}
    assert leftovers(tmp_path) == []


def test_a_video_the_disk_cannot_hold_leaves_nothing_behind(inputs, tmp_path):
    """The file size limit (RLIMIT_FSIZE) stops ffmpeg in the middle of the video, as a full disk would."""
    portrait, speech = inputs
    limit = 20_000  # bytes: a few frames of the video

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "portraittalk", "render", "--image", str(portrait),
                           "--audio", str(speech), "--out", str(tmp_path / "talk.mp4"), "--max-size", str(SIZE),
                           "--no-identity"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=small_files)
    refused(done, "Encoding the video failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Modes, names
# ------------------------------------------------------------------------------------------
def test_outputs_follow_the_umask_and_a_replaced_file_keeps_its_mode(inputs, tmp_path):
    motion = tmp_path / "motion.json"
    motion.write_text("{}")
    motion.chmod(0o604)
    done = render_cli(inputs, tmp_path / "talk.mp4", "--scores", str(tmp_path / "scores.json"), "--motion",
                      str(motion), umask=0o027)
    assert done.returncode == 0, done.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"talk.mp4": 0o640, "scores.json": 0o640, "motion.json": 0o604}


def test_file_names_with_a_colon_are_files(pipeline, inputs, tmp_path, monkeypatch):
    """ffmpeg reads "pipe:0.wav" as its pipe protocol: such names must reach it as files."""
    portrait, speech = inputs
    (tmp_path / "pipe:0.wav").write_bytes(speech.read_bytes())
    (tmp_path / "file:me.jpg").write_bytes(portrait.read_bytes())
    done = faults.run("portraittalk", "render", "--image", "file:me.jpg", "--audio", "pipe:0.wav", "--out",
                      "pipe:1.mp4", "--scores", "http:scores.json", "--max-size", str(SIZE), "--no-identity",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_video(tmp_path / "pipe:1.mp4")
    assert json.loads((tmp_path / "http:scores.json").read_text())["input"]["audio"]["name"] == "pipe:0.wav"
    monkeypatch.chdir(tmp_path)
    clip = load_audio("pipe:0.wav")
    assert clip.duration_s == pytest.approx(SECONDS, abs=0.01)
    result = pipeline.render("file:me.jpg", "pipe:0.wav", "pipe:2.mp4",
                             RenderSettings(max_size=SIZE, score_identity=False))
    assert result.video_path == Path("pipe:2.mp4")
    assert_video(tmp_path / "pipe:2.mp4")


# ------------------------------------------------------------------------------------------
# The contact sheet tool
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["text_file", "recording", "missing", "crop_of_two_numbers", "crop_of_words",
                                  "empty_crop", "crop_outside", "not_a_picture_name", "sheet_is_the_video"])
def test_the_contact_sheet_refuses_bad_input_with_one_line(video, inputs, tmp_path, case):
    source, out, extra = video, tmp_path / "sheet.png", []
    phrase = {"text_file": "is not a video PortraitTalk can read", "recording": "is not a video PortraitTalk can read",
              "missing": "does not exist", "crop_of_two_numbers": "is not four whole numbers",
              "crop_of_words": "is not four whole numbers", "empty_crop": "is empty",
              "crop_outside": "lies outside the video's", "not_a_picture_name": "needs a .png or .jpg name",
              "sheet_is_the_video": "is the input file"}[case]
    if case == "text_file":
        source = tmp_path / "notes.mp4"
        source.write_text("a shopping list")
    elif case == "recording":
        source = inputs[1]
    elif case == "missing":
        source = tmp_path / "nothing.mp4"
    elif case.startswith("crop") or case == "empty_crop":
        extra = ["--crop", {"crop_of_two_numbers": "10,20", "crop_of_words": "left,top,right,bottom",
                            "empty_crop": "100,100,50,200", "crop_outside": "5000,5000,6000,6000"}[case]]
    elif case == "not_a_picture_name":
        out = tmp_path / "sheet.mp4"
    else:  # a sheet name that leads to the video itself
        out.symlink_to(video)
    before = digest(video)
    refused(faults.run("portraittalk.contact_sheet", str(source), str(out), *extra), phrase)
    assert digest(video) == before
    assert out.is_symlink() if case == "sheet_is_the_video" else not out.exists()


def test_the_contact_sheet_refuses_a_read_only_folder_and_writes_a_sheet(video, tmp_path, read_only):
    refused(faults.run("portraittalk.contact_sheet", str(video), str(read_only / "sheet.png"), read_only=read_only),
            "cannot be written to (read-only file system)")
    out = tmp_path / "sheet.png"
    done = faults.run("portraittalk.contact_sheet", str(video), str(out), "--count", "6", "--crop", "40,60,200,220",
                      umask=0o022)
    assert done.returncode == 0 and done.stdout.strip() == str(out), done.stderr
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (240, 6 * 240, 3) and sheet.std() > 20  # six 160×160 crops, each 240 px wide
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
