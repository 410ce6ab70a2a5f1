"""Byte-level data: any text file, memory-mapped, split into train/validation, sampled in windows.

The vocabulary is the 256 byte values (no tokenizer). The first ``1 - val_fraction`` of the
file is the training split and the rest the validation split (deterministic, no shuffling),
and batches are random windows of ``seq_len + 1`` bytes drawn with a ``torch.Generator``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError

VOCAB_SIZE = 256


class ByteDataset:
    """A text file as a ``np.memmap`` of uint8 bytes with a train/validation split."""

    def __init__(self, path: str | Path, *, val_fraction: float = 0.1) -> None:
        path = Path(path)
        if not path.is_file():
            raise InvalidArgumentError(f"data file {str(path)!r} does not exist")
        if not 0.0 < val_fraction < 1.0:
            raise InvalidArgumentError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if path.stat().st_size < 4:
            raise InvalidArgumentError(f"data file {str(path)!r} has {path.stat().st_size} bytes; need at least 4")
        self.path = path
        self.data = np.memmap(path, dtype=np.uint8, mode="r")
        cut = int(round(len(self.data) * (1.0 - val_fraction)))
        cut = min(max(cut, 2), len(self.data) - 2)
        self.splits = {"train": self.data[:cut], "val": self.data[cut:]}

    def __len__(self) -> int:
        """Number of bytes in the file."""
        return len(self.data)

    def split_size(self, split: str) -> int:
        """Number of bytes in ``split`` ("train" or "val")."""
        return len(self._split(split))

    def _split(self, split: str) -> np.ndarray:
        try:
            return self.splits[split]
        except KeyError:
            raise InvalidArgumentError(f"split must be 'train' or 'val', got {split!r}") from None

    def batch(self, split: str, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Random windows: inputs (batch_size, seq_len) and next-byte targets (batch_size, seq_len), int64."""
        data = self._split(split)
        if batch_size < 1 or seq_len < 1:
            raise InvalidArgumentError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
        if len(data) < seq_len + 1:
            raise InvalidArgumentError(
                f"the {split} split has {len(data)} bytes; a window of seq_len + 1 = {seq_len + 1} does not fit"
            )
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator).tolist()
        windows = torch.from_numpy(np.stack([np.asarray(data[s : s + seq_len + 1]) for s in starts]).astype(np.int64))
        return windows[:, :-1], windows[:, 1:]


def encode(text: str) -> Tensor:
    """UTF-8 bytes of ``text`` as an int64 tensor (T,)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.int64)


def decode(tokens) -> str:
    """Bytes (ints 0..255) back to text; invalid UTF-8 becomes U+FFFD."""
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")
