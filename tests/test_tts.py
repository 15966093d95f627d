"""Typed speech: the voices' sound and phone timing, a typed sentence rendered and checked on the
decoded video (duration, sound track, lips closing at P/B/M on re-detected frames), and every
limit ending in one sentence through the voices, the pipeline and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from portraittalk.analysis.face import mouth_gap_ratio
from portraittalk.errors import InputError
from portraittalk.evaluation.sync import phone_checks
from portraittalk.io.audio import load_audio
from portraittalk.io.video import probe_video, read_frames
from portraittalk.motion.visemes import SILENCE
from portraittalk.settings import RenderSettings
from portraittalk.voices import MAX_CHARS, VOICES, synthesize_speech

from .conftest import EXAMPLES, REPO

# Every word has a P, B or M: the lips must close again and again.
SENTENCE = "Maybe Bob will bring the map back by May. Please pass the pepper, mom."
BILABIALS = {"P", "B", "M"}


def tiles(phones, duration: float) -> bool:
    """The phones follow one another without gaps or overlaps from 0 to ``duration``."""
    return (phones[0].start == 0.0 and abs(phones[-1].end - duration) < 1e-6
            and all(abs(a.end - b.start) < 1e-9 and b.end > b.start for a, b in zip(phones, phones[1:])))


def clip_of(spoken):
    """The synthesised speech as the pipeline reads it: a WAV decoded to 16 kHz."""
    with tempfile.TemporaryDirectory() as folder:
        return load_audio(spoken.write_wav(Path(folder) / "speech.wav"))


def test_english_voice_is_hibari_heart_with_its_own_durations():
    """The duration output added to hibari's graph leaves its sound bit for bit as hibari makes it."""
    from hibari import Hibari

    from portraittalk.voices.english import SEED

    text = "Hello there. The quick brown fox jumps over the lazy dog."
    spoken = synthesize_speech(text, "heart")
    assert spoken.sample_rate == 24000
    assert np.array_equal(spoken.samples, Hibari(voice="heart")(text, seed=SEED))
    assert tiles(spoken.phones, spoken.duration_s)
    assert spoken.phones[0].phone == spoken.phones[-1].phone == SILENCE  # breath before and after
    assert synthesize_speech(text, "heart") is spoken  # the page's check and the render share one synthesis


@pytest.mark.parametrize("text", [SENTENCE, "A bumpy problem remains by the mill pond, Bob."])
def test_english_phone_timing_agrees_with_forced_alignment(text):
    """pocketsphinx aligning the same words on the same sound (an independent timing) puts the
    phone boundaries where the voice says it made them."""
    from portraittalk.analysis.speech.sphinx import forced_alignment

    spoken = synthesize_speech(text, "heart")
    clip = clip_of(spoken)
    alignment, problem = forced_alignment((clip.samples * 32767).astype("<i2").tobytes(), text)
    assert alignment is not None, problem
    aligned = alignment.phones
    ours = [p for p in spoken.phones if p.phone in BILABIALS]
    theirs = [p for p in aligned if p.phone in BILABIALS]
    assert len(ours) == len(theirs) >= 10
    boundaries = np.array(sorted({p.start for p in aligned} | {p.end for p in aligned}))
    error = np.array([np.abs(boundaries - p.start).min() for p in spoken.phones[1:]])
    print(f"\n{text!r}: phone boundaries vs forced alignment: median {1000 * np.median(error):.0f} ms, "
          f"{100 * np.mean(error <= 0.05):.0f} % within 50 ms")
    assert np.median(error) <= 0.025 and np.mean(error <= 0.05) >= 0.9
    # Each lip closure starts within two video frames of where the aligner hears it.
    assert max(abs(a.start - b.start) for a, b in zip(ours, theirs)) < 0.08


@pytest.mark.parametrize("voice, text, bilabials", [
    ("es", "Hola, me llamo Pablo y vivo en Madrid.", 3),
    ("it", "Buongiorno, mi chiamo Marco e abito a Milano.", 4),
    ("ja", "こんにちは、わたしのなまえはまりです。", 2),
])
def test_robotic_voices_time_their_phonemes(voice, text, bilabials):
    spoken = synthesize_speech(text, voice)
    assert spoken.sample_rate == 22050 and VOICES[voice].engine == "espeak-ng"
    assert tiles(spoken.phones, spoken.duration_s)
    assert 0.3 < np.abs(spoken.samples).max() <= 0.89 + 1e-6  # audible, with headroom
    assert sum(p.phone in BILABIALS for p in spoken.phones) >= bilabials
    # Sound where the phones say so, silence in the pauses between them.
    rate = spoken.sample_rate
    loud = [np.sqrt(np.mean(spoken.samples[int(p.start * rate):int(p.end * rate)] ** 2))
            for p in spoken.phones if p.phone != SILENCE and p.end - p.start > 0.05]
    quiet = [np.sqrt(np.mean(spoken.samples[int(p.start * rate):int(p.end * rate)] ** 2))
             for p in spoken.phones if p.phone == SILENCE and p.end - p.start > 0.1]
    assert quiet and np.median(loud) > 10 * max(quiet)


