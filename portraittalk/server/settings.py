"""The server's own settings, read once from the environment (README › Settings)."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("portraittalk.app")


@dataclass(frozen=True)
class ServerSettings:
    """Limits of a shared Space and where the server keeps its files. A value in the
    environment that is not a number falls back to the default (the log says so)."""

    # A render takes a few seconds of CPU per second of speech.
    max_audio_seconds: float = 60.0
    concurrency: int = 1  # renders at the same time; each one already uses every core
    queue_size: int = 16
    result_cache: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "portraittalk-results")
    result_cache_entries: int = 24
    max_upload: str = "50mb"  # per file; larger uploads are refused
    upload_cache_mb: float = 2048.0
    server_name: str = "127.0.0.1"  # loopback unless told otherwise
    server_port: int = 7860
    # Examples render once at start-up on a Space (every visitor then sees results at once),
    # on first click elsewhere.
    example_cache_mode: str = "lazy"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServerSettings":
        env = os.environ if env is None else env
        default = cls()

        def number(name: str, fallback: float) -> float:
            text = env.get(name)
            if text is None:
                return fallback
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                return value
            log.warning("%s=%r is not a number; using %g", name, text, fallback)
            return fallback

        mode = env.get("GRADIO_CACHE_MODE", "").lower()
        return cls(
            max_audio_seconds=number("PORTRAITTALK_MAX_AUDIO_SECONDS", default.max_audio_seconds),
            concurrency=int(number("PORTRAITTALK_CONCURRENCY", default.concurrency)),
            queue_size=int(number("PORTRAITTALK_QUEUE_SIZE", default.queue_size)),
            result_cache=Path(env.get("PORTRAITTALK_RESULT_CACHE", default.result_cache)),
            result_cache_entries=int(number("PORTRAITTALK_RESULT_CACHE_ENTRIES", default.result_cache_entries)),
            max_upload=env.get("PORTRAITTALK_MAX_UPLOAD", default.max_upload),
            upload_cache_mb=number("PORTRAITTALK_UPLOAD_CACHE_MB", default.upload_cache_mb),
            server_name=env.get("GRADIO_SERVER_NAME", default.server_name),
            server_port=int(number("GRADIO_SERVER_PORT", default.server_port)),
            example_cache_mode=mode if mode in ("eager", "lazy") else "eager" if env.get("SPACE_ID") else "lazy",
        )
