"""Mask conversion between nn.MultiheadAttention's polarity and SDPA's, in one place.

* Module level (nn.MultiheadAttention): boolean ``True`` = *masked out*; float = added to scores.
* Function level (SDPA): boolean ``True`` = *takes part*; float = added to scores.
"""

from __future__ import annotations

from typing import overload

import torch
from torch import Tensor

from qtransformers.exceptions import DTypeError


def check_mask_dtype(mask: Tensor | None, name: str) -> None:
    """Raise DTypeError unless ``mask`` is None, boolean or floating point."""
    if mask is not None and mask.dtype != torch.bool and not torch.is_floating_point(mask):
        raise DTypeError(f"{name} must be a bool or floating-point tensor, got dtype {mask.dtype}")


@overload
def mha_mask_to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor: ...
@overload
def mha_mask_to_additive(mask: None, dtype: torch.dtype) -> None: ...
def mha_mask_to_additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """nn.MultiheadAttention-polarity mask -> float additive mask (-inf where masked out)."""
    if mask is None or torch.is_floating_point(mask):
        return mask
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))


@overload
def sdpa_mask_to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor: ...
@overload
def sdpa_mask_to_additive(mask: None, dtype: torch.dtype) -> None: ...
def sdpa_mask_to_additive(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """SDPA-polarity mask (bool True = takes part, or float) -> float additive mask."""
    if mask is None or torch.is_floating_point(mask):
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def causal_keep_mask(target_len: int, source_len: int, device: torch.device | None = None) -> Tensor:
    """(L, S) bool mask of SDPA's ``is_causal``, True where query i sees key j: j <= i (top-left aligned)."""
    return torch.ones(target_len, source_len, dtype=torch.bool, device=device).tril_()


def causal_additive_mask(
    target_len: int, source_len: int, dtype: torch.dtype, device: torch.device | None = None
) -> Tensor:
    """(L, S) additive mask of SDPA's ``is_causal``: query i sees keys j <= i (top-left aligned)."""
    return sdpa_mask_to_additive(causal_keep_mask(target_len, source_len, device), dtype)
