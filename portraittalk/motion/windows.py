"""Speech analysed, and motion planned, window by window: a long recording starts rendering at once.

The recording is cut into windows: a short first one (its video can play a moment after the
request), then windows of ``WINDOW_S``. Each window is analysed with a margin of audio on both sides
(``MARGIN_S``), so the recogniser hears every phone whole and coarticulation reaches across
the cut. The analyses are stitched into one :class:`SpeechAnalysis` of the whole recording —
each window speaks for its own core span, the last one known also for its margin ahead — and
after each window the motion track of the WHOLE recording is planned again from what is
known so far (future audio counts as silence). Blinks, gaze, head drift and prompt motion
depend only on the seed and the length, so every plan has the same ones; the mouth and the
voice-driven head motion of a new plan take over from the previous plan with a crossfade of
``CROSSFADE_S`` at the start of the window, well inside the previous window's margin: nothing
jumps at a window edge.

Recordings up to ``WHOLE_UP_TO_S`` are analysed in one piece, exactly as without windows. With
a transcript (which cannot be split by time before it is aligned), only the first window is
analysed without it; the rest of the recording follows the alignment of the whole transcript,
made meanwhile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..analysis.speech.words import join_words
from ..contracts import AudioClip, MotionTrack, PhoneSegment, SpeechAnalysis, WordSegment
from ..settings import RenderSettings
from .plan import plan_motion
from .visemes import SILENCE

if TYPE_CHECKING:
    from .prompt import PromptControls

WHOLE_UP_TO_S = 8.0
# What the first video frames wait for: its analysis, with the margin. It reaches past the end of
# the second streamed piece (1 + 2 s) and the frames the encoder holds back, so the first two
# pieces never wait for the second window's analysis.
FIRST_WINDOW_S = 4.0
# The next windows' cores: with their margins no window exceeds 30 s, one pass of a recogniser
# that always reads 30 s at a time (Whisper), which shorter windows would pay for again and again.
WINDOW_S = 24.0
SHORTEST_LAST_S = 3.0  # a shorter end joins the window before it
TRANSCRIPT_FIRST_WINDOW_S = 6.0  # with a transcript: time for the whole alignment to finish meanwhile
MARGIN_S = 1.5
CROSSFADE_S = 0.5
WORD_OVERLAP_S = 0.05


@dataclass(frozen=True)
class Window:
    """A stretch of the recording: its core [start_s, end_s) is the video it drives; its audio
    [from_s, to_s) includes the margins. Times are on the video's frame grid."""

    index: int
    start_s: float
    end_s: float
    from_s: float
    to_s: float
    use_transcript: bool

    def clip(self, clip: AudioClip) -> AudioClip:
        """The window's audio (the same recording, sliced)."""
        rate = clip.sample_rate
        return replace(clip, samples=clip.samples[round(self.from_s * rate):round(self.to_s * rate)])


def whole_recording(duration_s: float, transcript: bool = False) -> Window:
    """One window: the recording analysed in one piece."""
    return Window(0, 0.0, duration_s, 0.0, duration_s, transcript)


def plan_windows(duration_s: float, fps: float, transcript: bool = False) -> list[Window]:
    """The windows of a recording of ``duration_s`` (each boundary on a video frame)."""
    if duration_s <= WHOLE_UP_TO_S:
        return [whole_recording(duration_s, transcript)]

    def on_grid(t: float) -> float:
        return min(duration_s, math.floor(t * fps + 1e-9) / fps)

    first = on_grid(TRANSCRIPT_FIRST_WINDOW_S if transcript else FIRST_WINDOW_S)
    if transcript:  # the first window without it, the rest from the whole transcript's alignment
        return [Window(0, 0.0, first, 0.0, on_grid(first + MARGIN_S), False),
                Window(1, first, duration_s, 0.0, duration_s, True)]
    cuts = [0.0, first]
    while cuts[-1] < duration_s:
        cuts.append(duration_s if duration_s - cuts[-1] < WINDOW_S + SHORTEST_LAST_S else on_grid(cuts[-1] + WINDOW_S))
    return [Window(k, a, b, on_grid(max(0.0, a - MARGIN_S)), on_grid(b + MARGIN_S) if b < duration_s else duration_s,
                   False) for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]


