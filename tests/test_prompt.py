"""Prompt understanding: a table of phrasings through the real MiniLM text model.

Synonym rows are paraphrases that are NOT in the parser's example bank (checked below), so
they exercise the embedding model's generalisation, not a lookup.
"""

from __future__ import annotations

import json

import pytest

from portraittalk.engines.warp.looks import available_styles
from portraittalk.errors import InputError
from portraittalk.motion import prompt as P
from portraittalk.motion.prompt.bank import BANK, NOT_UNDERSTOOD, STYLE_LABELS


@pytest.fixture(scope="module")
def parse():
    P.get_text_encoder()  # load once for the module (a few seconds)
    return P.parse_prompt


def labels(controls: P.PromptControls, negated: bool = False) -> list[str]:
    return [m.label for m in controls.matches if m.negated == negated]


def at_defaults(c: P.PromptControls) -> bool:
    return (not c.expression and c.head_motion_scale == 1.0 and c.nod == 0.0 and c.shake == 0.0
            and c.look_around == 0.0 and c.blink_rate_scale == 1.0 and c.style is None)


# Paraphrases outside the bank → the control they must reach.
SYNONYMS = [
    ("grinning happily", "happy"), ("she looks so happy", "happy"), ("radiant smile", "happy"),
    ("a gloomy look", "sad"), ("on the brink of tears", "sad"), ("unhappy face", "sad"),
    ("looking astonished", "surprised"), ("utterly shocked", "surprised"),
    ("scowling at the camera", "angry"), ("visibly angry", "angry"), ("glaring angrily", "angry"),
    ("in deep thought", "thoughtful"), ("pondering something", "thoughtful"), ("visibly nervous", "worried"),
    ("keep a straight face", "neutral"),
    ("hold the head still", "still"), ("no head motion", "still"),
    ("calm demeanor", "calm"), ("serene presence", "calm"),
    ("full of enthusiasm", "lively"), ("animated delivery", "lively"),
    ("nodding his head", "nod"), ("frequent nods", "nod"),
    ("glancing around the room", "look_around"), ("eyes wandering around", "look_around"),
    ("blinking frequently", "blink_often"),
    ("grey scale", "black-and-white"), ("b&w", "black-and-white"), ("classic black and white", "black-and-white"),
    ("vintage photograph", "sepia"), ("antique photograph", "sepia"), ("old sepia photo", "sepia"),
    ("golden sunset light", "warm"), ("warm color grading", "warm"),
    ("icy blue tones", "cool"), ("cooler tones", "cool"),
    ("very contrasty", "high-contrast"), ("contrast turned up", "high-contrast"),
    ("looks like an oil painting", "painting"), ("painted in oils", "painting"),
    ("sketched in pencil", "pencil-sketch"), ("a charcoal sketch", "pencil-sketch"),
    ("comic book style", "cartoon"), ("like an animated cartoon", "cartoon"),
]


@pytest.mark.parametrize("text,label", SYNONYMS)
def test_paraphrases_reach_their_control(parse, text, label):
    c = parse(text)
    assert label in labels(c), c.summary()
    assert not [i for i in c.ignored if i.reason == NOT_UNDERSTOOD], c.summary()


def test_synonym_table_is_not_a_lookup():
    bank = {p for phrases in BANK.values() for p in phrases}
    assert not bank.intersection(text.lower() for text, _ in SYNONYMS)


@pytest.mark.parametrize("text,reason", [
    ("wearing a cowboy hat", "needs the diffusion engine"), ("with blue hair", "needs the diffusion engine"),
    ("in a red dress", "needs the diffusion engine"), ("on a beach", "needs the diffusion engine"),
    ("make her look younger", "needs the diffusion engine"),
    ("talking fast", "the audio decides how the speech sounds"), ("whisper", "the audio decides how the speech sounds"),
    ("zoom in slowly", "camera moves are not supported"),
])
def test_edits_beyond_the_warp_engine_are_reported_with_a_reason(parse, text, reason):
    c = parse(text)
    assert [i.reason for i in c.ignored] == [reason], c.summary()
    assert at_defaults(c) and not c.understood


@pytest.mark.parametrize("text", [
    "glorp blorf zint", "the quick brown fox", "purple monkey dishwasher", "asdf qwerty", "a table and a chair",
    "sonriendo y feliz", "muy triste", "souriant et heureux", "sehr glücklich", "笑顔で話す", "улыбается", "微笑",
])
def test_nonsense_and_other_languages_are_not_understood(parse, text):
    c = parse(text)
    assert at_defaults(c) and not c.understood, c.summary()
    assert c.ignored and all(i.reason == NOT_UNDERSTOOD for i in c.ignored)
    assert "not understood" in c.summary()


