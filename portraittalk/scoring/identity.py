"""Per-frame identity score: does each output frame still show the portrait's person?

Uses dlib's face-recognition ResNet (128-d descriptors; same person when the Euclidean
distance is below 0.6) with dlib's 5-point landmark model for alignment, both from the
``face_recognition_models`` package. The 68-point model in that package is never used
(its training data forbids commercial use).

Speed: dlib's Python wheel runs the ResNet without BLAS (about 140 ms a face, too slow
to score every frame of a 25 fps video), so the same network is rebuilt in PyTorch from
the weights in dlib's own ``.dat`` file (``dlib_resnet``). In float32 its descriptors equal
dlib's to ~1e-6 (checked by the tests); one core needs ~6–7 ms a face in batches of 16
(``stream``), ~3.5–4 ms in bfloat16 where the CPU has it (distances within 0.003 of
float32's), plus ~1.5 ms to align. dlib itself is used for the 5 landmarks, the aligned
150×150 face chip, the fallback face detector, and as the descriptor backend when PyTorch
is unavailable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from ..contracts import SAME_PERSON_DISTANCE, Box, FrameScore, IdentityScores
from .dlib_resnet import TorchFaceResNet

# A frame where no face is found scores as "not the same person".
NO_FACE_COSINE = 0.0
NO_FACE_DISTANCE = 1.0

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what the ResNet was trained on (dlib's defaults)
# Faces are resampled to this size before landmarking, so every frame is measured at the
# same scale whatever the video resolution (and small faces get sub-pixel landmarks).
_FACE_PX = 160
_CROP_PX = 2 * _FACE_PX
_DETECT_LONG_SIDE = 1024


class IdentityScorer:
    """Loads the models once; every method is safe to call from several threads."""

    def __init__(self, backend: str = "auto", model_dir: str | Path | None = None, precision: str = "auto"):
        """``precision`` of the PyTorch network: "float32" (dlib's own descriptors to ~1e-6),
        "bfloat16" or "auto" (bfloat16 where the CPU computes it natively)."""
        import dlib

        predictor_path, resnet_path = _model_paths(model_dir)
        self._dlib = dlib
        self._lock = threading.Lock()
        self._detector: Any = None  # HOG face detector, loaded on first use: the pipeline passes boxes
        self._landmarks = dlib.shape_predictor(str(predictor_path))
        self._net = None
        self._dlib_net: Any = None
        if backend not in ("auto", "torch", "dlib"):
            raise ValueError(f"unknown backend {backend!r}")
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"unknown precision {precision!r}")
        if backend in ("auto", "torch"):
            try:
                self._net = TorchFaceResNet.from_dlib_file(
                    resnet_path, bfloat16=None if precision == "auto" else precision == "bfloat16")
            except ImportError:
                if backend == "torch":
                    raise
        if self._net is None:
            self._dlib_net = dlib.face_recognition_model_v1(str(resnet_path))
        self.backend = "torch" if self._net is not None else "dlib"
        self.precision = self._net.precision if self._net is not None else "float32"

    # -- faces -----------------------------------------------------------------------

    def detect_face(self, rgb: np.ndarray) -> Box | None:
        """Largest frontal face by dlib's HOG detector, as a face-mesh-style box."""
        h, w = rgb.shape[:2]
        scale = min(1.0, _DETECT_LONG_SIDE / max(h, w))
        small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        small = np.ascontiguousarray(small)
        with self._lock:
            if self._detector is None:
                self._detector = self._dlib.get_frontal_face_detector()
            rects = self._detector(small, 0)
            if not rects:
                rects = self._detector(small, 1)  # upsampled pass for small faces
        if not rects:
            return None
        r = max(rects, key=lambda d: d.area())
        # HOG boxes are tighter than face-mesh boxes (they start at the brows); convert so
        # detected and given boxes lead to the same alignment (see _face_square).
        side = r.width() / scale
        cx, top = (r.left() + r.right()) / 2 / scale, r.top() / scale
        mesh_h = side / _MESH_TO_SQUARE_SIDE
        y0 = top - (_MESH_TO_SQUARE_CY - _MESH_TO_SQUARE_SIDE / 2) * mesh_h
        half_w = 0.45 * mesh_h
        return (int(round(cx - half_w)), int(round(y0)), int(round(cx + half_w)), int(round(y0 + mesh_h)))

    def align(self, rgb: np.ndarray, box: Box | None, points: np.ndarray | None = None) -> np.ndarray | None:
        """The aligned 150×150 face chip the ResNet reads, or None when no face. ``points``:
        dlib's five alignment points in frame pixels when they are known (``FacePoints``);
        otherwise dlib's landmark model finds them."""
        if box is None:
            box = self.detect_face(rgb)
            if box is None:
                return None
        crop, rect, to_crop = _normalised_crop(rgb, box)
        dlib = self._dlib
        with self._lock:
            if points is None:
                shape = self._landmarks(crop, dlib.rectangle(*rect))
            else:  # rounded as the model's own points are
                shape = dlib.full_object_detection(dlib.rectangle(*rect), [
                    dlib.point(int(x), int(y)) for x, y in np.round(to_crop(points)).astype(int)])
            return dlib.get_face_chip(crop, shape, size=CHIP_SIZE, padding=CHIP_PADDING)

    def face_points(self, rgb: np.ndarray, box: Box, mesh: np.ndarray) -> FacePoints | None:
        """dlib's five points on a portrait, tied to its face mesh (None if one falls outside it)."""
        from scipy.spatial import Delaunay

        crop, rect, to_crop = _normalised_crop(rgb, box)
        with self._lock:
            shape = self._landmarks(crop, self._dlib.rectangle(*rect))
        found = to_crop(np.array([[p.x, p.y] for p in shape.parts()], np.float64), inverse=True)
        tri = Delaunay(np.asarray(mesh, np.float64)[:, :2])
        simplex = tri.find_simplex(found)
        if (simplex < 0).any():
            return None
        T = tri.transform[simplex]
        b = np.einsum("pij,pj->pi", T[:, :2], found - T[:, 2])
        return FacePoints(tri.simplices[simplex], np.c_[b, 1 - b.sum(1)])

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) descriptors of aligned chips."""
        if len(chips) == 0:
            return np.zeros((0, 128), np.float32)
        if self._net is not None:
            return self._net(np.stack(chips))
        with self._lock:
            return np.array([self._dlib_net.compute_face_descriptor(c) for c in chips], np.float32)

    # -- descriptors -----------------------------------------------------------------

    def descriptor(self, rgb: np.ndarray, box: Box | None = None) -> np.ndarray | None:
        """128-d descriptor of the face in ``box`` (detected when None); None if no face."""
        chip = self.align(rgb, box)
        return None if chip is None else self.embed([chip])[0]

    def descriptors(self, rgbs: Sequence[np.ndarray], boxes: Sequence[Box | None] | None = None) -> list[np.ndarray | None]:
        boxes = list(boxes) if boxes is not None else [None] * len(rgbs)
        chips = [self.align(rgb, box) for rgb, box in zip(rgbs, boxes)]
        found = [c for c in chips if c is not None]
        vectors = iter(self.embed(found))
        return [next(vectors) if c is not None else None for c in chips]

    def reference(self, rgbs: Sequence[np.ndarray], boxes: Sequence[Box | None] | None = None) -> np.ndarray | None:
        """Mean descriptor of one or more reference pictures of the person.

        With known boxes a descriptor always exists; None only when ``boxes`` are None
        and the fallback detector finds a face in none of the pictures.
        """
        if isinstance(rgbs, np.ndarray) and rgbs.ndim == 3:
            rgbs = [rgbs]
            boxes = [boxes] if boxes is not None and not isinstance(boxes[0], (tuple, list)) else boxes
        found = [d for d in self.descriptors(rgbs, boxes) if d is not None]
        if not found:
            return None
        return np.mean(found, axis=0).astype(np.float32)

    # -- scores ----------------------------------------------------------------------

    def score(self, frame: np.ndarray, box: Box | None, reference: np.ndarray, index: int) -> FrameScore:
        """Score one frame now (streaming use while rendering)."""
        return compare(self.descriptor(frame, box), reference, index)

    def score_frames(self, frames: Iterable[np.ndarray], boxes: Iterable[Box | None] | None,
                     reference: np.ndarray, batch_size: int = 8) -> IdentityScores:
        """Score every frame (batched); ``boxes`` may be None to detect faces."""
        stream = self.stream(reference, batch_size)
        box_iter = iter(boxes) if boxes is not None else None
        for frame in frames:
            stream.add(frame, next(box_iter, None) if box_iter is not None else None)
        return stream.finish()

    def stream(self, reference: np.ndarray, batch_size: int = 16, points: FacePoints | None = None) -> "IdentityStream":
        """A batched scorer fed one frame at a time: ``add(frame, box)`` then ``finish()``."""
        return IdentityStream(self, reference, batch_size, points)


@dataclass(frozen=True)
class FacePoints:
    """dlib's five alignment points of a portrait, each at its barycentric place in a triangle of
    the portrait's face mesh. The warp renderer moves the picture with the mesh, so on its frames
    the points are where the mesh carries them: the alignment then needs no landmark model
    (~0.5 ms a frame less, and none of its frame-to-frame jitter)."""

    vertices: np.ndarray  # (5, 3) mesh indices
    weights: np.ndarray  # (5, 3) barycentric weights

    def at(self, mesh: np.ndarray) -> np.ndarray:
        """(5, 2) frame pixels of the points for a frame whose mesh is ``mesh`` (478, ≥2)."""
        return np.einsum("pk,pkd->pd", self.weights, np.asarray(mesh, np.float64)[self.vertices, :2])


class IdentityStream:
    """Aligns each frame as it arrives (only the 150×150 chip is kept) and runs the
    network in batches of ``batch_size``, about half the cost per frame of ``score``.
    ``add_chip`` takes a frame already aligned (``IdentityScorer.align``), so the alignment and
    the network can run in different threads."""

    def __init__(self, scorer: IdentityScorer, reference: np.ndarray, batch_size: int = 16,
                 points: FacePoints | None = None):
        self._scorer = scorer
        self._points = points
        self._reference = np.asarray(reference, np.float32)
        self._batch_size = max(1, int(batch_size))
        self._pending: list[tuple[int, np.ndarray]] = []
        self._scores: list[FrameScore] = []
        self._count = 0

    def add(self, frame: np.ndarray, box: Box | None, mesh: np.ndarray | None = None) -> None:
        """The next frame; ``mesh``: where its face mesh is, when known (with ``points``, no landmark model runs)."""
        points = self._points.at(mesh) if self._points is not None and mesh is not None else None
        self.add_chip(self._scorer.align(frame, box, points))

    def add_chip(self, chip: np.ndarray | None) -> None:
        """The next frame's aligned chip (None: no face found in it)."""
        index = self._count
        self._count += 1
        if chip is None:
            self._scores.append(compare(None, self._reference, index))
            return
        self._pending.append((index, chip))
        if len(self._pending) >= self._batch_size:
            self._flush()

    def finish(self) -> IdentityScores:
        self._flush()
        return IdentityScores(frames=sorted(self._scores, key=lambda s: s.frame), threshold=SAME_PERSON_DISTANCE)

    def _flush(self) -> None:
        if not self._pending:
            return
        vectors = self._scorer.embed([chip for _, chip in self._pending])
        self._scores.extend(compare(v, self._reference, i) for (i, _), v in zip(self._pending, vectors))
        self._pending = []


