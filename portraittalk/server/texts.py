"""What a visitor reads about a finished render: the identity curve, the numbers in words
and the notes (how the speech was read, the prompt as understood, warnings)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..contracts import SAME_PERSON_DISTANCE
from .results import StoredResult

if TYPE_CHECKING:
    from .service import Heard

PLOT_VIDEO, PLOT_LINE = "This video", "Same-person line"


def identity_plot_data(report: dict[str, Any]) -> pd.DataFrame:
    """Long-format table for the plot: similarity = 1 − descriptor distance per frame, plus
    the same-person threshold drawn as a second line across the clip."""
    frames = (report.get("identity") or {}).get("frames", [])
    if not frames:
        return pd.DataFrame({"frame": [], "similarity": [], "series": []})
    xs = [f["frame"] for f in frames]
    rows = [{"frame": f["frame"], "similarity": round(1.0 - f["distance"], 4), "series": PLOT_VIDEO}
            for f in frames]
    limit = round(1.0 - SAME_PERSON_DISTANCE, 4)
    rows += [{"frame": min(xs), "similarity": limit, "series": PLOT_LINE},
             {"frame": max(xs), "similarity": limit, "series": PLOT_LINE}]
    return pd.DataFrame(rows)


def summary_markdown(stored: StoredResult) -> str:
    """The numbers a visitor needs, in words."""
    report = stored.report
    video = report.get("video", {})
    duration = float(video.get("duration_s") or 0.0)
    total = float((report.get("timings_s") or {}).get("total", 0.0))
    rtf = report.get("realtime_factor")
    identity = report.get("identity") or {}
    summ = identity.get("summary") or {}
    lines: list[str] = []
    if summ.get("frames"):
        n, ok = summ["frames"], summ.get("frames_within_threshold", 0)
        verdict = "Same person throughout." if ok == n else "Some frames drift from your portrait."
        lines.append(f"**{verdict}** The face matches your portrait in **{ok} of {n} frames** "
                     f"(face distance ≤ {SAME_PERSON_DISTANCE}).")
        lines += ["", "| Result | Value |", "|---|---|",
                  f"| Average identity match (1 = identical) | {1 - summ['mean_distance']:.2f} |",
                  f"| Lowest identity match | {1 - summ['max_distance']:.2f} |",
                  f"| Frames below the same-person line | {summ.get('frames_over_threshold', 0)} |",
                  f"| Face descriptor cosine, mean / min | {summ['mean_cosine']:.3f} / {summ['min_cosine']:.3f} |"]
    else:
        lines += ["Identity scores were not computed for this video.", "", "| Result | Value |", "|---|---|"]
    fps = video.get("fps")
    fps_text = f"{fps:g}" if isinstance(fps, (int, float)) else "?"
    lines.append(f"| Video | {duration:.1f} s, {video.get('frames', '?')} frames at {fps_text} fps, "
                 f"{'×'.join(str(v) for v in video.get('size', []))} px |")
    if rtf is not None:
        lines.append(f"| Render time | {total:.1f} s ({rtf:.2f} s of work per second of speech) |")
    if stored.from_cache:
        lines += ["", "_Same inputs and settings as an earlier request: shown instantly from the cache "
                      "(times above are from the first render)._"]
    return "\n".join(lines)


def notes_markdown(report: dict[str, Any], settings_prompt: str) -> str:
    """Warnings, how the speech was read, and what the prompt was understood as."""
    parts: list[str] = []
    speech = (report.get("input") or {}).get("speech") or {}
    source = {"transcript": "your words", "recognition": "the words recognised"}.get(speech.get("words_from", ""), "")
    method = {"forced-alignment": f"lined up with {source}, sound by sound",
              "espeak-dtw": f"spoken from {source} and lined up with the recording",
              "acoustic": "followed from the loudness and pitch only (no words recognised)",
              "synthesis": "timed by the voice that spoke your text, sound by sound"}
    if speech.get("method"):
        language = language_name(speech.get("language", ""))
        said = f" in {language}" if speech["method"] != "acoustic" and language else ""
        parts.append(f"**Lip sync:** mouth shapes {method.get(speech['method'], speech['method'])}{said}.")
    if speech.get("text"):
        parts.append(f"**Heard:** “{speech['text']}”")
    understood = report.get("prompt")
    if understood:
        if isinstance(understood, dict):
            text = understood.get("summary") or understood.get("understood") or json.dumps(understood)
        else:
            text = str(understood)
        parts.append(f"**Prompt understood as:** {text}")
    elif settings_prompt:
        parts.append("**Prompt:** not used by this engine yet; the sliders above shape the motion.")
    for w in report.get("warnings") or []:
        parts.append(f"**Note:** {w}")
    return "\n\n".join(parts)


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get(code or "", code or "")


def heard_markdown(heard: Heard) -> str:
    """The line under "What is said" after an upload or a recording."""
    if heard.problem:
        return f"_{heard.problem}_"
    if not heard.language:
        return "_No clear words were recognised (singing, music or a noisy recording?): the mouth will follow " \
               "the sound. Type the words if you know them._"
    return (f"_Heard in **{language_name(heard.language)}** ({heard.probability:.0%} sure). Correct the words "
            "if needed: they are then used as the transcript._")


# ----------------------------------------------------------------------------------------
# The page's fixed text
# ----------------------------------------------------------------------------------------
UNEXPECTED_ERROR = ("Something went wrong on our side while making the video. Please try again; "
                    "if it keeps happening, try another photo or recording.")
UNEXPECTED_COMPARE_ERROR = ("Something went wrong on our side while measuring the videos. Please try again; "
                            "if it keeps happening, try other videos.")
# The language list's names (RenderSettings offers the codes; any other Whisper code shows as itself).
LANGUAGE_NAMES = {"": "Detect from the recording", "en": "English", "es": "Spanish", "fr": "French", "de": "German",
                  "it": "Italian", "pt": "Portuguese", "nl": "Dutch", "pl": "Polish", "ru": "Russian", "uk": "Ukrainian",
                  "tr": "Turkish", "ar": "Arabic", "hi": "Hindi", "ja": "Japanese", "zh": "Chinese", "ko": "Korean"}
# The Guidance accordion's sliders: setting → (label, explanation).
GUIDANCE_SLIDERS = {
    "audio_strength": ("Lip-sync strength", "How strongly the mouth follows the speech. 0 = mouth still, 2 = exaggerated."),
    "identity_strength": ("Identity strength",
                          "How closely the face sticks to your photo. Higher = fewer changes to the face."),
    "prompt_strength": ("Prompt strength", "How much the style prompt matters. 0 = ignore the prompt."),
    "head_motion": ("Head movement", "0 = still head, 1 = natural nods and turns, 2 = lively."),
    "expression_intensity": ("Expression intensity", "Eyebrows and smile. 0 = neutral face, 2 = very expressive."),
    "blink_rate": ("Blinking", "0 = never blinks, 1 = natural, 2 = twice as often."),
}

HEADER = """
<div id="pt-header">
  <img src="gradio_api/file={logo}" alt="">
  <div>
    <h1>PortraitTalk</h1>
    <p>Turn one photo of a face and a speech recording into a video of that person saying it —
    with a check, frame by frame, that the face still looks like the same person.</p>
  </div>
