"""Acoustic pseudo-phones: syllable-sized mouth shapes from the sound itself, for speech the
English recogniser can't transcribe (other languages, singing)."""

from __future__ import annotations

import numpy as np

from ...contracts import PhoneSegment
from .features import HOP_S, AcousticFeatures, runs

CLOSURE_DIP_DB = 15.0  # a dip this deep between two syllables is a stop closure: the lips meet


def acoustic_pseudo_phones(feats: AcousticFeatures, activity: np.ndarray) -> list[PhoneSegment]:
    """Syllable-sized vowel/consonant pseudo-phones from loudness and spectral shape.

    Syllable nuclei are loudness peaks inside speech (≥ 4 dB prominence, ≥ 100 ms apart);
    a nucleus is the stretch within 6 dB of its peak and gets a vowel by its brightness
    relative to the clip: bright (high F2) → EY, dark (low F2, rounded) → OW, otherwise AA
    when loud and AH when soft. The rest of each syllable is "N" (teeth nearly together);
    where the level between two nuclei drops ≥ CLOSURE_DIP_DB under the softer of them (a
    stop's silent closure) the 60 ms around the valley become "P", so the lips meet.
    """
    from scipy.signal import find_peaks  # only this fallback needs scipy.signal (a slow import)

    smooth_db = np.convolve(feats.db, np.ones(3) / 3.0, mode="same")
    voiced_bright = feats.brightness[(feats.voicing > 0.5) & activity]
    b_lo, b_hi = (np.percentile(voiced_bright, [30, 70]) if len(voiced_bright) > 10 else (0.0, 0.0))
    phones: list[PhoneSegment] = []

    def add(label: str, a: int, b: int) -> None:
        if b > a:
            phones.append(PhoneSegment(label, a * HOP_S, b * HOP_S))

    for start, end in runs(activity, True):
        level = smooth_db[start:end]
        peaks, _ = find_peaks(level, prominence=4.0, distance=10)
        if len(peaks) == 0:
            peaks = np.array([int(np.argmax(level))])
        valleys = [int(a + np.argmin(level[a:b])) for a, b in zip(peaks, peaks[1:])]
        bounds = [0] + valleys + [len(level)]
        for k, peak in enumerate(peaks):
            lo, hi = bounds[k], bounds[k + 1]
            within = level[lo:hi] >= level[peak] - 6.0
            c0 = peak - lo
            while c0 > 0 and within[c0 - 1]:
                c0 -= 1
            c1 = peak - lo + 1
            while c1 < len(within) and within[c1]:
                c1 += 1
            c0, c1 = c0 + lo, c1 + lo
            closure_left = k > 0 and _is_closure(level, peaks[k - 1], peak, lo)
            closure_right = k + 1 < len(peaks) and _is_closure(level, peak, peaks[k + 1], hi)
            left_edge = min(lo + 3, c0) if closure_left else lo
            right_edge = max(hi - 3, c1) if closure_right else hi
            add("P", start + lo, start + left_edge)
            add("N", start + left_edge, start + c0)
            add(_vowel_for(feats, start + c0, start + c1, b_lo, b_hi), start + c0, start + c1)
            add("N", start + c1, start + right_edge)
            add("P", start + right_edge, start + hi)
    return phones


def _is_closure(level: np.ndarray, left_peak: int, right_peak: int, valley: int) -> bool:
    return min(level[left_peak], level[right_peak]) - level[valley] >= CLOSURE_DIP_DB


def _vowel_for(feats: AcousticFeatures, a: int, b: int, b_lo: float, b_hi: float) -> str:
    bright = float(np.median(feats.brightness[a:b]))
    if bright >= b_hi:
        return "EY"
    if bright <= b_lo:
        return "OW"
    return "AA" if float(np.max(feats.energy[a:b])) >= 0.8 else "AH"
