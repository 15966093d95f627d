"""The phone → mouth-shape table: the shapes a viewer expects for each sound group."""

from __future__ import annotations

import pytest

from portraittalk.contracts import MotionTrack
from portraittalk.motion import visemes
from portraittalk.motion.visemes import (
    ARPABET_PHONES,
    MOUTH_CHANNELS,
    VISEME_TARGETS,
    normalize_phone,
    viseme_class,
    viseme_target,
)

CMU_ARPABET = {
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
    "Z", "ZH",
}


def test_every_arpabet_phone_has_a_shape_within_the_track_units():
    assert ARPABET_PHONES == CMU_ARPABET
    assert set(MOUTH_CHANNELS) <= set(MotionTrack.CHANNELS)
    for phone, shape in VISEME_TARGETS.items():
        assert set(shape) == set(MOUTH_CHANNELS), phone
        for ch, v in shape.items():
            lo = -1.0 if ch == "mouth_wide" else 0.0
            assert lo <= v <= 1.0, (phone, ch, v)


@pytest.mark.parametrize("phone", ["P", "B", "M"])
def test_bilabials_press_the_lips_together(phone):
    s = viseme_target(phone)
    assert s["lip_close"] == 1.0 and s["jaw_open"] <= 0.1


@pytest.mark.parametrize("phone", ["F", "V"])
def test_labiodentals_tuck_the_lower_lip(phone):
    s = viseme_target(phone)
    assert s["lower_lip_tuck"] == 1.0 and s["lip_close"] == 0 and s["jaw_open"] < 0.2


@pytest.mark.parametrize("phone", ["IY", "IH", "EY"])
def test_front_vowels_spread(phone):
    s = viseme_target(phone)
    assert s["mouth_wide"] >= 0.5 and s["lip_round"] == 0


@pytest.mark.parametrize("phone", ["UW", "UH", "OW", "W", "R"])
def test_rounded_sounds_round_and_narrow(phone):
    s = viseme_target(phone)
    assert s["lip_round"] >= 0.5 and s["mouth_wide"] < 0


@pytest.mark.parametrize("phone", ["AA", "AE", "AH", "AW", "AY"])
def test_open_vowels_open_the_jaw(phone):
    assert viseme_target(phone)["jaw_open"] >= 0.6


@pytest.mark.parametrize("phone", ["TH", "DH", "L"])
def test_dentals_and_l_show_the_tongue(phone):
    assert viseme_target(phone)["tongue"] >= 0.5


@pytest.mark.parametrize("phone", ["SH", "ZH", "CH", "JH"])
def test_postalveolars_protrude_slightly_open(phone):
    s = viseme_target(phone)
    assert s["lip_round"] >= 0.5 and 0.05 < s["jaw_open"] < 0.3 and s["lip_close"] == 0


def test_silence_is_the_rest_shape():
    assert all(v == 0 for v in viseme_target("SIL").values())


def test_open_vowels_open_wider_than_spread_and_rounded_close_vowels():
    assert viseme_target("AA")["jaw_open"] > viseme_target("AE")["jaw_open"] > viseme_target("IY")["jaw_open"]
    assert viseme_target("AA")["jaw_open"] > viseme_target("UW")["jaw_open"]


@pytest.mark.parametrize("label, phone", [
    ("AA1", "AA"), ("ih0", "IH"), ("SIL", "SIL"), ("<sil>", "SIL"), ("+NSN+", "SIL"), ("+SPN+", "SIL"),
    ("[NOISE]", "SIL"), ("", "SIL"), (" m ", "M"),
])
def test_labels_normalise_to_arpabet_without_stress(label, phone):
    assert normalize_phone(label) == phone


def test_unknown_labels_rest_instead_of_failing():
    assert viseme_target("QX") == viseme_target("SIL")


def test_classes_cover_every_phone_and_group_lip_contacts():
    assert {viseme_class(p) for p in ARPABET_PHONES | {"SIL"}} == {
        "closed", "lip-teeth", "tongue", "teeth", "rounded", "spread", "open", "rest"}
    assert {p for p in ARPABET_PHONES if viseme_class(p) == "closed"} == {"P", "B", "M"}
    assert {p for p in ARPABET_PHONES if viseme_class(p) == "lip-teeth"} == {"F", "V"}


def test_lip_contacts_dominate_weak_consonants():
    # coarticulation relies on this order: lips of P/B/M hold, HH takes its neighbours' shape
    assert visemes.dominance("M") > visemes.dominance("AA") > visemes.dominance("T") > visemes.dominance("HH")


def test_diphthongs_glide_between_known_vowels():
    for first, second, share in visemes.DIPHTHONGS.values():
        assert first in visemes.VOWELS and second in visemes.VOWELS and 0.3 <= share <= 0.7