</div>
"""

STEPS = ("<span class='pt-steps'>**1.** Add a portrait photo · **2.** Upload, record or type speech · "
         "**3.** Press **Generate**. No photo at hand? Click an example below the button.</span>")

# Typed speech: how many characters make about a second of speech (the English voice reads
# 12–14 a second, the robotic ones at 150 words a minute about 12).
CHARACTERS_PER_SECOND = 12
VOICE_INFO = "Heart speaks American English, naturally; the others are robotic voices for other languages."
FACE_INFO = "Click a face in the preview, or type its number (1 = the leftmost); 0 = the largest."


def say_label(max_seconds: float) -> str:
    """The text box's label, with its length limit."""
    return (f"Text to say: up to {max_seconds:g} s of speech, about {round(max_seconds * CHARACTERS_PER_SECOND)} "
            "characters")


ABOUT_SCORES = """
**Identity plot:** every point is one frame of the video. A face-recognition network (dlib's)
turns each frame and your portrait into a face descriptor and measures the distance between
them; the plot shows 1 − that distance, so 1 means identical. Frames above the red line
(distance {d}, the network's usual same-person threshold) show the same person.

**Average / lowest identity match:** the same measure over the whole video and at its worst
frame. **Face descriptor cosine:** the angle-based similarity of the same descriptors
(1 = identical), for comparison with other tools.

**Render time:** how long the video took to make; "seconds of work per second of speech"
below 1 means faster than real time. Extra photos of the same person make the reference
more reliable: the descriptor of the person is averaged over all of them.
""".format(d=SAME_PERSON_DISTANCE)

# Starts both players at 0 together (A with its sound, B muted so the two tracks don't clash).
PLAY_BOTH_JS = """
() => {
  const players = ['#pt-compare-a video', '#pt-compare-b video'].map(s => document.querySelector(s));
  if (players.some(v => !v)) return;
  players.forEach(v => { v.pause(); v.currentTime = 0; });
  players[1].muted = true;
  players.forEach(v => v.play().catch(() => {}));
}
"""

COMPARE_INTRO = ("<span class='pt-steps'>Measure two videos of the same person — two runs with different "
                 "settings, or a video from any other tool — against the portrait they should show.</span>")

ABOUT_COMPARE = """
**Identity (cosine):** each frame's face descriptor against the portrait's (dlib's
face-recognition network), 1 = identical. **Lip sync (local r):** how closely the mouth's
opening follows the loudness of the speech over the surrounding two seconds, 1 = perfectly.
**Lip sync confidence** and **offset** come from lining up the mouth with the sound over the
whole clip; an offset near 0 ms is best. The phone checks look at the moments the speech has
a P/B/M (lips should close) or an open vowel (mouth should open). **ADFD** rolls identity,
sync and smoothness into one 0–100 score. Without an audio file the videos' own sound is used.
"""
