"""The English voice: hibari-tts's "heart" (American English, female; Apache-2.0, in the wheel),
and the phone timing the lips follow, taken from the model itself.

hibari's acoustic model first predicts how long each input symbol lasts, then makes the sound
to that plan. That duration tensor is exposed as an extra output of the ONNX graph
(:mod:`.onnx_outputs`), so every phone's time is the one the sound was made with. Two corrections
were measured against forced alignment and fricative onsets on five test sentences:

* the sound runs ``LAG_S`` (60 ms) ahead of the duration grid, at every speed and all through a
  clip, so phone boundaries move 60 ms earlier;
* the phone before a pause is planned to last through most of the pause (115–260 ms too long),
  so its end moves to where its sound actually fades (:func:`trim_before_pauses`).

After both, phone boundaries lie within 50 ms of pocketsphinx's forced alignment for 97 % of
phones (median 12.5 ms). Phones are ARPAbet by mouth shape, through the project's IPA table.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..analysis.speech.ipa import to_arpabet
from ..contracts import PhoneSegment
from ..motion.visemes import SILENCE
from ..runtime import start_onnxruntime
from .onnx_outputs import add_outputs

# The graph's duration tensor (int64, one entry per input id): a name of hibari-tts 0.2.1's export,
# which is why the version is pinned. Its unit is 2 decoder frames of 300 samples at 24 kHz.
DURATION_TENSOR = "/Cast_32_output_0"
SAMPLES_PER_UNIT = 600
LAG_S = 0.060
SEED = 0  # hibari's noise source is seeded: the same text always gives the same sound
# hibari splits long sentences only at clause punctuation; an unpunctuated run-on would be one
# chunk whose attention grows with the square of its length (2.3 GB for 4,000 symbols).
MAX_SYMBOLS = 400

# misaki symbols (hibari's phoneme alphabet) that are not plain IPA.
_MISAKI_IPA = {"A": "eɪ", "I": "aɪ", "O": "oʊ", "Q": "əʊ", "W": "aʊ", "Y": "ɔɪ", "T": "ɾ", "ʤ": "dʒ", "ʧ": "tʃ",
               "ʦ": "ts", "ʣ": "dz", "ʨ": "tɕ", "ʥ": "dʑ", "ᵊ": "ə", "ꭧ": "ɚ"}
_STRESS = "ˈˌ"
_MODIFIERS = "ːʰʲ\u0303ᵝ↓→↗↘"  # belong to the symbol before them
_PAUSES = set(';:,.!?—…"()“”')
_R_COLOURED = {"ɜ": "ɜːɹ", "ə": "əɹ"}  # vowel + ɹ is one r-coloured vowel (ER)
_GAP = " "


class EnglishVoice:
    """hibari's model and G2P, loaded once."""

    sample_rate = 24000

    def __init__(self) -> None:
        import hibari
        from hibari import Hibari

        start_onnxruntime()  # before hibari starts it

        model = Path(hibari.__file__).parent / "assets" / "hibari.onnx"
        # Only the bundled model: hibari downloads its other voices from the internet.
        self._tts = Hibari(voice="heart", model=add_outputs(model.read_bytes(), [DURATION_TENSOR]), threads=1)
        self._lock = threading.Lock()

    def speak(self, text: str) -> tuple[np.ndarray, list[PhoneSegment]]:
        """float32 samples at 24 kHz and the phones tiling them."""
        from hibari import dsp

        rng = np.random.default_rng(SEED)
        parts: list[np.ndarray] = []
        phones: list[PhoneSegment] = []
        t = 0.0
        with self._lock:
            chunks = [piece for ps in self._tts.phonemize(text) for piece in split_long(ps)]
            for symbols in chunks:
                symbols = "".join(c for c in symbols if c in self._tts.vocab)  # as hibari's own ids() does
                ids = self._tts.ids(symbols)
                if len(ids) < 3:
                    continue
                *acoustic, units = self._tts.sess.run(None, {"ids": np.asarray([ids], np.int64),
                                                            "speed": np.ones(1, np.float32)})
                audio = dsp.synth(*(a[0] for a in acoustic), rng)
                units = units.reshape(-1)
                if len(audio) != int(units.sum()) * SAMPLES_PER_UNIT:
                    raise RuntimeError("hibari's durations do not add up to its audio; install hibari-tts==0.2.1")
                phones += chunk_phones(symbols, units * SAMPLES_PER_UNIT / self.sample_rate, t)
                parts.append(audio)
                t += len(audio) / self.sample_rate
        samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        return samples, trim_before_pauses(phones, samples, self.sample_rate)


