"""Low-rank factorisation W ≈ U·V from a truncated SVD."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError, ShapeError


@dataclass
class LowRankTensor:
    """Factors U (out, r) and V (r, in) with W ≈ U @ V."""

    u: Tensor
    v: Tensor

    @property
    def nbytes(self) -> int:
        """Bytes of the stored factors."""
        return (self.u.numel() + self.v.numel()) * self.u.element_size()

    def decompress(self) -> Tensor:
        """The rank-r approximation of the weight."""
        return self.u @ self.v


def low_rank(weight: Tensor, rank: int) -> LowRankTensor:
    """Best rank-``rank`` approximation (Eckart-Young) of a 2-D weight (out, in)."""
    if weight.dim() != 2:
        raise ShapeError(f"low_rank needs a 2-D weight, got shape {tuple(weight.shape)}")
    if not 1 <= rank <= min(weight.shape):
        raise InvalidArgumentError(f"rank must be in 1..{min(weight.shape)}, got {rank}")
    u, s, vh = torch.linalg.svd(weight.detach().cpu(), full_matrices=False)
    root = s[:rank].sqrt()
    return LowRankTensor((u[:, :rank] * root).contiguous(), (root[:, None] * vh[:rank]).contiguous())
