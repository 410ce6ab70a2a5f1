"""Magnitude pruning stored as a packed bitmask plus the surviving values."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qtransformers.compress.packing import pack_bits, unpack_bits
from qtransformers.exceptions import InvalidArgumentError


@dataclass
class PrunedTensor:
    """Bitmask of kept positions (1 bit per weight) and the kept values in their dtype."""

    mask: Tensor
    values: Tensor
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the stored representation (packed mask + kept values)."""
        return self.mask.numel() + self.values.numel() * self.values.element_size()

    def decompress(self) -> Tensor:
        """The dense weight with pruned entries set to zero."""
        n = int(torch.tensor(self.shape).prod())
        keep = unpack_bits(self.mask, 1, n).bool()
        dense = torch.zeros(n, dtype=self.values.dtype)
        dense[keep] = self.values
        return dense.view(self.shape)


def magnitude_prune(weight: Tensor, sparsity: float) -> PrunedTensor:
    """Zero the fraction ``sparsity`` ∈ [0, 1) of entries with the smallest magnitude."""
    if not 0.0 <= sparsity < 1.0:
        raise InvalidArgumentError(f"sparsity must be in [0, 1), got {sparsity}")
    w = weight.detach().cpu().reshape(-1)
    drop = int(sparsity * w.numel())
    keep = torch.ones(w.numel(), dtype=torch.bool)
    if drop:
        keep[w.abs().argsort()[:drop]] = False
    return PrunedTensor(pack_bits(keep.to(torch.int64), 1), w[keep].clone(), tuple(weight.shape))
