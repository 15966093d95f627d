"""RenderSettings is the one source of every setting: the CLI's options and the app's
controls are made from its fields, and `validated()` holds renders to the same ranges."""

from __future__ import annotations

import math
import sys
from dataclasses import fields

import pytest

from portraittalk.cli.main import build_parser
from portraittalk.errors import InputError
from portraittalk.settings import RenderSettings

from .conftest import REPO

# The CLI's contract: these option names, exactly.
SETTING_OPTIONS = ["--fps", "--seed", "--max-size", "--prompt", "--audio-strength", "--identity-strength",
                   "--prompt-strength", "--expression-intensity", "--head-motion", "--blink-rate", "--engine",
                   "--weights", "--device", "--steps", "--guidance", "--no-identity", "--transcript",
                   "--language", "--say", "--voice", "--face", "--asr-model"]


def render_options() -> dict[str, object]:
    """The render command's argparse actions by destination."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices["render"]._actions}


def test_cli_options_are_the_settings_fields():
    actions = render_options()
    by_field = {f.name: actions[f.name] for f in fields(RenderSettings)}
    assert sorted(o for a in by_field.values() for o in a.option_strings) == sorted(SETTING_OPTIONS)
    assert by_field["diffusion_steps"].option_strings == ["--steps"]
    assert by_field["guidance_scale"].option_strings == ["--guidance"]
    assert by_field["score_identity"].option_strings == ["--no-identity"]
    for f in fields(RenderSettings):
        action = by_field[f.name]
        assert action.default == f.default, f.name
        assert action.help and RenderSettings.spec(f).help in action.help
        if action.type is not None:
            assert isinstance(f.default, action.type) or f.default is None, f.name
    assert tuple(by_field["engine"].choices) == ("warp", "diffusion")
    # No option given: exactly RenderSettings' defaults (1024 px, scores on, …).
    args = build_parser().parse_args(["render", "--image", "p.jpg", "--audio", "s.wav", "--out", "o.mp4"])
    assert RenderSettings(**{f.name: getattr(args, f.name) for f in fields(RenderSettings)}) == RenderSettings()
    args = build_parser().parse_args(["render", "--image", "p.jpg", "--audio", "s.wav", "--out", "o.mp4",
                                      "--steps", "8", "--guidance", "2.5", "--no-identity", "--max-size", "256",
                                      "--reference", "a.jpg", "--reference", "b.jpg"])
    assert (args.diffusion_steps, args.guidance_scale, args.score_identity, args.max_size, args.reference) == \
        (8, 2.5, False, 256, ["a.jpg", "b.jpg"])


def test_ranges_in_the_specs_are_what_validated_enforces():
    for f in fields(RenderSettings):
        spec = RenderSettings.spec(f)
        if spec.lo is None:
            continue
        for edge in (spec.lo, spec.hi):  # the bounds themselves are accepted
            assert getattr(RenderSettings(**{f.name: edge}).validated(), f.name) == edge
        below = spec.lo - 1
        with pytest.raises(InputError, match=f"'{f.name}'") as err:
            RenderSettings(**{f.name: below}).validated()
        assert f"{spec.lo:g}" in str(err.value)
        if not spec.whole:
            above = spec.hi + 0.5
            with pytest.raises(InputError, match=f"between {spec.lo:g} and {spec.hi:g}"):
                RenderSettings(**{f.name: above}).validated()
            with pytest.raises(InputError):
                RenderSettings(**{f.name: math.nan}).validated()
    with pytest.raises(InputError, match="whole number"):
        RenderSettings(seed=1.5).validated()
    with pytest.raises(InputError, match="too long"):
        RenderSettings(prompt="x" * 1001).validated()
    with pytest.raises(InputError, match="choose one of: warp, diffusion"):
        RenderSettings(engine="pencil").validated()


def test_what_the_page_offers_is_a_valid_render():
    offered = RenderSettings.offered()
    assert list(offered) == ["fps", "seed", "max_size", "transcript", "language", "text", "voice", "face", "prompt",
                             "audio_strength",
                             "identity_strength", "prompt_strength", "head_motion", "expression_intensity",
                             "blink_rate", "engine", "diffusion_steps", "guidance_scale"]
    # The page's own default size; everything else defaults as on the CLI.
    assert offered["max_size"].default == 512 and offered["max_size"].choices == (256, 384, 512, 640, 768, 1024)
    assert {n: o.default for n, o in offered.items() if n != "max_size"} == \
        {n: getattr(RenderSettings(), n) for n in offered if n != "max_size"}
    RenderSettings(**{n: o.default for n, o in offered.items()}).validated()
    for name, offer in offered.items():
        spec = RenderSettings.spec(next(f for f in fields(RenderSettings) if f.name == name))
        if spec.lo is not None:  # the page never offers what a render refuses
            assert spec.lo <= offer.lo <= offer.default <= offer.hi <= spec.hi, name
        for choice in offer.choices:
            RenderSettings(**{name: choice}).validated()


def test_page_controls_are_made_from_the_settings(pipeline):
    pytest.importorskip("gradio")
    sys.path.insert(0, str(REPO))
    import gradio as gr

    import app
    from portraittalk.server.service import RenderService
    from portraittalk.server.settings import ServerSettings

    demo = app.build_demo(RenderService(pipeline, ServerSettings()))
    render = next(fn for fn in demo.fns.values() if fn.api_name == "render")
    controls = dict(zip(render.input_parameter_names, render.inputs))
    offered = RenderSettings.offered()
    assert set(offered) <= set(controls)
    for name, offer in offered.items():
        control = controls[name]
        if isinstance(control, gr.Slider):
            assert (control.minimum, control.maximum, control.step, control.value) == \
                (offer.lo, offer.hi, offer.step, offer.default), name
        elif isinstance(control, gr.Number):
            assert (control.minimum, control.value, control.precision) == (offer.lo, offer.default, 0), name
        elif isinstance(control, gr.Dropdown):
            assert [value for _, value in control.choices] == list(offer.choices), name
            assert control.value == offer.default, name
        elif isinstance(control, gr.Radio):
            assert control.value == offer.default
            assert {value for _, value in control.choices} <= set(offer.choices), name
        else:
            assert isinstance(control, gr.Textbox) and control.value == "" and not offer.default, name
