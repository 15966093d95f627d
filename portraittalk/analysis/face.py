"""Face analysis: find the face and fit mediapipe's 478-point face mesh (with irises).

Two passes, because the face mesh's own detector only works for faces that fill much of
the picture: a full-range face detector finds every face on a downscaled copy, the largest
is chosen, and the mesh is fitted on a square crop around it (so small faces in large
frames — a full-length portrait — still get a dense mesh). Coordinates are returned in
full-frame pixels; z uses the same pixel scale as x (mediapipe normalises z by width).

Models: mediapipe's BlazeFace detector and Face Mesh ship inside the `mediapipe`
package (Apache-2.0).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..contracts import FaceAnalysis, Portrait
from ..errors import InputError

# Landmark indices of mediapipe's canonical face mesh that the rest of the code names.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133  # subject's right eye (image left)
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_EYE_TOP, RIGHT_EYE_BOTTOM = 159, 145
LEFT_EYE_TOP, LEFT_EYE_BOTTOM = 386, 374
MOUTH_LEFT, MOUTH_RIGHT = 61, 291  # image-left and image-right mouth corners
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
UPPER_LIP_OUTER, LOWER_LIP_OUTER = 0, 17
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10
FACE_EDGE_LEFT, FACE_EDGE_RIGHT = 234, 454
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473

# Inner lip contour, corner to corner, upper and lower (same order, so entries pair up).
INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
OUTER_UPPER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
OUTER_LOWER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]

MESH_CROP_SIZE = 512  # the mesh is fitted on a square crop of this size around the face
DETECT_LONG_SIDE = 1024  # face detection runs on a copy no larger than this


@contextlib.contextmanager
def _native_stderr_silenced():
    """mediapipe's C++ core logs start-up chatter straight to fd 2; keep stderr for real messages."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class DetectedFace:
    box: tuple[int, int, int, int]  # full-frame pixels
    score: float

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return max(0, x1 - x0) * max(0, y1 - y0)


