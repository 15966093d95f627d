"""Training data: a folder of talking-face videos → cached face crops, landmarks, audio, embeddings.

Preprocessing (once per video, cached under ``cache_dir/<video name>-<hash>/``):

* frames decoded with the bundled ffmpeg at a fixed frame rate; mediapipe's face mesh (478
  points) on every frame; missing detections are interpolated from neighbours, and videos
  where the face is missing too often are skipped;
* one square crop box per video (median face centre, largest face size × ``crop_scale``), so the
  camera does not jitter; frames are cropped and resized to ``resolution`` and the landmarks
  are moved into crop coordinates;
* audio as 16 kHz mono float32; dlib face descriptors of a few frames (identity-token inputs);
* per-frame speech features of a given encoder, cached beside the rest under the encoder's key.

Arrays are stored as ``.npy`` files and memory-mapped, so large datasets do not fill RAM.

Items (:class:`TalkingFaceVideoDataset`): a clip of ``clip_length`` consecutive frames (1 for
stage 1) with its structure maps, reconstruction-loss weights, audio windows and caption, plus
``num_references`` reference frames of the same video with their face descriptors. A caption is
read from ``<video>.txt`` beside the video when present.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import SAMPLE_RATE
from .structure import loss_weights, structure_map_from_landmarks

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
CACHE_VERSION = 1


# ---------------------------------------------------------------------------- face crop geometry


def face_crop_box(points_xy: np.ndarray, scale: float = 1.6) -> tuple[float, float, float, float]:
    """Square box ``(x0, y0, x1, y1)`` around landmarks, ``scale`` × their extent (may leave the image)."""
    pts = np.asarray(points_xy, dtype=np.float64)[:, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2
    side = float(max(hi - lo)) * scale
    return (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2)


def crop_square(rgb: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The ``box`` region resized to ``size``×``size``; outside the image the edge pixels repeat."""
    import cv2

    x0, y0, x1, y1 = box
    s = size / (x1 - x0)
    matrix = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.warpAffine(rgb, matrix, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def to_crop_coords(points_xy: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    x0, y0, x1, _ = box
    s = size / (x1 - x0)
    pts = np.asarray(points_xy, dtype=np.float32)[..., :2].copy()
    pts[..., 0] = (pts[..., 0] - x0) * s
    pts[..., 1] = (pts[..., 1] - y0) * s
    return pts


# ---------------------------------------------------------------------------- decoding


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def iter_video_frames(path: Path, fps: float, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of ``path`` resampled to ``fps``."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", f"fps={fps}"])
    meta = next(reader)
    width, height = meta["size"]
    try:
        for i, raw in enumerate(reader):
            if max_frames is not None and i >= max_frames:
                break
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def decode_audio(path: Path) -> np.ndarray:
    """Mono 16 kHz float32 audio of a media file (empty when it has no audio stream)."""
    cmd = [_ffmpeg(), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"]
    out = subprocess.run(cmd, capture_output=True, check=False)
    return np.frombuffer(out.stdout, dtype=np.float32).copy()


class FaceMeshTracker:
    """mediapipe face mesh in video mode: 478 landmarks in pixels, or None when no face is found."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w, p.y * h) for p in lm], dtype=np.float32)

    def close(self) -> None:
        self._mesh.close()


def _fill_missing(tracks: list[np.ndarray | None]) -> np.ndarray:
    """Linear interpolation of missing per-frame landmark sets (edges hold the nearest)."""
    have = np.array([t is not None for t in tracks])
    idx = np.flatnonzero(have)
    ref = tracks[idx[0]]
    stacked = np.stack([t if t is not None else np.zeros_like(ref) for t in tracks]).reshape(len(tracks), -1)
    frames = np.arange(len(tracks))
    for col in range(stacked.shape[1]):
        stacked[:, col] = np.interp(frames, idx, stacked[idx, col])
    return stacked.reshape(len(tracks), *ref.shape)


# ---------------------------------------------------------------------------- cache


@dataclass
class VideoCache:
    """One preprocessed video (arrays memory-mapped from ``root``)."""

    root: Path
    meta: dict[str, Any]
    frames: np.ndarray  # (N, S, S, 3) uint8 face crops
    landmarks: np.ndarray  # (N, 478, 2) float32, crop pixels
    audio: np.ndarray  # (n,) float32, 16 kHz
    face_embeddings: np.ndarray  # (K, D) float32
    embedding_frames: np.ndarray  # (K,) int: frames the descriptors come from

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    def audio_features(self, key: str) -> np.ndarray | None:
        path = self.root / f"audio_features-{key}.npy"
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def store_audio_features(self, key: str, features: np.ndarray) -> None:
        np.save(self.root / f"audio_features-{key}.npy", np.asarray(features, dtype=np.float16))


def write_video_cache(
    root: Path, frames: np.ndarray, landmarks: np.ndarray, audio_16k: np.ndarray, fps: float,
    face_embeddings: np.ndarray, embedding_frames: np.ndarray, caption: str = "", source: str = "",
) -> VideoCache:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "frames.npy", np.asarray(frames, dtype=np.uint8))
    np.save(root / "landmarks.npy", np.asarray(landmarks, dtype=np.float32))
    np.save(root / "audio.npy", np.asarray(audio_16k, dtype=np.float32))
    np.save(root / "face_embeddings.npy", np.asarray(face_embeddings, dtype=np.float32))
    np.save(root / "embedding_frames.npy", np.asarray(embedding_frames, dtype=np.int64))
    meta = {"version": CACHE_VERSION, "fps": float(fps), "n_frames": int(len(frames)),
            "resolution": int(frames.shape[1]), "caption": caption, "source": source}
    (root / "meta.json").write_text(json.dumps(meta, indent=1))  # written last: marks the cache complete
    return load_video_cache(root)


def load_video_cache(root: Path) -> VideoCache:
    root = Path(root)
    meta = json.loads((root / "meta.json").read_text())
    load = lambda name: np.load(root / name, mmap_mode="r")  # noqa: E731
    return VideoCache(root, meta, load("frames.npy"), load("landmarks.npy"), np.load(root / "audio.npy"),
                      np.load(root / "face_embeddings.npy"), np.load(root / "embedding_frames.npy"))


def _cache_name(path: Path, resolution: int, fps: float, crop_scale: float) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{resolution}|{fps}|{crop_scale}|{CACHE_VERSION}"
    return f"{path.stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def preprocess_video(
    path: Path, cache_dir: Path, resolution: int = 512, fps: float = 25.0, crop_scale: float = 1.6,
    max_seconds: float | None = None, face_embedder: Callable[[np.ndarray], np.ndarray] | None = None,
    tracker_factory: Callable[[], Callable[[np.ndarray], np.ndarray | None]] = FaceMeshTracker,
    max_missing: float = 0.2, num_embeddings: int = 8,
) -> VideoCache | None:
    """Preprocess one video into the cache (reused if present); None when it has no usable face."""
    path = Path(path)
    root = Path(cache_dir) / _cache_name(path, resolution, fps, crop_scale)
    if (root / "meta.json").is_file():
        return load_video_cache(root)
    max_frames = None if max_seconds is None else int(max_seconds * fps)

    tracker = tracker_factory()
    try:
        tracks = [tracker(frame) for frame in iter_video_frames(path, fps, max_frames)]
    finally:
        getattr(tracker, "close", lambda: None)()
    found = sum(t is not None for t in tracks)
    if not tracks or found < (1 - max_missing) * len(tracks):
        log.warning("skipping %s: a face was found in %d of %d frames", path.name, found, len(tracks))
        return None
    landmarks = _fill_missing(tracks)

    boxes = np.array([face_crop_box(p, crop_scale) for p in landmarks])
    centre = np.median((boxes[:, :2] + boxes[:, 2:]) / 2, axis=0)
    side = float((boxes[:, 2] - boxes[:, 0]).max())
    box = (centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2)
    frames = np.stack([crop_square(f, box, resolution) for f in iter_video_frames(path, fps, len(landmarks))])
    landmarks = to_crop_coords(landmarks[: len(frames)], box, resolution)

    audio = decode_audio(path)
    want = int(round(len(frames) / fps * SAMPLE_RATE))
    audio = np.pad(audio[:want], (0, max(0, want - len(audio))))

    if face_embedder is None:
        from .identity import FaceEmbedder

        face_embedder = FaceEmbedder()
    picks = np.unique(np.linspace(0, len(frames) - 1, min(num_embeddings, len(frames))).round().astype(int))
    embeddings = np.stack([face_embedder(frames[i]) for i in picks])
    caption_file = path.with_suffix(".txt")
    caption = caption_file.read_text().strip() if caption_file.is_file() else ""
    return write_video_cache(root, frames, landmarks, audio, fps, embeddings, picks, caption, source=path.name)


# ---------------------------------------------------------------------------- dataset


class TalkingFaceVideoDataset(Dataset[dict[str, Any]]):
    """Clips (stage 2) or single frames (stage 1, ``clip_length=1``) of talking-face videos."""

    def __init__(
        self,
        caches: list[VideoCache],
        clip_length: int = 1,
        frame_stride: int = 1,
        num_references: int = 1,
        audio_feature_key: str | None = None,
        audio_context_frames: int = 2,
        face_weight: float = 1.0,
        mouth_weight: float = 2.0,
        samples_per_epoch: int | None = None,
    ) -> None:
        span = (clip_length - 1) * frame_stride + 1
        self.caches = [c for c in caches if c.n_frames >= span]
        if not self.caches:
            raise ValueError(f"no preprocessed video is long enough for clips of {clip_length} frames")
        self.clip_length = clip_length
        self.frame_stride = frame_stride
        self.num_references = num_references
        self.audio_feature_key = audio_feature_key
        self.audio_context_frames = audio_context_frames
        self.face_weight = face_weight
        self.mouth_weight = mouth_weight
        self.samples_per_epoch = samples_per_epoch or sum(c.n_frames for c in self.caches) // span
        if audio_feature_key is not None:
            missing = [c.root.name for c in self.caches if c.audio_features(audio_feature_key) is None]
            if missing:
                raise ValueError(f"speech features {audio_feature_key} are not cached for {missing[:3]}")

    @classmethod
    def from_folder(
        cls, video_dir: Path, cache_dir: Path, resolution: int, fps: float = 25.0, crop_scale: float = 1.6,
        max_seconds: float | None = None, face_embedder: Callable[[np.ndarray], np.ndarray] | None = None,
        **kwargs: Any,
    ) -> "TalkingFaceVideoDataset":
        videos = sorted(p for p in Path(video_dir).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise ValueError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {video_dir}")
        caches = [c for p in videos if (c := preprocess_video(p, cache_dir, resolution, fps, crop_scale, max_seconds,
                                                              face_embedder)) is not None]
        return cls(caches, **kwargs)

    @classmethod
    def from_cache(cls, cache_dir: Path, **kwargs: Any) -> "TalkingFaceVideoDataset":
        roots = sorted(p.parent for p in Path(cache_dir).glob("*/meta.json"))
        return cls([load_video_cache(r) for r in roots], **kwargs)

    def cache_audio_features(self, key: str, feature_fn: Callable[[np.ndarray, float, int], np.ndarray]) -> None:
        """Compute (once) and store per-frame speech features for every video under ``key``
        (``audio_context_frames`` beyond the last frame, as the pipeline does)."""
        for cache in self.caches:
            if cache.audio_features(key) is None:
                n = cache.n_frames + self.audio_context_frames
                cache.store_audio_features(key, feature_fn(cache.audio, cache.fps, n))
        self.audio_feature_key = key

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        cache = self.caches[index % len(self.caches)]
        span = (self.clip_length - 1) * self.frame_stride + 1
        start = int(torch.randint(0, cache.n_frames - span + 1, ()).item())
        frames_idx = np.arange(start, start + span, self.frame_stride)
        pick = torch.randint(0, len(cache.embedding_frames), (self.num_references,)).numpy()
        refs_idx = cache.embedding_frames[pick]
        size = cache.frames.shape[1]

        def pixels(idx: np.ndarray) -> torch.Tensor:
            arr = np.asarray(cache.frames[idx], dtype=np.float32)
            return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0

        maps = np.stack([structure_map_from_landmarks(cache.landmarks[i], size) for i in frames_idx])
        structure = torch.from_numpy(maps).permute(0, 3, 1, 2)
        item: dict[str, Any] = {
            "pixel_values": pixels(frames_idx),
            "reference_pixels": pixels(refs_idx),
            "face_embeddings": torch.from_numpy(np.asarray(cache.face_embeddings[pick], dtype=np.float32)),
            "structure": structure,
            "loss_weights": loss_weights(structure, self.face_weight, self.mouth_weight),
            "caption": cache.meta.get("caption", ""),
        }
        if self.audio_feature_key is not None:
            # Only the rows these windows need are read from the memory map.
            c = self.audio_context_frames
            feats = cache.audio_features(self.audio_feature_key)
            if feats is None:  # checked when the key was set; the cache folder changed since
                raise ValueError(f"speech features {self.audio_feature_key} are missing for {cache.root.name}")
            rows = np.clip(frames_idx[:, None] + np.arange(-c, c + 1)[None, :], 0, len(feats) - 1)
            item["audio_windows"] = torch.from_numpy(np.asarray(feats[rows.reshape(-1)], dtype=np.float32)).unflatten(
                0, rows.shape
            )
        return item