def test_expressions_drive_the_right_channels(parse):
    happy, sad = parse("smiling").expression, parse("looking sad").expression
    surprised, angry = parse("surprised").expression, parse("angry").expression
    assert happy["smile"] > 0.3 and sad["smile"] < -0.3
    assert surprised["brow_raise"] > 0.5 and surprised.get("eye_wide", 0) > 0.3
    assert angry["brow_raise"] < -0.5 and angry["smile"] < 0
    worried = parse("looking worried").expression
    assert worried["brow_raise"] > 0.2 and worried["smile"] < 0
    thoughtful = parse("thoughtful")
    assert thoughtful.expression["brow_raise"] < 0
    assert thoughtful.head_motion_scale < 1 and thoughtful.look_around > 0


def test_motion_and_blink_controls(parse):
    assert parse("calm").head_motion_scale < 0.6
    assert parse("completely still").head_motion_scale < parse("calm").head_motion_scale
    assert parse("energetic").head_motion_scale > 1.4
    assert parse("nodding along").nod > 0.3
    assert parse("looking around").look_around > 0.3
    assert parse("looking at the camera").look_around < 0
    assert parse("blinks a lot").blink_rate_scale > 1.5
    assert 0 < parse("rarely blinks").blink_rate_scale < 0.6
    assert parse("never blinks").blink_rate_scale == 0


def test_negation(parse):
    c = parse("not smiling")
    assert c.expression.get("smile") == 0 and c.understood == ["no smile"]
    assert parse("without blinking").blink_rate_scale == 0
    assert 0 < parse("doesn't blink much").blink_rate_scale < 1
    nod = parse("don't nod")
    assert nod.nod == 0 and nod.understood == ["no nodding"]
    assert parse("not sepia").style is None
    c = parse("not sepia but black and white")
    assert c.style == "black-and-white" and "no sepia" in c.understood
    assert parse("don't look around").look_around < 0  # gaze held steady
    assert parse("not very happy").expression["smile"] < parse("happy").expression["smile"]


def test_intensity_is_monotone(parse):
    smile = [parse(t).expression["smile"] for t in ("barely smiling", "slightly smiling", "smiling",
                                                    "very happy", "extremely happy")]
    assert smile == sorted(smile) and smile[0] < smile[2] < smile[4]
    head = [parse(t).head_motion_scale for t in ("slightly calm", "calm", "very calm")]
    assert head[0] > head[1] > head[2]
    assert parse("a bit sepia").style_strength < parse("sepia").style_strength == 1.0
    assert parse("happy but not too much").expression["smile"] < parse("happy").expression["smile"]


def test_mixed_prompt_and_summary(parse):
    c = parse("A slightly sad, calm speaker in black and white, wearing a red scarf; nodding now and then")
    assert c.expression["smile"] < 0 and c.head_motion_scale < 1 and c.nod > 0
    assert c.style == "black-and-white"
    assert [(i.phrase, i.reason) for i in c.ignored if i.reason != NOT_UNDERSTOOD] == [
        ("wearing a red scarf", "needs the diffusion engine")]
    parts = c.summary().split(" · ")
    assert parts[0].startswith("sad ") and "black-and-white" in parts
    assert any(p.startswith("head motion low") for p in parts)
    assert parts[-1].startswith('ignored: "wearing a red scarf" (needs the diffusion engine)')


def test_one_look_at_a_time(parse):
    c = parse("sepia and very cartoonish")
    assert c.style == "cartoon"  # the stronger mention
    assert [i.reason for i in c.ignored] == ["one look at a time; cartoon is used"]


def test_prompt_strength_scales_expression_and_look(parse):
    full, half, none = parse("smiling, sepia", 1.0), parse("smiling, sepia", 0.5), parse("smiling, sepia", 0.0)
    assert half.expression["smile"] == pytest.approx(full.expression["smile"] / 2, abs=1e-3)
    assert half.style_strength == pytest.approx(0.5) and none.style_strength == 0
    assert none.expression["smile"] == 0 and none.understood  # still reported as understood
    assert parse("smiling", 2.0).expression["smile"] > full.expression["smile"]


def test_deterministic_and_serialisable(parse):
    text = "a thoughtful woman, glancing around, old film look, wearing glasses"
    a, b = parse(text).to_dict(), parse(text).to_dict()
    assert a == b
    assert json.loads(json.dumps(a)) == a
    assert a["summary"] and a["text_model"] == "all-MiniLM-L6-v2"


def test_exact_phrases_need_no_model():
    c = P.parse_prompt("Sepia, calm and smiling!")
    assert not c.used_text_model
    assert c.style == "sepia" and c.head_motion_scale < 1 and c.expression["smile"] > 0


def test_empty_prompt():
    c = P.parse_prompt("   ")
    assert c.summary() == "no prompt" and at_defaults(c) and not c.used_text_model


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError):
        P.parse_prompt("smile", strength=3.0)
    with pytest.raises(InputError):
        P.parse_prompt("smile " * 400)


def test_prompt_looks_are_the_available_styles():
    assert set(STYLE_LABELS) == set(available_styles())


def test_encoder_matches_sentence_embedding_properties(parse):
    enc = P.get_text_encoder()
    v = enc.encode(["a smiling face", "a happy face", "a tax return form"])
    assert v.shape == (3, 384)
    assert abs(float((v * v).sum(1).mean()) - 1.0) < 1e-4  # unit vectors
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