class FaceAnalyzer:
    """Loads the detectors once; `analyze` is safe to call from several threads."""

    def __init__(self) -> None:
        import mediapipe as mp  # imported here: it is slow to import and logs on import

        self._lock = threading.Lock()  # mediapipe graphs are not re-entrant
        # Graphs log on first use and on some inputs; fd 2 is muted only around their calls.
        self._quiet = True
        with _native_stderr_silenced():
            self._build(mp)

    def _build(self, mp) -> None:
        self._detect_full = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        self._detect_short = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
        )

    def _maybe_quiet(self):
        return _native_stderr_silenced() if self._quiet else contextlib.nullcontext()

    def warm_up(self) -> None:
        """Run every graph once on a blank image, silently (their first run logs to stderr)."""
        blank = np.zeros((256, 256, 3), np.uint8)
        with self._lock, _native_stderr_silenced():
            self._detect_full.process(blank)
            self._detect_short.process(blank)
            self._mesh.process(blank)

    # -- detection ---------------------------------------------------------------------
    def detect_faces(self, rgb: np.ndarray) -> list[DetectedFace]:
        """All faces in the picture, largest first."""
        h, w = rgb.shape[:2]
        scale = min(1.0, DETECT_LONG_SIDE / max(h, w))
        small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        small = np.ascontiguousarray(small)
        faces: list[DetectedFace] = []
        with self._lock, self._maybe_quiet():
            for detector in (self._detect_full, self._detect_short):
                result = detector.process(small)
                for det in result.detections or []:
                    bb = det.location_data.relative_bounding_box
                    box = (
                        int(max(0, bb.xmin) * w), int(max(0, bb.ymin) * h),
                        int(min(1, bb.xmin + bb.width) * w), int(min(1, bb.ymin + bb.height) * h),
                    )
                    face = DetectedFace(box, float(det.score[0]))
                    if face.area > 0 and not any(_iou(face.box, f.box) > 0.3 for f in faces):
                        faces.append(face)
                if faces:
                    break
        return sorted(faces, key=lambda f: f.area, reverse=True)

    # -- mesh --------------------------------------------------------------------------
    def mesh_in_box(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        """Fit the 478-point mesh to the face inside `box` (full-frame pixels); None if it fails."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        side = max(x1 - x0, y1 - y0) * 2.0  # mesh model expects some margin around the face
        crop, origin, scale = _square_crop(rgb, cx, cy, side, MESH_CROP_SIZE)
        with self._lock, self._maybe_quiet():
            result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([[p.x, p.y, p.z] for p in lm], np.float32) * MESH_CROP_SIZE
        pts[:, :2] = pts[:, :2] / scale + origin
        pts[:, 2] = pts[:, 2] / scale
        return pts

    def analyze(self, rgb: np.ndarray, face: int | None = None) -> FaceAnalysis:
        """The mesh of the largest face, or of face number ``face`` counted from the left (1 = the
        leftmost); InputError when there is no usable face or no face with that number."""
        warnings: list[str] = []
        faces = faces_left_to_right(self.detect_faces(rgb))
        chosen = choose_face(faces, face)
        landmarks = self.mesh_in_box(rgb, chosen.box) if chosen is not None else None
        if landmarks is None and len(faces) <= 1:
            # The detector can miss faces the mesh still fits (close-ups, paintings): try the whole frame.
            h, w = rgb.shape[:2]
            landmarks = self.mesh_in_box(rgb, (0, 0, w, h)) if max(h, w) > 0 else None
            if landmarks is not None and not faces:
                faces = [DetectedFace(_box_of(landmarks, rgb.shape), 0.5)]
                chosen = choose_face(faces, face)
        if landmarks is None or chosen is None:
            raise InputError(
                "No face was found in the portrait; please use a clear, front-facing photo of one person."
            )
        box = _box_of(landmarks, rgb.shape)
        number = faces.index(chosen) + 1
        if len(faces) > 1 and face is None:
            # The box named is the report's face box (the fitted mesh), so the two always agree.
            warnings.append(several_faces_note(len(faces), number, box))
        face_px = max(box[2] - box[0], box[3] - box[1])
        if face_px < 64:
            warnings.append(
                f"The face is very small ({face_px} px); a closer or larger portrait will look much better."
            )
        yaw = estimate_yaw_degrees(landmarks)
        if abs(yaw) > 35:
            warnings.append(
                f"The face is turned about {abs(yaw):.0f}° away from the camera; a front-facing photo works best."
            )
        return FaceAnalysis(landmarks=landmarks, box=box, faces_found=max(1, len(faces)), warnings=warnings,
                            number=number)


def faces_left_to_right(faces: list[DetectedFace]) -> list[DetectedFace]:
    """Faces in the order they are numbered on the page: by the centre of their box, from the left."""
    return sorted(faces, key=lambda f: f.box[0] + f.box[2])


def choose_face(faces: list[DetectedFace], number: int | None) -> DetectedFace | None:
    """Face ``number`` (1 = the leftmost) of faces in left-to-right order, or the largest when
    ``number`` is None; None when there are no faces; InputError for a number with no face."""
    if not faces:
        return None
    if number is None:
        return max(faces, key=lambda f: f.area)
    if not 1 <= number <= len(faces):
        count = "one face" if len(faces) == 1 else f"{len(faces)} faces, numbered 1 to {len(faces)} from the left"
        raise InputError(f"There is no face {number} in the portrait: it has {count}; choose one of them.")
    return faces[number - 1]


def several_faces_note(count: int, number: int, box: tuple[int, int, int, int]) -> str:
    """The warning that says which of several faces talks when none was chosen."""
    return (f"{count} faces were found; the largest one, face {number} from the left (box {list(box)}), is "
            "animated; to animate another, choose its number.")


def estimate_yaw_degrees(landmarks: np.ndarray) -> float:
    """Head yaw from the depth difference of the two cheek edges of the 3-D mesh (0 = frontal)."""
    d = landmarks[FACE_EDGE_RIGHT] - landmarks[FACE_EDGE_LEFT]
    return float(math.degrees(math.atan2(-d[2], d[0])))


def mouth_gap_ratio(landmarks: np.ndarray) -> float:
    """Inner-lip opening at the centre divided by the mouth width (0 = closed)."""
    gap = np.linalg.norm(landmarks[LOWER_LIP_INNER, :2] - landmarks[UPPER_LIP_INNER, :2])
    width = np.linalg.norm(landmarks[MOUTH_RIGHT, :2] - landmarks[MOUTH_LEFT, :2]) + 1e-6
    return float(gap / width)


def eye_open_ratio(landmarks: np.ndarray) -> float:
    """Mean eyelid opening divided by the eye width (both eyes)."""
    r = np.linalg.norm(landmarks[RIGHT_EYE_TOP, :2] - landmarks[RIGHT_EYE_BOTTOM, :2]) / (
        np.linalg.norm(landmarks[RIGHT_EYE_OUTER, :2] - landmarks[RIGHT_EYE_INNER, :2]) + 1e-6)
    l_ = np.linalg.norm(landmarks[LEFT_EYE_TOP, :2] - landmarks[LEFT_EYE_BOTTOM, :2]) / (
        np.linalg.norm(landmarks[LEFT_EYE_OUTER, :2] - landmarks[LEFT_EYE_INNER, :2]) + 1e-6)
    return float((r + l_) / 2)


def _box_of(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = np.floor(landmarks[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(landmarks[:, :2].max(0)).astype(int)
    return int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1))


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _square_crop(rgb: np.ndarray, cx: float, cy: float, side: float, out: int):
    """Square crop centred at (cx, cy) resampled to out×out (border-replicated outside the image).

    Returns (crop, origin_xy, scale) with full = crop / scale + origin.
    """
    scale = out / side
    origin = np.array([cx - side / 2, cy - side / 2], np.float32)
    m = np.array([[scale, 0, -origin[0] * scale], [0, scale, -origin[1] * scale]], np.float32)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(rgb, m, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return crop, origin, scale


# -- orientation: a photo stored sideways or upside down ----------------------------------------

# Detector scores (0…1) of the best turn and the mesh's turn further apart than this overrule the mesh.
_CLEARLY_BETTER = 0.1

def stand_upright(analyzer: FaceAnalyzer, portrait: Portrait,
                  face_number: int | None = None) -> tuple[Portrait, FaceAnalysis]:
    """The portrait turned by quarter turns so that its face is upright, and that face's mesh.

    The engines animate an upright face; an upside-down one would get its mouth painted
    between its eyes. The returned portrait says how it was turned (``upright_turns``), so
    the video can turn its frames back to the photo's own orientation.
    """
    try:
        face = analyzer.analyze(portrait.rgb, face_number)
    except InputError:
        turns = upright_turns(analyzer, portrait.rgb, None)
        if turns == 0:
            raise  # no turn shows a face either
    else:
        turns = upright_turns(analyzer, portrait.rgb, face)
        if turns == 0:
            return portrait, face
    rgb = np.ascontiguousarray(np.rot90(portrait.rgb, turns))
    note = ("the face is upside down: it was animated upright and the video keeps the photo's orientation"
            if turns == 2 else "the face lies on its side: it was animated upright and the video keeps the "
            "photo's orientation")
    upright = replace(portrait, rgb=rgb, upright_turns=turns, notes=[*portrait.notes, note])
    return upright, analyzer.analyze(rgb, face_number)


def upright_turns(analyzer: FaceAnalyzer, rgb: np.ndarray, face: FaceAnalysis | None) -> int:
    """Quarter turns (np.rot90's k) that make the face in ``rgb`` upright.

    The face detector scores an upright face highest, but a face on its side can score as
    high as upright. The mesh fits a face rolled by up to about a quarter turn correctly, so
    its eyes-to-mouth direction gives the turn; but it fits an upside-down face as if upright
    (its mouth on the real eyes). So the mesh's turn and the opposite one are told apart by
    the detector, whose own best turn wins only when clearly better (the mesh may have been
    fitted to something else than a face).
    """
    scores = [_detector_score(analyzer, np.rot90(rgb, k)) for k in range(4)]
    best = int(np.argmax(scores))
    if face is None:
        return best
    guess = _turns_from_mesh(face.landmarks)
    pick = max((guess, (guess + 2) % 4), key=lambda k: scores[k])  # a tie keeps the mesh's own reading
    return best if scores[best] > scores[pick] + _CLEARLY_BETTER else pick


def _turns_from_mesh(landmarks: np.ndarray) -> int:
    eyes = (landmarks[RIGHT_EYE_OUTER, :2] + landmarks[LEFT_EYE_OUTER, :2]) / 2
    mouth = (landmarks[UPPER_LIP_OUTER, :2] + landmarks[LOWER_LIP_OUTER, :2]) / 2
    dx, dy = mouth - eyes
    # How far down the eyes-to-mouth direction points after k counter-clockwise turns.
    return int(np.argmax([dy, -dx, -dy, dx]))


def _detector_score(analyzer: FaceAnalyzer, rgb: np.ndarray) -> float:
    return max((f.score for f in analyzer.detect_faces(np.ascontiguousarray(rgb))), default=0.0)