class MotionStitcher:
    """Window analyses in (in order), the motion track of the whole recording out.

    After ``add(k, analysis)`` the track's frames up to ``ready_frames`` are final; ``track``
    and ``speech`` are the render's track and stitched analysis once every window is in.
    """

    def __init__(self, windows: list[Window], n_frames: int, settings: RenderSettings,
                 controls: PromptControls | None) -> None:
        self.windows = windows
        self.n_frames = n_frames
        self.fps = float(settings.fps)
        self.settings = settings
        self.controls = controls
        self.track = MotionTrack.still(n_frames, self.fps)
        self.ready_frames = 0
        self._analyses: list[SpeechAnalysis] = []
        self._previous: MotionTrack | None = None

    def add(self, analysis: SpeechAnalysis) -> None:
        """The analysis of the next window (its own audio, times from the window's start)."""
        k = len(self._analyses)
        self._analyses.append(analysis)
        window = self.windows[k]
        plan = plan_motion(self.speech, self.n_frames, self.settings, self.controls)
        a, b = self._frame(window.start_s), self._frame(window.end_s) if k + 1 < len(self.windows) else self.n_frames
        blend = np.ones(b - a)
        if self._previous is not None:
            t = np.clip((np.arange(a, b) - a + 1) / (CROSSFADE_S * self.fps + 1), 0.0, 1.0)
            blend = t * t * (3 - 2 * t)
        for channel in MotionTrack.CHANNELS:
            new = getattr(plan, channel)[a:b]
            old = getattr(self._previous, channel)[a:b] if self._previous is not None else new
            getattr(self.track, channel)[a:b] = (old + blend * (new - old)).astype(np.float32)
        self._previous = plan
        self.ready_frames = b

    @property
    def speech(self) -> SpeechAnalysis:
        """The analyses so far as one analysis of the whole recording (silence after the last)."""
        if len(self.windows) == 1 and self._analyses:
            return self._analyses[0]
        n, fps = self.n_frames, self.fps
        arrays = {name: np.zeros(n, np.float32) for name in ("energy", "voicing", "pitch", "speech")}
        phones: list[PhoneSegment] = []
        last = len(self._analyses) - 1
        for k, analysis in enumerate(self._analyses):
            window = self.windows[k]
            start, end = window.start_s, window.to_s if k == last else window.end_s
            for p in analysis.phones:
                a, b = max(p.start + window.from_s, start), min(p.end + window.from_s, end)
                if b > a + 1e-6:
                    phones.append(PhoneSegment(p.phone, round(a, 3), round(b, 3)))
            lo, hi, offset = self._frame(start), min(n, self._frame(end)), self._frame(window.from_s)
            for name, values in arrays.items():
                own = np.asarray(getattr(analysis, name), np.float32)[lo - offset:hi - offset]
                values[lo:lo + len(own)] = own
        duration = n / fps
        if phones and phones[-1].end < duration - 1e-6:
            phones.append(PhoneSegment(SILENCE, phones[-1].end, round(duration, 3)))
        spans = [(w.end_s - w.start_s, a) for w, a in zip(self.windows, self._analyses)]
        main = max(spans, key=lambda s: s[0])[1]  # the method of the window covering most of the recording
        warnings = list(dict.fromkeys(w for a in self._analyses for w in a.warnings))
        words = self._words()
        return SpeechAnalysis(phones=phones, method=main.method, language=main.language,
                              speech_ratio=float(arrays["speech"].mean()), fps=fps, warnings=warnings,
                              energy=arrays["energy"], voicing=arrays["voicing"], pitch=arrays["pitch"],
                              speech=arrays["speech"], words=words, words_from=main.words_from,
                              text=join_words([w.text for w in words]),
                              language_probability=main.language_probability)

    def _words(self) -> list[WordSegment]:
        """Each window's words on the recording's clock, those said in its own span (by their middle)."""
        words: list[WordSegment] = []
        last = len(self._analyses) - 1
        for k, analysis in enumerate(self._analyses):
            window = self.windows[k]
            end = window.to_s if k == last else window.end_s
            for w in analysis.words:
                a, b = w.start + window.from_s, w.end + window.from_s
                # Two windows may cut a word differently at their edge: the first reading stands,
                # and a word that starts a moment before the last one ends starts at its end.
                if words and a < words[-1].end:
                    if a < words[-1].end - WORD_OVERLAP_S:
                        continue
                    a = words[-1].end
                if window.start_s <= (a + b) / 2 < end and b > a:
                    words.append(WordSegment(w.text, round(a, 3), round(b, 3)))
        return words

    def _frame(self, t: float) -> int:
        return int(round(t * self.fps))
