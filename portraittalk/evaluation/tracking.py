"""Following the face through a video: the face mesh per frame (:class:`FaceTracker`) and
the head-rigid points with the head pose (:class:`HeadTracker`)."""

from __future__ import annotations

import cv2
import numpy as np

from ..analysis import face as fm
from ..contracts import Box

# Landmarks that move only with the head and have texture for optical flow: eye corners,
# nose tip, bridge and wings, the face's side edges (their depth gives yaw).
RIGID_LANDMARKS = (33, 133, 362, 263, 1, 6, 168, 98, 327, 234, 454)
# The head track blends optical flow (exact frame-to-frame motion) with the face mesh
# (no drift): p = 0.95·(p_prev + flow) + 0.05·mesh. The mesh fit alone shifts these points
# by up to ~3 % of the eye distance when only the mouth opens; at speech rates (~4 Hz)
# this blend passes ~5 % of that, while the flow carries the real head motion.
FLOW_WEIGHT = 0.95
MAX_FLOW_MESH_GAP = 0.15  # flow and mesh this far apart (× eye distance): the flow lost the point


class HeadTracker:
    """Head-rigid points per frame (optical flow fused with the mesh) and the head pose.

    ``update(grey, landmarks)`` returns the fused points (k, 2) and their flow velocity
    since the previous frame (k, 2), each None/NaN where unknown. Pose is the rotation of
    the portrait's 3-D rigid points that best explains the fused 2-D points (orthographic
    camera), so (0, 0, 0) is the portrait's own pose.
    """

    def __init__(self, portrait_landmarks: np.ndarray) -> None:
        ref = np.asarray(portrait_landmarks, np.float64)[list(RIGID_LANDMARKS)]
        self._ref = ref - ref.mean(0)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None  # (grey, fused points)

    def reset(self) -> None:
        """Forget the previous frame (after a cut or a re-detection)."""
        self._prev = None

    def update(self, grey: np.ndarray, landmarks: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
        velocity = np.full((len(RIGID_LANDMARKS), 2), np.nan, np.float32)
        if landmarks is None:
            self._prev = None
            return None, velocity
        mesh = np.asarray(landmarks, np.float32)[list(RIGID_LANDMARKS), :2]
        fused = mesh
        if self._prev is not None:
            prev_grey, prev_pts = self._prev
            nxt, status, _ = cv2.calcOpticalFlowPyrLK(  # type: ignore[call-overload]  # None: no initial guess
                prev_grey, grey, prev_pts.reshape(-1, 1, 2), None, winSize=(21, 21), maxLevel=3)
            nxt = nxt.reshape(-1, 2)
            # A point the flow lost, or that wandered far from the mesh, restarts from the mesh.
            eye_distance = float(np.linalg.norm(mesh[3] - mesh[0])) + 1e-6
            ok = (status.ravel() == 1) & (np.linalg.norm(nxt - mesh, axis=1) < MAX_FLOW_MESH_GAP * eye_distance)
            velocity[ok] = nxt[ok] - prev_pts[ok]
            fused = np.where(ok[:, None], FLOW_WEIGHT * nxt + (1 - FLOW_WEIGHT) * mesh, mesh).astype(np.float32)
        self._prev = (grey, fused)
        return fused, velocity

    def pose(self, points: np.ndarray) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees relative to the portrait."""
        from scipy.spatial.transform import Rotation

        x = np.asarray(points, np.float64)
        x = x - x.mean(0)
        m = np.linalg.lstsq(self._ref, x, rcond=None)[0].T  # 2×3 scaled orthographic projection
        r1 = m[0] / (np.linalg.norm(m[0]) + 1e-12)
        r2 = m[1] - r1 * (r1 @ m[1])
        r2 /= np.linalg.norm(r2) + 1e-12
        pitch, yaw, roll = Rotation.from_matrix(np.stack([r1, r2, np.cross(r1, r2)])).as_euler("xyz", degrees=True)
        return float(yaw), float(pitch), float(roll)


class FaceTracker:
    """Face mesh per frame: re-fit in the previous frame's box, re-detect when that fails.

    A re-fit that lands somewhere else (box overlap below 0.3) also counts as a failure, so
    a cut to another shot re-detects instead of following a wrong face. Boxes are drawn
    around the mesh by analysis.face's own helper, so they match ``FaceAnalysis.box``.
    """

    MIN_IOU = 0.3

    def __init__(self, analyzer: "fm.FaceAnalyzer") -> None:
        self.analyzer = analyzer
        self.detections = 0  # full detections run (the first frame and every re-detection)
        self.detected_last = False  # whether the last frame's face came from a fresh detection
        self._prev: Box | None = None

    def update(self, rgb: np.ndarray) -> tuple[np.ndarray | None, Box | None]:
        lm = None
        if self._prev is not None:
            lm = self.analyzer.mesh_in_box(rgb, self._prev)
            if lm is not None and fm._iou(fm._box_of(lm, rgb.shape), self._prev) < self.MIN_IOU:
                lm = None
        self.detected_last = lm is None
        if lm is None:
            lm = self._detect(rgb)
        self._prev = fm._box_of(lm, rgb.shape) if lm is not None else None
        return lm, self._prev

    def _detect(self, rgb: np.ndarray) -> np.ndarray | None:
        self.detections += 1
        faces = self.analyzer.detect_faces(rgb)
        lm = self.analyzer.mesh_in_box(rgb, faces[0].box) if faces else None
        if lm is None:
            # Close-ups can defeat the detector while the mesh still fits the whole frame.
            h, w = rgb.shape[:2]
            lm = self.analyzer.mesh_in_box(rgb, (0, 0, w, h))
        # Re-fit in the mesh's own box until the box settles, as it does on tracked frames,
        # so a (re-)detection does not show up as a jump in the measurements.
        for _ in range(3):
            if lm is None:
                break
            box = fm._box_of(lm, rgb.shape)
            refit = self.analyzer.mesh_in_box(rgb, box)
            if refit is None:
                break
            lm = refit
            if fm._iou(fm._box_of(lm, rgb.shape), box) > 0.98:
                break
        return lm
