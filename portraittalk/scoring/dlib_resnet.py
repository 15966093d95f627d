"""dlib's face-recognition ResNet read from its own ``.dat`` file and evaluated with PyTorch.

dlib's Python wheel runs the network without BLAS (about 140 ms a face); this rebuild
gives the same descriptors to ~1e-6 at ~6–7 ms a face on one core in batches of 16
(float32, channels-last). On CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX) the
convolutions run in bfloat16 with float32 accumulation: ~3.5 ms a face, descriptor distances
within 0.003 of float32's (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np


class _DlibReader:
    """Reader for dlib's serialisation: integers are one control byte (low nibble = byte
    count, 0x80 = negative) then little-endian bytes; floats are (mantissa, exponent)
    integer pairs; tensors are version 2, four integer dims, then raw float32."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def int(self) -> int:
        control = self.data[self.pos]
        n = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return mantissa * 2.0 ** self.int()

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ValueError("unsupported dlib tensor version")
        count = int(np.prod([self.int() for _ in range(4)]))
        values = np.frombuffer(self.data, "<f4", count=count, offset=self.pos).copy()
        self.pos += 4 * count
        return values


# Layer names as dlib writes them (length-prefixed strings), in file order input → output.
_LAYER_RE = re.compile(
    rb"\x01\x15input_rgb_image_sized|\x01\x05con_4|\x01\x07affine_|\x01\x05relu_|"
    rb"\x01\x0amax_pool_2|\x01\x0aavg_pool_2|\x01\x09add_prev_|\x01\x04fc_2")


def _read_dlib_layers(data: bytes) -> list[tuple[Any, ...]]:
    layers: list[tuple[Any, ...]] = []
    pos = 0
    while (match := _LAYER_RE.search(data, pos)) is not None:
        name = match.group()[2:].decode()
        r = _DlibReader(data, match.end())
        if name == "input_rgb_image_sized":
            layers.append((name, [r.float() for _ in range(3)]))
        elif name == "con_4":
            params = r.tensor()
            n_filters, kh, kw = r.int(), r.int(), r.int()
            stride, padding = (r.int(), r.int()), (r.int(), r.int())
            n_in = (len(params) - n_filters) // (n_filters * kh * kw)
            weights = params[:n_filters * n_in * kh * kw].reshape(n_filters, n_in, kh, kw)
            layers.append((name, weights, params[n_filters * n_in * kh * kw:], stride, padding))
        elif name == "affine_":
            params = r.tensor()
            layers.append((name, params[:len(params) // 2], params[len(params) // 2:]))  # gamma, beta
        elif name in ("max_pool_2", "avg_pool_2"):
            layers.append((name, [r.int() for _ in range(6)]))  # nr, nc, stride y/x, padding y/x
        elif name == "fc_2":
            n_out = r.int()
            r.int()  # the input count, implied by the tensor
            layers.append((name, r.tensor().reshape(-1, n_out)))
        else:
            layers.append((name,))
        pos = r.pos
    return layers


class TorchFaceResNet:
    """dlib_face_recognition_resnet_model_v1 (a 29-conv ResNet) evaluated with PyTorch.

    Layout (dlib's definition): 7×7/2 conv → max-pool 3/2 → 14 residual blocks of two 3×3
    convs (4 of them downsampling: stride-2 conv, 2×2 average-pooled shortcut, added
    with zero padding where the shapes differ, as dlib's add_prev does) → global average
    → 128-d linear map. Each affine (frozen batch-norm) is folded into its conv.
    """

    def __init__(self, mean_rgb, stem, max_pool, blocks, fc, bfloat16: bool | None = None):
        import torch

        self._torch = torch
        # bfloat16 only where the CPU computes it natively; emulated it would be slower than float32.
        self.bfloat16 = native_bfloat16() if bfloat16 is None else bfloat16
        self._mean = torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
        self._stem, self._max_pool, self._blocks, self._fc = stem, max_pool, blocks, fc

    @property
    def precision(self) -> str:
        return "bfloat16" if self.bfloat16 else "float32"

    @classmethod
    def from_dlib_file(cls, path: str | Path, bfloat16: bool | None = None) -> "TorchFaceResNet":
        import torch

        layers = _read_dlib_layers(Path(path).read_bytes())
        names = [layer[0] for layer in layers]
        if names[:1] != ["input_rgb_image_sized"] or names[-2:] != ["avg_pool_2", "fc_2"]:
            raise ValueError("unexpected layout of the dlib face-recognition model")

        def conv(c, a):
            _, weights, bias, stride, padding = c
            _, gamma, beta = a
            return (torch.from_numpy(np.ascontiguousarray(weights * gamma[:, None, None, None])),
                    torch.from_numpy(bias * gamma + beta), stride, padding)

        seq, i = layers[1:], 0
        stem = conv(seq[0], seq[1])
        if [layer[0] for layer in seq[2:4]] != ["relu_", "max_pool_2"]:
            raise ValueError("unexpected stem of the dlib face-recognition model")
        max_pool = seq[3][1]
        i = 4
        blocks = []
        while seq[i][0] == "con_4":
            first, second = conv(seq[i], seq[i + 1]), conv(seq[i + 3], seq[i + 4])
            i += 5
            shortcut_pool = None
            if seq[i][0] == "avg_pool_2":
                shortcut_pool = seq[i][1]
                i += 1
            if [layer[0] for layer in seq[i:i + 2]] != ["add_prev_", "relu_"]:
                raise ValueError("unexpected residual block in the dlib face-recognition model")
            i += 2
            blocks.append((first, second, shortcut_pool))
        if seq[i][0] != "avg_pool_2" or seq[i][1][:2] != [0, 0] or i + 2 != len(seq) or len(blocks) != 14:
            raise ValueError("unexpected head of the dlib face-recognition model")
        fc = torch.from_numpy(np.ascontiguousarray(seq[i + 1][1]))
        return cls(layers[0][1], stem, max_pool, blocks, fc, bfloat16)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips → (N, 128) float32 descriptors."""
        torch = self._torch
        F = torch.nn.functional

        def conv(x, c):
            return F.conv2d(x, c[0], c[1], stride=c[2], padding=c[3])

        with torch.inference_mode():
            # NHWC chips seen as NCHW: channels-last, the layout oneDNN's convolutions are fastest in.
            x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
            x = (x - self._mean) / 256.0  # dlib's input_rgb_image scaling
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                x = F.relu(conv(x, self._stem))
                k, _, s, _, p, _ = self._max_pool
                x = F.max_pool2d(x, k, s, p)
                for first, second, shortcut_pool in self._blocks:
                    y = conv(F.relu(conv(x, first)), second)
                    if shortcut_pool is not None:
                        k, _, s, _, p, _ = shortcut_pool
                        x = F.avg_pool2d(x, k, s, p)
                    x = F.relu(_add_zero_padded(y, x))
            x = x.float().mean(dim=(2, 3))
            return (x @ self._fc).numpy().astype(np.float32)


def native_bfloat16() -> bool:
    """True when this CPU has bfloat16 arithmetic in hardware (AVX512-BF16 or AMX)."""
    import torch

    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def _add_zero_padded(a, b):
    """dlib's add_prev: sum over the larger shape, each input zero-padded at the end."""
    if a.shape == b.shape:
        return a + b
    import torch.nn.functional as F

    c, h, w = (max(a.shape[d], b.shape[d]) for d in (1, 2, 3))

    def pad(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)