def split_long(symbols: str, limit: int = MAX_SYMBOLS) -> list[str]:
    """A chunk longer than ``limit`` symbols split at word gaps."""
    out: list[str] = []
    current = ""
    for word in symbols.split(_GAP):
        if current and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = word
        else:
            current = f"{current}{_GAP}{word}" if current else word
    return out + [current] if current else out


def phone_groups(symbols: str) -> list[tuple[str, list[int]]]:
    """misaki symbols → (IPA of one phone, SIL or a word gap; indices of the symbols it spans).

    Stress marks go with the phone after them, length and other marks with the one before."""
    groups: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for i, ch in enumerate(symbols):
        if ch in _STRESS or (ch in _MODIFIERS and not groups):
            pending.append(i)
        elif ch in _MODIFIERS:
            ipa, idx = groups[-1]
            groups[-1] = (ipa + ch if ipa not in (SILENCE, _GAP) else ipa, idx + [i])
        elif ch == "ɹ" and groups and groups[-1][0] in _R_COLOURED:
            ipa, idx = groups[-1]
            groups[-1] = (_R_COLOURED[ipa], idx + pending + [i])
            pending = []
        else:
            ipa = _GAP if ch == _GAP else SILENCE if ch in _PAUSES else _MISAKI_IPA.get(ch, ch)
            groups.append((ipa, pending + [i]))
            pending = []
    if pending and groups:
        groups[-1][1].extend(pending)
    return groups


def chunk_phones(symbols: str, seconds: np.ndarray, offset: float) -> list[PhoneSegment]:
    """One chunk's phones from its per-id durations (``seconds[0]`` and ``seconds[-1]`` are the pads).

    A word gap goes half to each neighbouring phone (to the pause, when next to one); the
    boundaries inside the chunk then move ``LAG_S`` earlier."""
    spans: list[list] = [[SILENCE, float(seconds[0])]]  # [IPA or SIL or gap, duration]
    for ipa, idx in phone_groups(symbols):
        spans.append([ipa, float(sum(seconds[k + 1] for k in idx))])
    spans.append([SILENCE, float(seconds[-1])])
    merged: list[list] = []
    for k, (ipa, length) in enumerate(spans):
        if ipa != _GAP:
            merged.append([ipa, length])
        elif merged[-1][0] == SILENCE or spans[k + 1][0] in (SILENCE, _GAP):
            merged[-1][1] += length
        else:
            merged[-1][1] += length / 2
            spans[k + 1][1] += length / 2
    labels: list[str] = []
    edges = [offset]
    for ipa, length in merged:
        shares = [(SILENCE, 1.0)] if ipa == SILENCE else to_arpabet(ipa, "en") or [(SILENCE, 1.0)]
        for phone, share in shares:
            labels.append(phone)
            edges.append(edges[-1] + length * share)
    end = edges[-1]
    inner = np.clip(np.array(edges[1:-1]) - LAG_S, offset, end)
    edges = [offset, *inner.tolist(), end]
    return [PhoneSegment(p, a, b) for p, a, b in zip(labels, edges[:-1], edges[1:]) if b > a]


def trim_before_pauses(phones: list[PhoneSegment], samples: np.ndarray, rate: int, fade_db: float = 35.0,
                       floor_dbfs: float = -60.0, shortest_s: float = 0.03) -> list[PhoneSegment]:
    """End each phone that runs into a pause where its sound fades: the last 10 ms that is
    louder than ``fade_db`` under the phone's loudest (and than ``floor_dbfs``)."""
    hop = rate // 100
    out = [PhoneSegment(p.phone, p.start, p.end) for p in phones]
    for this, after in zip(out, out[1:]):
        if this.phone == SILENCE or after.phone != SILENCE:
            continue
        a, b = int(this.start * rate), int(this.end * rate)
        n = (b - a) // hop
        if n < 3:
            continue
        frames = samples[a:a + n * hop].reshape(n, hop).astype(np.float64)
        db = 10 * np.log10(np.mean(frames * frames, axis=1) + 1e-18)
        loud = np.flatnonzero(db > max(floor_dbfs, db.max() - fade_db))
        if loud.size:
            end = max(this.start + shortest_s, this.start + (loud[-1] + 1) * hop / rate)
            if end < this.end:
                this.end = after.start = end
    return out

