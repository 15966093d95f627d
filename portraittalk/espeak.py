"""espeak-ng, the one GPL-3.0-or-later piece of PortraitTalk, behind this one module.

The library and its data come from the ``espeakng-loader`` wheel (libespeak-ng 1.52). They are
loaded through ctypes by absolute path, so a system espeak-ng (Debian's 1.51 reads Mandarin
tone digits as English words) is never used. Two callers:

* speech analysis: the phonemes of recognised words in other languages, with their timing;
* typed speech: a robotic voice for languages the neural English voice does not speak.

Synthesis runs in memory (``AUDIO_OUTPUT_SYNCHRONOUS``): the callback collects the 16-bit
samples and the WORD / PHONEME events, which carry their position in the audio. espeak-ng
has global state, so one synthesis runs at a time per process.
"""

from __future__ import annotations

import ctypes
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from .errors import InputError, PortraitTalkError

# speak_lib.h (1.52)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA, _INIT_DONT_EXIT = 0x0001, 0x0002, 0x8000
_CHARS_UTF8, _ENDPAUSE, _POS_CHARACTER = 1, 0x1000, 1
_RATE, _PITCH = 1, 3
_EV_END_LIST, _EV_WORD, _EV_PHONEME = 0, 1, 7
_EE_OK = 0

# Languages offered for typed speech (code → name), by how well a recogniser understood them.
LANGUAGES: dict[str, str] = {
    "es": "Spanish", "it": "Italian", "de": "German", "nl": "Dutch", "ru": "Russian", "tr": "Turkish",
    "pl": "Polish", "fr": "French", "pt": "Portuguese (Portugal)", "pt-br": "Portuguese (Brazil)",
    "hi": "Hindi", "ja": "Japanese (kana only)",
}
# Language codes as users (and Whisper) write them → espeak's own voice names.
_ALIASES = {"zh": "cmn", "en": "en-us", "pt-pt": "pt", "es-es": "es", "fr-fr": "fr", "de-de": "de",
            "it-it": "it", "nl-nl": "nl", "pl-pl": "pl", "ru-ru": "ru", "tr-tr": "tr", "hi-in": "hi", "ja-jp": "ja"}
_NOT_SOUNDS = {"", " ", "_", "_:", "_!", "_|", "||", "|", "ˈ", "ˌ", "%", "=", ":"}
_MODIFIERS = set("ʲːˑʰʷ̃")  # a separate event that only modifies the phoneme before it


class EspeakUnavailableError(PortraitTalkError):
    """The bundled espeak-ng library or its data cannot be loaded."""


@dataclass(frozen=True)
class Phoneme:
    ipa: str  # without stress marks
    start_s: float
    end_s: float
    word: int  # index of the whitespace-separated word of the text it belongs to


@dataclass(frozen=True)
class Synthesis:
    samples: np.ndarray  # float32 mono in [-1, 1]; empty when audio was not asked for
    sample_rate: int
    duration_s: float
    phonemes: list[Phoneme]  # sounds only (pauses left out), in time order