@pytest.mark.parametrize("text, voice, expected", [
    ("", "heart", "There is no text to say"),
    ("   \n ", "es", "There is no text to say"),
    ("#$%&* 🙂🙂 ?!", "heart", "no letters or digits"),
    ("x" * (MAX_CHARS + 1), "heart", f"the limit is {MAX_CHARS}"),
    ("Привет, как дела?", "heart", "reads English only"),
    ("東京へ行きます", "ja", "cannot read kanji"),
    ("Hello", "klingon", "There is no voice 'klingon'; choose one of: heart, es"),
])
def test_text_a_voice_cannot_say_is_one_sentence(text, voice, expected):
    with pytest.raises(InputError, match=expected) as err:
        synthesize_speech(text, voice)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".")


@pytest.fixture(scope="module")
def typed_render(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("typed") / "typed.mp4"
    result = pipeline.render(EXAMPLES / "grace_hopper.jpg", None, out, RenderSettings(text=SENTENCE, seed=1))
    return result


def test_typed_sentence_video_lasts_as_long_as_its_speech_and_carries_it(typed_render):
    result = typed_render
    spoken = result.speech
    info = probe_video(result.video_path)
    assert info.audio_codec == "aac"
    assert abs(info.duration_s - spoken.duration_s) <= 1 / 25 + 1e-6
    assert abs(info.audio_duration_s - spoken.duration_s) <= 1 / 25 + 0.03
    # The sound track is the synthesised speech: the decoded AAC matches it sample for sample
    # (at 16 kHz), at no offset.
    track, speech = load_audio(result.video_path).samples, clip_of(spoken).samples
    n = min(len(track), len(speech))
    lags = range(-160, 161, 8)
    corr = [np.corrcoef(track[max(0, k):n + min(0, k)], speech[max(0, -k):n + min(0, -k)])[0, 1] for k in lags]
    assert max(corr) > 0.95 and abs(list(lags)[int(np.argmax(corr))]) <= 16
    report = result.report
    assert report["input"]["speech"] == {**report["input"]["speech"], "method": "synthesis", "language": "en",
                                         "source": "synthesised", "voice": "heart"}
    assert report["timings_s"]["speech_synthesis"] > 0


def test_typed_sentence_lips_close_at_every_bilabial(typed_render, face_analyzer):
    """The product's own lip check on re-detected output frames, with the synthesiser's phones."""
    result = typed_render
    report = result.report
    fps, box = report["video"]["fps"], tuple(report["input"]["face"]["box"])
    gaps = np.array([mouth_gap_ratio(face_analyzer.mesh_in_box(f, box)) for f in read_frames(result.video_path)])
    from portraittalk.io.image import load_portrait
    portrait = load_portrait(EXAMPLES / "grace_hopper.jpg", max_size=max(report["video"]["size"]))
    checks = phone_checks(result.speech.phones, gaps, fps, mouth_gap_ratio(face_analyzer.analyze(portrait.rgb).landmarks))
    # Stricter than the check's one-frame slack: closed on a frame inside the phone itself.
    exact = [gaps[math.floor(p.start * fps):math.ceil(p.end * fps)].min() <= 0.05
             for p in result.speech.phones if p.phone in BILABIALS]
    print(f"\nlips closed at {checks.bilabials_closed} of {checks.bilabials} P/B/M ({sum(exact)} inside the phone "
          f"itself); open at {checks.open_vowels_open} of {checks.open_vowels} open vowels; at rest in "
          f"{checks.pause_frames_at_rest} of {checks.pause_frames} pause frames")
    assert checks.bilabials >= 14
    assert checks.bilabial_closed_fraction >= 0.9 and sum(exact) >= 0.85 * len(exact)
    assert checks.pause_rest_fraction >= 0.9
    assert checks.open_vowels_open >= 0.5 * checks.open_vowels


def test_the_synthesised_speech_is_written_as_wav(typed_render, tmp_path):
    wav = typed_render.write_speech(tmp_path / "speech.wav")
    clip = load_audio(wav)
    assert (clip.original_rate, clip.original_channels, clip.codec) == (24000, 1, "pcm_s16le")
    assert abs(clip.duration_s - typed_render.speech.duration_s) < 1e-3


def test_typed_speech_errors_through_the_pipeline(pipeline, tmp_path):
    portrait, clip = EXAMPLES / "grace_hopper.jpg", EXAMPLES / "librivox_0880.wav"
    cases = [
        ((None, RenderSettings()), "There is no speech: give a recording, or a text to say."),
        ((clip, RenderSettings(text="Hello.")), "Give either a recording or a text to say, not both."),
        ((None, RenderSettings(text="?!…")), "no letters or digits"),
        ((None, RenderSettings(text="Hello", voice="cmn")), "Unknown voice 'cmn'; choose one of: heart, es"),
        ((None, RenderSettings(text="x" * (MAX_CHARS + 1))), f"up to {MAX_CHARS}"),
    ]
    for (audio, settings), expected in cases:
        with pytest.raises(InputError, match=expected.replace("?", r"\?")):
            pipeline.render(portrait, audio, tmp_path / "out.mp4", settings)
    assert not (tmp_path / "out.mp4").exists()


def test_cli_says_a_text_file_with_a_robotic_voice(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("Hola, me llamo Pablo.", encoding="utf-8")
    out, scores, wav = tmp_path / "hola.mp4", tmp_path / "scores.json", tmp_path / "hola.wav"
    done = subprocess.run([sys.executable, "-m", "portraittalk", "render", "--image", str(EXAMPLES / "grace_hopper.jpg"),
                           "--say", f"@{words}", "--voice", "es", "--out", str(out), "--scores", str(scores),
                           "--wav", str(wav), "--max-size", "256", "--no-identity"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    speech = json.loads(scores.read_text())["input"]["speech"]
    assert (speech["source"], speech["voice"], speech["language"]) == ("synthesised", "es", "es")
    assert abs(probe_video(out).duration_s - load_audio(wav).duration_s) <= 1 / 25 + 1e-6


@pytest.mark.parametrize("arguments, expected", [
    (["--say", "Hello there.", "--audio", str(EXAMPLES / "librivox_0880.wav")],
     "Give the speech either as a recording (--audio FILE) or as a text to say"),
    ([], "Give the speech either as a recording (--audio FILE) or as a text to say"),
    (["--say", "東京", "--voice", "ja"], "cannot read kanji"),
    (["--say", "@missing_words.txt"], "The text file 'missing_words.txt' cannot be read"),
    (["--say", "…", "--voice", "de"], "no letters or digits"),
])
def test_cli_speech_errors_are_one_line(tmp_path, arguments, expected):
    base = [sys.executable, "-m", "portraittalk", "render", "--image", str(EXAMPLES / "grace_hopper.jpg"),
            "--out", str(tmp_path / "x.mp4")]
    done = subprocess.run(base + arguments, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], done.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_typed_speech_errors_through_the_app(pipeline, tmp_path):
    """The /render API (what the page's text box and voice list send): one sentence per problem,
    and a text whose speech is longer than the server's limit is refused before any rendering."""
    pytest.importorskip("gradio_client")
    from dataclasses import replace

    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    from .test_app import start

    settings = replace(ServerSettings(result_cache=tmp_path / "results"), max_audio_seconds=3.0)
    client, demo = start(RenderService(pipeline, settings))
    portrait = handle_file(str(EXAMPLES / "grace_hopper.jpg"))
    cases = [
        (dict(text=""), "Please upload or record some speech first, or type a text to say"),
        (dict(text="Hello.", audio=handle_file(str(EXAMPLES / "librivox_0880.wav"))), "not both"),
        (dict(text="* * *"), "no letters or digits"),
        (dict(text="東京", voice="ja"), "cannot read kanji"),
        (dict(text="Привет", voice="heart"), "reads English only"),
        (dict(text=SENTENCE), "of speech but the limit is 3 s; please shorten it"),
        (dict(text="x" * (MAX_CHARS + 1)), "too long"),
    ]
    try:
        for values, expected in cases:
            audio = values.pop("audio", None)
            with pytest.raises(AppError) as err:
                client.predict(portrait, audio, **values, max_size=256, api_name="/render")
            message = str(err.value)
            assert expected in message and "Traceback" not in message and "\n" not in message, message
        # Within the limit the typed text renders, and the speech is among the downloads.
        video, report = client.predict(portrait, None, text="Bob!", max_size=256, api_name="/render")
        assert report["input"]["speech"]["source"] == "synthesised"
        assert abs(probe_video(video).duration_s - synthesize_speech("Bob!", "heart").duration_s) <= 1 / 25 + 1e-6
    finally:
        demo.close()
    stored = [p for p in (tmp_path / "results").iterdir() if (p / "speech.wav").is_file()]
    assert len(stored) == 1  # only the one render that ran
