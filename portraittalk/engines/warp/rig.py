"""Face rig: turns one frame of motion controls into target positions of the 478 mesh points.

The rig is a small, hand-built blend-shape model on mediapipe's mesh. Every control moves
the landmarks in the face's own frame (x along the eye line, y down the face), with smooth
per-landmark weights computed once from the portrait:

* jaw: the jaw rotates about the ears, so everything below the lip seam drops, fully at the
  lower lip and chin, less towards the jaw angles; beside the mouth the weight blends across
  the seam so the cheeks stretch instead of tearing;
* lips: closing (P/B/M) brings the inner lips together, mostly by raising the lower lip;
  spread/round scale the mouth width; F/V tucks the lower lip under the upper teeth;
* eyelids close onto the lower lid (blink), irises shift (gaze), brows lift, corners smile;
* head pose is a rigid 3-D rotation of the mesh about a pivot in the neck, projected
  orthographically (mediapipe's z shares the x pixel scale), so the nose turns more than
  the cheeks.

Besides landmarks, the rig reports where the teeth are (upper teeth fixed to the skull,
lower teeth carried by the jaw) for the mouth-interior painter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...analysis import face as fm
from ...contracts import FrameControls

# Eye contours from inner to outer corner (upper lid, lower lid), per eye.
EYE_WIDE_LIFT = 1 / 3  # upper-lid lift at eye_wide = 1, as a share of the eye's opening
RIGHT_EYE_UPPER = [133, 173, 157, 158, 159, 160, 161, 246, 33]
RIGHT_EYE_LOWER = [133, 155, 154, 153, 145, 144, 163, 7, 33]
LEFT_EYE_UPPER = [362, 398, 384, 385, 386, 387, 388, 466, 263]
LEFT_EYE_LOWER = [362, 382, 381, 380, 374, 373, 390, 249, 263]
BROWS = [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336]
RIGHT_IRIS = list(range(468, 473))
LEFT_IRIS = list(range(473, 478))


@dataclass
class RigOutput:
    landmarks: np.ndarray  # (478, 2) target positions, same pixel frame as the source mesh
    upper_teeth_edge: np.ndarray  # (11, 2) incisal edge of the upper teeth, image-left to image-right
    lower_teeth_edge: np.ndarray  # (11, 2) top edge of the lower teeth
    jaw_shift: np.ndarray  # (2,) how far the jaw moved the lower teeth (incl. head pose)
    skull_shift: np.ndarray  # (2,) how far head pose moved the upper teeth


@dataclass
class EyeWeights:
    """How one eye's mesh points follow its lids and iris, measured once per portrait."""

    down: np.ndarray  # (2,) unit vector from the upper to the lower lid
    gap: np.ndarray  # (478,) lid opening (pixels) at each point's place along the eye
    above: np.ndarray  # (478,) share of the upper lid's travel each point follows
    between: np.ndarray  # (478,) bool: inside the eye opening
    t: np.ndarray  # (478,) pixels below the inner corner
    up_t: np.ndarray  # (478,) the upper lid's t at each point's place along the eye
    iris: list[int]
    lower: list[int]  # lower-lid contour, inner to outer corner
    eye_w: float  # corner-to-corner width, pixels


