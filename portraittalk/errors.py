"""The project's own error type.

Every problem a user can cause (a file that is not a portrait, silent audio, …) is
raised as :class:`InputError` with one plain sentence that says what is wrong and what
to do. The CLI prints that sentence and exits non-zero; the app shows it in a
``gr.Error``. Anything else is a bug in PortraitTalk.
"""

from __future__ import annotations


class PortraitTalkError(Exception):
    """Base class: ``str(err)`` is a complete, human sentence."""


class InputError(PortraitTalkError):
    """The user's input (file or setting) cannot be used; the message says why and what to do."""


class EngineUnavailableError(PortraitTalkError):
    """An engine was asked for that this machine cannot run (no GPU, no weights, …)."""