def same_person_reference(descriptors: Sequence[np.ndarray | None]) -> tuple[np.ndarray | None,
                                                                             list[tuple[int, float]]]:
    """The identity reference: the mean of the portrait's descriptor (the first) and those of
    extra pictures of the person.

    An extra picture farther than the same-person distance from the portrait shows someone
    else: it is left out (returned as (index, distance)) rather than blended in. The
    reference is None when the portrait itself has no descriptor.
    """
    own = descriptors[0] if len(descriptors) else None
    if own is None:
        return None, []
    kept, strangers = [own], []
    for i, other in enumerate(descriptors[1:], 1):
        if other is None:
            continue
        distance = float(np.linalg.norm(np.asarray(other, np.float64) - own))
        if distance > SAME_PERSON_DISTANCE:
            strangers.append((i, distance))
        else:
            kept.append(other)
    return np.mean(kept, axis=0).astype(np.float32), strangers


def compare(descriptor: np.ndarray | None, reference: np.ndarray, index: int) -> FrameScore:
    """Cosine similarity and Euclidean distance of a descriptor to the reference."""
    if descriptor is None:
        return FrameScore(frame=index, cosine=NO_FACE_COSINE, distance=NO_FACE_DISTANCE, face_found=False)
    a = np.asarray(descriptor, np.float64)
    b = np.asarray(reference, np.float64)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return FrameScore(frame=index, cosine=cosine, distance=float(np.linalg.norm(a - b)), face_found=True)


