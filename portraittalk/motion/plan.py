"""Settings + parsed prompt → the render's motion track.

`build_motion_track` makes the speech-driven track (mouth, blinks, head, gaze); the prompt
scales its head motion and blink rate and sets expression offsets up front, and
`apply_prompt` then adds what changes over time (squint, wide eyes, nods, head shakes,
glances) and bounds how far the face may leave the portrait.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..contracts import MotionTrack, SpeechAnalysis
from ..settings import RenderSettings
from .track import EXPRESSION_KEYS, EXPRESSION_RAMP_S, MAX_POSE_DEG, build_motion_track, smooth_noise

if TYPE_CHECKING:
    from .prompt import PromptControls


def plan_motion(speech: SpeechAnalysis, n_frames: int, s: RenderSettings,
                controls: PromptControls | None) -> MotionTrack:
    """The motion track of one render (``controls``: the parsed prompt, None without one)."""
    expression = None
    head_scale = blink_scale = 1.0
    if controls is not None:
        expression = {c: float(np.clip(controls.expression.get(c, 0.0) * s.expression_intensity, -1, 1))
                      for c in EXPRESSION_KEYS}
        head_scale, blink_scale = controls.head_motion_scale, controls.blink_rate_scale
    track = build_motion_track(
        speech, n_frames, s.fps, seed=s.seed, audio_strength=s.audio_strength,
        head_motion=float(np.clip(s.head_motion * head_scale, 0, 2)),
        blink_rate=float(np.clip(s.blink_rate * blink_scale, 0, 5)),
        expression=expression)
    return apply_prompt(track, controls, s.seed, s.expression_intensity, s.identity_strength)


def apply_prompt(track: MotionTrack, controls: PromptControls | None, seed: int = 0,
                 expression_intensity: float = 1.0, identity_strength: float = 1.0) -> MotionTrack:
    """Fold a parsed text prompt into a motion track, in place.

    Expression offsets were already added by `build_motion_track`; here come the parts that
    change motion over time: eye squint (a partial lid closure that still blinks fully), wide
    eyes (lids lifted, eased in like the other expressions),
    extra nodding / head shaking (about 1 Hz, seeded phase), and looking around (more gaze
    glances) or holding the gaze on the camera. `identity_strength` above 1 bounds how far
    the face may leave the portrait: expression and pose shrink by 1 / identity_strength.
    """
    n, fps = track.n_frames, track.fps
    t = np.arange(n) / fps
    rng = np.random.default_rng(seed + 7919)
    ease = np.clip(t / 0.5, 0.0, 1.0)
    if controls is not None:
        squint = float(np.clip(controls.expression.get("eye_squint", 0.0) * expression_intensity, 0, 0.6))
        if squint > 0:
            track.blink = (squint + (1 - squint) * track.blink).astype(np.float32)
        wide = float(np.clip(controls.expression.get("eye_wide", 0.0) * expression_intensity, 0, 1))
        if wide > 0:
            ramp = np.clip(t / EXPRESSION_RAMP_S, 0.0, 1.0)
            track.eye_wide = (wide * ramp).astype(np.float32)
        if controls.nod > 0:
            track.head_pitch = (track.head_pitch + 3.0 * controls.nod * ease
                                * np.sin(2 * np.pi * 1.1 * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)
        if controls.shake > 0:
            track.head_yaw = (track.head_yaw + 3.5 * controls.shake * ease
                              * np.sin(2 * np.pi * 0.9 * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)
        if controls.look_around > 0:
            glance = smooth_noise(n, fps, 1.5, rng)
            track.gaze_x = np.clip(track.gaze_x + 0.5 * controls.look_around * np.tanh(glance), -1, 1).astype(np.float32)
            track.head_yaw = (track.head_yaw + 2.0 * controls.look_around * np.tanh(glance) * ease).astype(np.float32)
        elif controls.look_around < 0:
            keep = 1.0 + float(controls.look_around)
            track.gaze_x = (track.gaze_x * keep).astype(np.float32)
            track.gaze_y = (track.gaze_y * keep).astype(np.float32)
    bound = 1.0 / max(1.0, float(identity_strength))
    for ch in ("smile", "brow_raise", "eye_wide", "head_yaw", "head_pitch", "head_roll"):
        setattr(track, ch, (getattr(track, ch) * bound).astype(np.float32))
    for ch in ("head_yaw", "head_pitch", "head_roll"):
        setattr(track, ch, np.clip(getattr(track, ch), -MAX_POSE_DEG, MAX_POSE_DEG).astype(np.float32))
    return track