def _along(amount: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(N, 2) moves: each point by its ``amount`` along one 2-D ``direction``."""
    return amount[:, None] * direction


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class FaceRig:
    """Per-portrait rig; `pose(controls)` is cheap and called once per video frame."""

    def __init__(self, landmarks: np.ndarray) -> None:
        self.src = landmarks.astype(np.float64)  # (478, 3)
        p = self.src[:, :2]
        ex = p[fm.LEFT_EYE_OUTER] - p[fm.RIGHT_EYE_OUTER]
        self.ex = ex / (np.linalg.norm(ex) + 1e-9)
        self.ey = np.array([-self.ex[1], self.ex[0]])  # image "down" in the face frame
        # On a closed mouth the inner-lip points of a pair nearly coincide (or even cross);
        # the warp's triangles between them would fold when the jaw opens. Keep each upper
        # point at least a little above its lower partner.
        for a, b in zip(fm.INNER_UPPER[1:-1], fm.INNER_LOWER[1:-1]):
            gap = float((p[b] - p[a]) @ self.ey)
            if gap < 0.8:
                mid = (p[a] + p[b]) / 2
                p[a] = mid - self.ey * 0.4
                p[b] = mid + self.ey * 0.4
        self.mouth_w = float(np.linalg.norm(p[fm.MOUTH_RIGHT] - p[fm.MOUTH_LEFT]))
        self.face_h = float(np.linalg.norm(p[fm.CHIN] - p[fm.FOREHEAD]))
        self.mouth_c = (p[fm.MOUTH_LEFT] + p[fm.MOUTH_RIGHT]) / 2
        W = self.mouth_w
        rel = p - self.mouth_c
        self.u = rel @ self.ex / (W / 2)  # −1 … 1 across the mouth
        v = rel @ self.ey / W  # down, in mouth widths

        # Lip seam: midline between the inner lips, as a function of u.
        iu, il = np.array(fm.INNER_UPPER), np.array(fm.INNER_LOWER)
        seam_u = self.u[iu]
        seam_v = (v[iu] + v[il]) / 2
        order = np.argsort(seam_u)
        self.seam_at = lambda uu: np.interp(uu, seam_u[order], seam_v[order])
        dv = v - self.seam_at(np.clip(self.u, -1, 1))
        side = np.sign(dv)
        side[fm.INNER_UPPER + fm.OUTER_UPPER] = -1
        side[fm.INNER_LOWER + fm.OUTER_LOWER] = 1
        side[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT, 78, 308]] = 0
        self.dv = dv

        # Source lip opening per inner-lip pair (pixels along ey), ≥ 0.
        self.src_gap = np.maximum(0.0, (p[il] - p[iu]) @ self.ey)
        self.pair_u = self.u[iu]

        # Jaw weight: full below the seam inside the mouth, blended across it outside.
        au = np.abs(self.u)
        lateral = np.where(au <= 0.5, 1.0, np.exp(-(((au - 0.5) / 1.0) ** 2)))
        inside = 1.0 - _smoothstep(0.9, 1.15, au)
        step = np.where(side > 0, 1.0, np.where(side < 0, 0.0, 0.5))
        blend = _smoothstep(-0.35, 0.35, dv)
        chin_gain = 1.0 + 0.1 * np.clip(dv, 0, 1.5)
        # The lower lip is soft tissue stretched by the jaw: it drops most in the middle,
        # which makes the opening a lens, not a box; the chin below moves as a block.
        curved = 0.3 + 0.7 * np.cos(0.5 * np.pi * np.clip(au, 0, 1)) ** 1.2
        lipness = np.where(side >= 0, 1.0 - _smoothstep(0.08, 0.4, dv), 0.0)
        lateral = np.where(au < 1.0, lipness * np.minimum(curved, lateral) + (1 - lipness) * lateral, lateral)
        self.w_jaw = lateral * (inside * step + (1 - inside) * blend) * chin_gain

        # Lip bodies: weights for moving a whole lip (inner edge to outer edge, tapering off).
        lower_th = max(2.0, float((p[fm.LOWER_LIP_OUTER] - p[fm.LOWER_LIP_INNER]) @ self.ey)) / W
        upper_th = max(2.0, float((p[fm.UPPER_LIP_INNER] - p[fm.UPPER_LIP_OUTER]) @ self.ey)) / W
        in_mouth_x = 1.0 - _smoothstep(1.0, 1.45, au)
        self.w_lower_lip = in_mouth_x * np.where(
            side > 0, 1.0 - _smoothstep(lower_th, lower_th + 0.35, dv), 0.0)
        self.w_upper_lip = in_mouth_x * np.where(
            side < 0, 1.0 - _smoothstep(upper_th, upper_th + 0.3, -dv), 0.0)
        self.w_upper_lip[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT]] = 0.5
        self.w_lower_lip[[fm.MOUTH_LEFT, fm.MOUTH_RIGHT]] = 0.5
        self.w_mouth_area = (1.0 - _smoothstep(1.05, 1.7, au)) * (1.0 - _smoothstep(0.25, 0.7, np.abs(dv)))
        self.w_corner = np.exp(-(((au - 1.0) / 0.45) ** 2)) * np.exp(-((dv / 0.35) ** 2))
        self.w_cheek = np.exp(-(((au - 1.6) / 0.6) ** 2)) * np.exp(-(((dv + 0.5) / 0.5) ** 2))

        # Brows: weight from the distance to the brow points, gated above the eyes.
        brow_pts = p[BROWS]
        d_brow = np.min(np.linalg.norm(p[:, None, :] - brow_pts[None], axis=2), axis=1)
        eye_top = min(p[fm.RIGHT_EYE_TOP] @ self.ey, p[fm.LEFT_EYE_TOP] @ self.ey)
        above_eyes = _smoothstep(0.0, 0.06 * self.face_h, eye_top - p @ self.ey)
        self.w_brow = np.exp(-((d_brow / (0.12 * self.face_h)) ** 2)) * above_eyes

        self.eyes = [self._eye_weights(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_IRIS),
                     self._eye_weights(LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_IRIS)]

        # Pivot of head rotation: in the neck, below the face centre and behind it.
        centre = self.src[[fm.FOREHEAD, fm.CHIN, fm.FACE_EDGE_LEFT, fm.FACE_EDGE_RIGHT]].mean(0)
        self.pivot = centre + np.r_[self.ey * 0.55 * self.face_h, 0.35 * self.face_h]

        # Teeth anchors in the source: the upper incisal edge sits a little below the
        # upper inner lip at rest; the lower teeth's top edge a little above the lower lip.
        self.teeth_upper_src = p[iu] + self.ey * 0.045 * W
        self.teeth_lower_src = p[il] + self.ey * 0.01 * W
        self.jaw_w_teeth = float(np.median(self.w_jaw[il]))  # how much of the jaw's drop the lower teeth get
        self.teeth_z = float(np.median(self.src[iu, 2]))

    def _eye_weights(self, upper: list[int], lower: list[int], iris: list[int]) -> EyeWeights:
        p = self.src[:, :2]
        inner, outer = p[upper[0]], p[upper[-1]]
        axis = outer - inner
        eye_w = float(np.linalg.norm(axis))
        axis = axis / (eye_w + 1e-9)
        down = np.array([-axis[1], axis[0]]) if np.dot([-axis[1], axis[0]], self.ey) > 0 else np.array([axis[1], -axis[0]])
        rel = p - inner
        s = rel @ axis / eye_w  # 0 at inner corner, 1 at outer corner
        t = rel @ down  # pixels below the inner corner
        us, ut = s[upper], t[upper]
        ls, lt = s[lower], t[lower]
        o_u, o_l = np.argsort(us), np.argsort(ls)
        up_t = np.interp(s, us[o_u], ut[o_u])
        lo_t = np.interp(s, ls[o_l], lt[o_l])
        along = (s > -0.15) & (s < 1.15)
        gap = np.maximum(lo_t - up_t, 0)
        # Points on or above the upper lid (within the lid/crease band) follow the lid down.
        band = 0.45 * eye_w
        above = np.where((t <= up_t + 0.5) & along, 1.0 - _smoothstep(0.0, band, up_t - t), 0.0)
        between = along & (t > up_t + 0.5) & (t < lo_t - 0.5)
        return EyeWeights(down=down, gap=gap, above=above, between=between, t=t, up_t=up_t, iris=iris,
                          lower=lower, eye_w=eye_w)

    # ------------------------------------------------------------------------------------
    def pose(self, c: FrameControls) -> RigOutput:
        """Target landmark positions for one frame of controls (see MotionTrack units)."""
        W = self.mouth_w
        p = self.src[:, :2].copy()
        ex, ey = self.ex, self.ey
        jaw = float(np.clip(c.jaw_open, 0, 1.2))
        close = float(np.clip(c.lip_close, 0, 1))
        spread = float(np.clip(c.mouth_wide, -1, 1))
        rnd = float(np.clip(c.lip_round, 0, 1))
        tuck = float(np.clip(c.lower_lip_tuck, 0, 1))
        raise_ = float(np.clip(c.upper_lip_raise, 0, 1))
        smile = float(np.clip(c.smile, -1, 1))
        brow = float(np.clip(c.brow_raise, -1, 1))
        blink = float(np.clip(c.blink, 0, 1))
        eyes_wide = float(np.clip(c.eye_wide, 0, 1))

        # Jaw drop (also the lower teeth).
        drop = jaw * 0.42 * W
        jaw_disp = _along(self.w_jaw * drop, ey)
        p += jaw_disp

        # Upper lip raise and rounding (a small round opening, lips pushed out).
        u2 = np.clip(self.u, -1.5, 1.5) ** 2
        centre_w = np.clip(1 - 0.6 * u2, 0, 1)
        up = (0.08 * raise_ + 0.035 * rnd + 0.02 * tuck) * W + 0.10 * drop  # the upper lip arches as the jaw opens
        p -= _along(self.w_upper_lip * centre_w * up, ey)
        p += _along(self.w_lower_lip * centre_w * 0.03 * rnd * W, ey)

        # Width: spread (EE) widens, rounding (OO) and negative spread narrow.
        sx = 1 + 0.10 * max(spread, 0) - 0.08 * max(-spread, 0) - 0.20 * rnd
        p += _along(self.w_mouth_area * (sx - 1) * self.u * (W / 2), ex)

        # Smile / frown at the corners, cheeks follow a little.
        p += _along(self.w_corner * smile * 0.06 * W * np.sign(self.u), ex)
        p -= _along(self.w_corner * smile * 0.10 * W, ey)
        p -= _along(self.w_cheek * max(smile, 0) * 0.04 * W, ey)

        # Inner-lip gap after the moves so far, per pair, then lip closure and F/V tuck.
        iu, il = fm.INNER_UPPER, fm.INNER_LOWER
        gap_now = np.maximum(0.0, (p[il] - p[iu]) @ ey)
        gap_at = np.interp(np.clip(self.u, self.pair_u.min(), self.pair_u.max()), np.sort(self.pair_u),
                           gap_now[np.argsort(self.pair_u)])
        lower_up = self.w_lower_lip * gap_at * close * 0.75
        upper_down = self.w_upper_lip * gap_at * close * 0.25
        p -= _along(lower_up, ey)
        p += _along(upper_down, ey)
        if tuck > 0:
            # Lower lip rises to just under the upper teeth edge.
            teeth_gap = np.maximum(0.0, gap_at * (1 - close) - 0.02 * W)
            p -= _along(self.w_lower_lip * teeth_gap * tuck, ey)

        # Brows.
        p -= _along(self.w_brow * brow * 0.05 * self.face_h, ey)

        # Eyelids and gaze.
        for eye in self.eyes:
            d = eye.down
            # Lid travel as a share of the opening: down to closed for a blink; up by at most a
            # third of the opening for wide eyes (the sclera stretches; a blink still closes).
            lid = 0.92 * blink - EYE_WIDE_LIFT * eyes_wide * (1.0 - blink)
            move = lid * eye.gap
            p += _along(eye.above * move, d)
            btw = eye.between
            if lid > 0 and btw.any():
                # Points inside the opening are squeezed onto the closing lids.
                frac = (eye.t[btw] - eye.up_t[btw]) / np.maximum(eye.gap[btw], 1e-6)
                p[btw] += _along(move[btw] * (1 - frac), d)
            low = eye.lower[1:-1]
            p[low] -= _along(lid * eye.gap[low] * 0.06, d)
            gx = float(np.clip(c.gaze_x, -1, 1)) * 0.18 * eye.eye_w
            gy = float(np.clip(c.gaze_y, -1, 1)) * 0.08 * eye.eye_w
            p[eye.iris] += gx * ex + gy * ey

        # Teeth: the upper ones stay with the skull, the lower ones ride on the jaw.
        upper_teeth = self.teeth_upper_src.copy()
        lower_teeth = self.teeth_lower_src + ey * drop * self.jaw_w_teeth

        # Head pose: rigid rotation of everything (teeth included) about the neck pivot.
        R = head_rotation(math.radians(c.head_yaw), math.radians(c.head_pitch), math.radians(c.head_roll), ex, ey)
        z = self.src[:, 2]
        pts3 = np.column_stack([p, z])
        moved = (pts3 - self.pivot) @ R.T + self.pivot
        out = moved[:, :2]
        teeth = np.column_stack([np.concatenate([upper_teeth, lower_teeth]), np.full(2 * len(iu), self.teeth_z)])
        teeth_out = ((teeth - self.pivot) @ R.T + self.pivot)[:, :2]
        upper_teeth_out, lower_teeth_out = teeth_out[:len(iu)], teeth_out[len(iu):]
        skull_shift = (upper_teeth_out - self.teeth_upper_src).mean(0)
        jaw_shift = (lower_teeth_out - self.teeth_lower_src).mean(0)
        return RigOutput(out.astype(np.float32), upper_teeth_out, lower_teeth_out, jaw_shift, skull_shift)

    def head_point_shift(self, pts: np.ndarray, yaw: float, pitch: float, roll: float, z: float) -> np.ndarray:
        """Displacement of arbitrary 2-D points (at depth z) under the head rotation (degrees)."""
        R = head_rotation(math.radians(yaw), math.radians(pitch), math.radians(roll), self.ex, self.ey)
        pts3 = np.column_stack([pts, np.full(len(pts), z)])
        return ((pts3 - self.pivot) @ R.T + self.pivot)[:, :2] - pts


def head_rotation(yaw: float, pitch: float, roll: float, ex: np.ndarray, ey: np.ndarray) -> np.ndarray:
    """3×3 rotation in image coordinates for angles given in the face's own frame."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(-pitch), math.sin(-pitch)  # positive pitch = chin up
    cr, sr = math.cos(roll), math.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    # Face frame → image frame (rotate about z by the face's own roll in the portrait).
    B = np.array([[ex[0], ey[0], 0], [ex[1], ey[1], 0], [0, 0, 1]])
    return B @ (r_roll @ r_yaw @ r_pitch) @ B.T