# -- alignment geometry --------------------------------------------------------------------

# Where dlib's 5-point model expects the face square (the HOG detector's box it was trained
# with), relative to a face-mesh box of height h: side 0.87 h, centre 0.48 h below its top.
# Measured on the sample portraits; the box height is used because it does not shrink
# when the head turns.
_MESH_TO_SQUARE_SIDE = 0.87
_MESH_TO_SQUARE_CY = 0.48


def _face_square(box: Box) -> tuple[float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    h = max(y1 - y0, 1.0)
    side = max(_MESH_TO_SQUARE_SIDE * h, 0.7 * (x1 - x0), 8.0)
    return (x0 + x1) / 2, y0 + _MESH_TO_SQUARE_CY * h, side


def _normalised_crop(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, tuple[int, int, int, int], Callable]:
    """Resample the region around the face so the face square is _FACE_PX wide: (crop, the face
    square in it, the map of frame pixels to crop pixels (``inverse=True``: back)).

    Large faces are first halved with pyrDown (a proper low-pass, much cheaper than an
    area resize) until the remaining scale is at least 0.5, then one bilinear warp puts
    the face square at the centre of a _CROP_PX × _CROP_PX crop (zeros outside the frame).
    """
    cx, cy, side = _face_square(box)
    scale = _FACE_PX / side
    source, origin, factor = rgb, (0.0, 0.0), 1.0
    if scale < 0.5:
        h, w = rgb.shape[:2]
        levels = int(np.floor(np.log2(0.5 / scale))) + 1
        margin = side * _CROP_PX / _FACE_PX / 2 + 4 * 2 ** levels
        x0, y0 = max(int(cx - margin), 0), max(int(cy - margin), 0)
        x1, y1 = min(int(np.ceil(cx + margin)), w), min(int(np.ceil(cy + margin)), h)
        if x1 - x0 >= 2 ** levels and y1 - y0 >= 2 ** levels:
            source, origin = rgb[y0:y1, x0:x1], (float(x0), float(y0))
            for _ in range(levels):
                source = cv2.pyrDown(source)  # output pixel i sits on input pixel 2i
                factor *= 0.5
    step = scale / factor  # source pixels → crop pixels
    qx, qy = (cx - origin[0]) * factor, (cy - origin[1]) * factor
    m = np.array([[step, 0, _CROP_PX / 2 - qx * step], [0, step, _CROP_PX / 2 - qy * step]], np.float32)
    crop = cv2.warpAffine(source, m, (_CROP_PX, _CROP_PX), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    lo = (_CROP_PX - _FACE_PX) // 2

    def to_crop(xy: np.ndarray, inverse: bool = False) -> np.ndarray:
        centre = np.array([cx, cy])
        return (xy - _CROP_PX / 2) / scale + centre if inverse else (xy - centre) * scale + _CROP_PX / 2
    return crop, (lo, lo, lo + _FACE_PX, lo + _FACE_PX), to_crop


def _model_paths(model_dir: str | Path | None) -> tuple[Path, Path]:
    if model_dir is not None:
        folder = Path(model_dir)
        predictor = folder / "shape_predictor_5_face_landmarks.dat"
        resnet = folder / "dlib_face_recognition_resnet_model_v1.dat"
    else:
        import face_recognition_models

        predictor = Path(face_recognition_models.pose_predictor_five_point_model_location())
        resnet = Path(face_recognition_models.face_recognition_model_location())
    for path in (predictor, resnet):
        if not path.is_file():
            raise FileNotFoundError(f"dlib model file missing: {path}")
    return predictor, resnet
