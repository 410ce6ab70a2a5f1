"""Bit packing of small unsigned integer codes into real bytes (numpy packbits)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes in [0, 2**bits) into ceil(n·bits/8) uint8 bytes (MSB first)."""
    if not 1 <= bits <= 8:
        raise InvalidArgumentError(f"bits must be in 1..8, got {bits}")
    flat = codes.detach().reshape(-1).to(torch.int64).cpu().numpy()
    if flat.size and (flat.min() < 0 or flat.max() >= 2**bits):
        raise InvalidArgumentError(f"codes must lie in [0, {2**bits}), got [{flat.min()}, {flat.max()}]")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    planes = ((flat[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(planes.reshape(-1)))


def unpack_bits(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as int64."""
    planes = np.unpackbits(packed.numpy())[: count * bits].reshape(count, bits).astype(np.int64)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))[None, :]
    return torch.from_numpy((planes * weights).sum(axis=1))
