"""Speech conditioning: wav2vec2 features per video frame, windowed, projected to audio tokens.

The design follows the common audio-driven portrait models (EMO, Hallo): the hidden states of
every transformer layer of a wav2vec2 encoder (phonetic detail in the middle layers, prosody in
the upper ones) are resampled to the video frame rate; each frame sees a window of
``2·context_frames + 1`` frames around it (co-articulation: the mouth prepares for the next sound
and finishes the previous one); an MLP maps the flattened window to a few cross-attention tokens,
which reach the denoiser through their own key/value projections (decoupled cross-attention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

if TYPE_CHECKING:
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

SAMPLE_RATE = 16000
# wav2vec2's convolutional front end: one feature every 320 samples over a 400-sample field.
_HOP = 320
_FIELD = 400


# diffusers' ModelMixin and ConfigMixin declare ``config_name`` as str and None; ModelMixin's wins.
class AudioProjection(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """``(..., window, layers, dim)`` windowed speech features → ``(..., num_tokens, cross_attention_dim)``."""

    @register_to_config
    def __init__(
        self,
        feature_dim: int = 768,
        num_feature_layers: int = 12,
        context_frames: int = 2,
        intermediate_dim: int = 512,
        num_tokens: int = 32,
        cross_attention_dim: int = 768,
    ) -> None:
        super().__init__()
        window = 2 * context_frames + 1
        self.proj = nn.Sequential(
            nn.Linear(window * num_feature_layers * feature_dim, intermediate_dim),
            nn.SiLU(),
            nn.Linear(intermediate_dim, intermediate_dim),
            nn.SiLU(),
            nn.Linear(intermediate_dim, num_tokens * cross_attention_dim),
        )
        self.norm = nn.LayerNorm(cross_attention_dim)

    @property
    def window(self) -> int:
        return 2 * self.config["context_frames"] + 1

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        lead = windows.shape[:-3]
        x = self.proj(windows.to(self.dtype).flatten(-3))
        return self.norm(x.view(*lead, self.config["num_tokens"], self.config["cross_attention_dim"]))


def window_features(per_frame: torch.Tensor, context_frames: int, start: int = 0, length: int | None = None) -> torch.Tensor:
    """``(N, L, D)`` per-frame features → ``(length, 2c+1, L, D)`` windows for frames ``start…``.

    Windows reaching past either end repeat the edge frame (no invented speech).
    """
    n = per_frame.shape[0]
    length = n - start if length is None else length
    offsets = torch.arange(-context_frames, context_frames + 1, device=per_frame.device)
    frames = torch.arange(start, start + length, device=per_frame.device)
    index = (frames[:, None] + offsets[None, :]).clamp(0, n - 1)
    return per_frame[index]


class SpeechFeatureEncoder:
    """Per-video-frame wav2vec2 features of a 16 kHz waveform.

    Long audio is encoded in chunks (attention cost grows with the square of the length) with a
    margin of context on both sides that is discarded, so chunk borders leave no trace.
    """

    def __init__(self, model: Wav2Vec2Model, feature_extractor: Wav2Vec2FeatureExtractor | None = None,
                 chunk_seconds: float = 30.0, margin_seconds: float = 2.0) -> None:
        self.model = model
        self.feature_extractor = feature_extractor
        self.chunk = int(chunk_seconds * SAMPLE_RATE)
        self.margin = int(margin_seconds * SAMPLE_RATE)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def feature_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _normalise(self, audio: np.ndarray) -> np.ndarray:
        if self.feature_extractor is None:
            return audio
        values = self.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_values
        return np.asarray(values[0], dtype=np.float32)

    @torch.no_grad()
    def per_frame(self, audio_16k: np.ndarray, fps: float, n_frames: int) -> torch.Tensor:
        """``(n_frames, layers, dim)`` float32 features, frame ``i`` centred at ``(i + 0.5) / fps``
        (silence is assumed where the audio is shorter than the video)."""
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        # Audio past the last frame is kept: it is the right-hand context of the last frames, and
        # a frame's features then do not depend on how many frames are requested.
        want = int(round(n_frames / fps * SAMPLE_RATE))
        audio = np.pad(audio, (0, max(0, want - len(audio))))
        if len(audio) < _FIELD:
            audio = np.pad(audio, (0, _FIELD - len(audio)))
        values = self._normalise(audio)
        device, dtype = self.model.device, self.model.dtype

        feats, times = [], []
        for start in range(0, len(values), self.chunk):
            lo = max(0, start - self.margin)
            hi = min(len(values), start + self.chunk + self.margin)
            segment = values[lo:hi]
            if len(segment) < _FIELD:
                segment = np.pad(segment, (0, _FIELD - len(segment)))
            out = self.model(torch.from_numpy(segment)[None].to(device, dtype), output_hidden_states=True)
            hidden = torch.stack(out.hidden_states[1:], dim=2)[0].float()  # (T, L, D)
            centre = (lo + np.arange(hidden.shape[0]) * _HOP + _FIELD / 2) / SAMPLE_RATE
            keep = (centre >= start / SAMPLE_RATE) & (centre < (start + self.chunk) / SAMPLE_RATE)
            if start == 0:
                keep |= centre < 0
            if not keep.any():
                continue
            feats.append(hidden[torch.from_numpy(keep).to(device)])
            times.append(centre[keep])
        features = torch.cat(feats, dim=0)
        return _resample_in_time(features, np.concatenate(times), (np.arange(n_frames) + 0.5) / fps)


def _resample_in_time(features: torch.Tensor, times: np.ndarray, targets: np.ndarray) -> torch.Tensor:
    """Linear interpolation of ``(T, ...)`` features sampled at ``times`` onto ``targets`` (clamped)."""
    if len(times) == 1:
        return features[:1].expand(len(targets), *features.shape[1:]).clone()
    pos = np.interp(targets, times, np.arange(len(times), dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(times) - 1)
    w = torch.from_numpy((pos - lo).astype(np.float32)).to(features.device).view(-1, *([1] * (features.ndim - 1)))
    lo_t = torch.from_numpy(lo).to(features.device)
    hi_t = torch.from_numpy(hi).to(features.device)
    return features[lo_t] * (1 - w) + features[hi_t] * w

