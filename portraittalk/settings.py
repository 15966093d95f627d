"""Every setting a user can give a render, in one place (CLI, app, API and batch read it).

Each field of :class:`RenderSettings` carries a :class:`Spec`: its help text, the range a
render accepts and how the app offers it. The CLI's `render` options and the app's controls
are made from these specs, and :meth:`RenderSettings.validated` checks against them.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .errors import InputError
from .voices import DEFAULT_VOICE, MAX_CHARS, VOICES

MAX_AUDIO_SECONDS = 600.0  # a longer clip is refused with this limit named in the message
ENGINES = ("warp", "diffusion")
# The page's language list (Whisper codes; "" = detect); the CLI and the API take any code Whisper knows.
PAGE_LANGUAGES = ("", "en", "es", "fr", "de", "it", "pt", "nl", "pl", "ru", "uk", "tr", "ar", "hi", "ja", "zh", "ko")


@dataclass(frozen=True)
class Offer:
    """How the app offers a setting. Unset bounds and default are the setting's own; the
    page may offer less than a render accepts (a narrower slider, a list of sizes)."""

    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple = ()
    default: Any = None


@dataclass(frozen=True)
class Spec:
    """What is known about one setting besides its default."""

    help: str
    lo: float | None = None  # accepted range, inclusive
    hi: float | None = None
    whole: bool = False  # must be a whole number
    choices: tuple = ()
    max_chars: int | None = None
    option: str | None = None  # the CLI option, where it is not --the-field-name
    page: Offer | None = None  # None: not on the app's page


def setting(default: Any, help: str, **spec: Any) -> Any:
    """A RenderSettings field with its default and its :class:`Spec`."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


STRENGTH = dict(lo=0, hi=2, page=Offer(step=0.05))  # the six strength sliders: 0 … 2 in steps of 0.05


@dataclass
class RenderSettings:
    """Everything a user can set. Defaults are what the CLI uses; the app's differ only where
    a field's ``page`` offer says so."""

    fps: float = setting(25.0, "frames per second of the video", lo=5, hi=60, page=Offer(lo=10, hi=30, step=1))
    seed: int = setting(0, "same seed + same inputs = same video", lo=0, hi=2**63 - 1, whole=True, page=Offer())
    # The page renders smaller by default: 512 px is faster than real time on 2 CPU cores.
    max_size: int = setting(1024, "cap on the video's long side in pixels", lo=64, hi=4096,
                            page=Offer(choices=(256, 384, 512, 640, 768, 1024), default=512))
    transcript: str | None = setting(None, "what is said (text, or @file.txt); default: the words recognised",
                                     max_chars=20000, page=Offer())
    language: str = setting("", "the spoken language as a code such as en, es, ja (default: detected)",
                            max_chars=12, page=Offer(choices=PAGE_LANGUAGES))
    text: str | None = setting(None, "what to say, typed instead of a recording (text, or @file.txt)",
                               max_chars=MAX_CHARS, option="--say", page=Offer())
    voice: str = setting(DEFAULT_VOICE, "the voice that says --say: heart (American English, natural) or a "
                         "language code (robotic)", choices=tuple(VOICES), page=Offer())
    face: int = setting(0, "which face talks, counting faces from the left (1 = the leftmost); 0 = the largest",
                        lo=0, hi=1000, whole=True, page=Offer())
    prompt: str = setting("", 'what the face should do or look like, e.g. "smiling, calm, sepia"',
                          max_chars=1000, page=Offer())
    audio_strength: float = setting(1.0, "0 = mouth still, 1 = natural, 2 = exaggerated", **STRENGTH)
    identity_strength: float = setting(
        1.0, "above 1 keeps expression and pose closer to the portrait (identity-adapter scale on diffusion)",
        **STRENGTH)
    prompt_strength: float = setting(1.0, "how strongly the prompt acts", **STRENGTH)
    head_motion: float = setting(1.0, "0 = still head, 2 = lively", **STRENGTH)
    expression_intensity: float = setting(1.0, "scales prompt expressions", **STRENGTH)
    blink_rate: float = setting(1.0, "0 = no blinks, 2 = twice as often", **STRENGTH)
    engine: str = setting("warp", "what draws the frames", choices=ENGINES, page=Offer())
    score_identity: bool = setting(True, "skip per-frame identity scoring", option="--no-identity")
    weights: str | None = setting(
        None, "diffusion engine weights: a local folder or a Hub id (default: $PORTRAITTALK_WEIGHTS)")
    device: str | None = setting(None, "diffusion engine device (default: the GPU)")
    asr_model: str | None = setting(
        None, "speech recogniser: a CTranslate2 Whisper folder or a Hub id "
              "(default: $PORTRAITTALK_ASR_MODEL, else the bundled Whisper base)")
    diffusion_steps: int = setting(25, "diffusion engine denoising steps", lo=1, hi=200, option="--steps",
                                   page=Offer(lo=4, hi=50, step=1))
    guidance_scale: float = setting(3.5, "diffusion engine classifier-free guidance", lo=0, hi=20,
                                    option="--guidance", page=Offer(lo=1, hi=10, step=0.5))

    @staticmethod
    def spec(f: Field) -> Spec:
        return f.metadata["spec"]

    @classmethod
    def offered(cls) -> dict[str, Offer]:
        """The settings the app's page offers, by field name, each with its bounds and default filled in."""
        offers = {}
        for f in fields(cls):
            spec = cls.spec(f)
            if spec.page is not None:
                page = spec.page
                offers[f.name] = replace(page, lo=spec.lo if page.lo is None else page.lo,
                                         hi=spec.hi if page.hi is None else page.hi,
                                         choices=page.choices or spec.choices,
                                         default=f.default if page.default is None else page.default)
        return offers

    def validated(self) -> "RenderSettings":
        """Reject settings that cannot make a video, with a sentence saying the allowed range."""
        for f in fields(self):
            spec, value = self.spec(f), getattr(self, f.name)
            if spec.whole:
                whole = isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())
                lo = 0 if spec.lo is None else spec.lo
                hi = float("inf") if spec.hi is None else spec.hi
                if not whole or not lo <= int(value) <= hi:
                    raise InputError(f"The setting '{f.name}' must be a whole number from {spec.lo:g} up "
                                     f"(got {value!r}).")
                setattr(self, f.name, int(value))
            elif spec.lo is not None and not (np.isfinite(value) and spec.lo <= value <= spec.hi):
                raise InputError(f"The setting '{f.name}' must be between {spec.lo:g} and {spec.hi:g} (got {value!r}).")
            if spec.max_chars is not None and len(value or "") > spec.max_chars:
                raise InputError(f"The {f.name} is too long ({len(value)} characters, up to {spec.max_chars}); "
                                 "shorten it.")
            if spec.choices and value not in spec.choices:
                raise InputError(f"Unknown {f.name} '{value}'; choose one of: {', '.join(spec.choices)}.")
        return self