class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Engine:
    """The initialised library; one per process."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (ImportError, OSError) as err:
            raise EspeakUnavailableError(
                f"The espeak-ng library could not be loaded ({err}); reinstall espeakng-loader==0.2.4.") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data).encode(),
                                     _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT)
        if rate <= 0:
            raise EspeakUnavailableError(
                f"The espeak-ng data could not be read from {data}; reinstall espeakng-loader==0.2.4.")
        self.lib, self.rate = lib, int(rate)
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # pitch jitter: same input, same output
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, str]] = []  # type, text position (1-based), sample, name
        self._keep_audio = False
        self._samples = 0
        self._callback = _Callback(self._on_synth)  # referenced for the library's lifetime
        lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._voice_table()
        self._voice = ""

    def _on_synth(self, wav, n, events) -> int:  # type: ignore[no-untyped-def]
        self._samples += max(n, 0)
        if self._keep_audio and n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EV_END_LIST:
            ev = events[i]
            if ev.type in (_EV_WORD, _EV_PHONEME):
                name = bytes(ev.id.string).decode("utf-8", "replace") if ev.type == _EV_PHONEME else ""
                self._events.append((ev.type, ev.text_position, ev.sample, name))
            i += 1
        return 0

    def _voice_table(self) -> dict[str, str]:
        """Language code → voice identifier (the language's highest-priority voice)."""
        best: dict[str, tuple[int, str]] = {}
        table = self.lib.espeak_ListVoices(None)
        i = 0
        while table[i]:
            voice = table[i].contents
            addr = voice.languages
            while addr:  # repeated (priority byte, NUL-terminated code), ended by priority 0
                priority = ctypes.c_ubyte.from_address(addr).value
                if priority == 0:
                    break
                code = ctypes.string_at(addr + 1)
                lang = code.decode()
                if lang not in best or priority < best[lang][0]:
                    best[lang] = (priority, voice.identifier.decode())
                addr += len(code) + 2
            i += 1
        return {lang: ident for lang, (_, ident) in best.items()}

    def synthesize(self, text: str, voice: str, rate_wpm: int, keep_audio: bool) -> Synthesis:
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise InputError(f"espeak-ng has no voice '{voice}'.")
            self._voice = voice
        self.lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        if self._seed is not None:
            self._seed(1)
        self._chunks, self._events, self._keep_audio, self._samples = [], [], keep_audio, 0
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        self.lib.espeak_Synchronize()
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        if err != _EE_OK:
            raise InputError(f"espeak-ng could not read this text (error {err}).")
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        end_sample = max([self._samples, *(s for _, _, s, _ in events)])
        return Synthesis(pcm.astype(np.float32) / 32768.0, self.rate, end_sample / self.rate,
                         _phonemes(text, events, self.rate, end_sample))


_ENGINE: _Engine | None = None
_LOCK = threading.Lock()


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def _word_starts(text: str) -> list[int]:
    starts, pos = [], 0
    for word in text.split():
        pos = text.index(word, pos)
        starts.append(pos)
        pos += len(word)
    return starts


def _phonemes(text: str, events: list[tuple[int, int, int, str]], rate: int, end_sample: int) -> list[Phoneme]:
    """PHONEME events → phonemes with durations (to the next event) and the word they belong to."""
    starts = _word_starts(text)
    word, raw = 0, []
    for kind, text_pos, sample, name in events:
        if kind == _EV_WORD:
            word = max(0, int(np.searchsorted(starts, text_pos - 1, side="right")) - 1)
        elif not name.startswith("("):  # "(en)": a language-switch marker, not a sound
            raw.append((name, sample, word))
    out: list[Phoneme] = []
    for k, (name, sample, w) in enumerate(raw):
        end = raw[k + 1][1] if k + 1 < len(raw) else end_sample
        ipa = unicodedata.normalize("NFC", name.strip().strip("ˈˌ"))
        if ipa in _NOT_SOUNDS or end <= sample:
            continue
        if out and all(c in _MODIFIERS for c in ipa):  # e.g. Russian palatalisation as its own event
            last = out[-1]
            out[-1] = Phoneme(last.ipa + ipa, last.start_s, end / rate, last.word)
            continue
        out.append(Phoneme(ipa, sample / rate, end / rate, w))
    return out


def voice_for(language: str) -> str:
    """espeak's voice for a language code ("es", "pt-BR", "zh", "en"); InputError when it has none."""
    code = (language or "").strip().lower().replace("_", "-")
    code = _ALIASES.get(code, code)
    with _LOCK:
        voices = _engine().voices
    if code in voices:
        return voices[code]
    base = code.split("-")[0]
    if base in voices:
        return voices[base]
    raise InputError(f"The language '{language}' is not one espeak-ng can read.")


# A voice variant without pitch flutter, roughness or echo: espeak-ng keeps the flutter's phase from
# one utterance to the next (even across espeak_Initialize), so the default voices say the same text
# a few samples differently each time; this variant says it the same every time.
STEADY_VARIANT = "+Denis"


def synthesize(text: str, language: str, rate_wpm: int = 160, keep_audio: bool = True,
               steady: bool = False) -> Synthesis:
    """Speak `text` in `language`: the audio (when asked for) and its phonemes with their times.
    ``steady``: the same audio for the same text every time (for analysis, see STEADY_VARIANT)."""
    voice = voice_for(language) + (STEADY_VARIANT if steady else "")
    with _LOCK:
        return _engine().synthesize(text, voice, rate_wpm, keep_audio)


def phonemes(text: str, language: str, rate_wpm: int = 160) -> list[Phoneme]:
    """The phonemes espeak-ng reads `text` with, timed at its own speaking rate."""
    return synthesize(text, language, rate_wpm, keep_audio=False).phonemes


def version() -> str:
    with _LOCK:
        lib = _engine().lib
    lib.espeak_Info.restype = ctypes.c_char_p
    return str(lib.espeak_Info(None).decode())
