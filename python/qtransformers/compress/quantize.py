"""int8 / int4 symmetric quantisation with one scale per channel (per quaternion channel by default)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qtransformers.compress.packing import pack_bits, unpack_bits
from qtransformers.exceptions import InvalidArgumentError, ShapeError


@dataclass
class QuantizedTensor:
    """Codes bit-packed at ``bits`` per weight plus float32 scales, one per group of ``group`` rows."""

    packed: Tensor
    scales: Tensor
    bits: int
    group: int
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the stored representation (packed codes + scales)."""
        return self.packed.numel() + self.scales.numel() * self.scales.element_size()

    def decompress(self) -> Tensor:
        """The dequantised weight, shape ``shape``."""
        rows, n = self.shape[0], int(torch.tensor(self.shape).prod())
        offset = 2 ** (self.bits - 1) - 1
        q = (unpack_bits(self.packed, self.bits, n) - offset).to(torch.float32).view(rows, -1)
        scale = self.scales.repeat_interleave(self.group)[:, None]
        return (q * scale).view(self.shape).to(self.dtype)


def quantize_weight(weight: Tensor, bits: int = 8, *, group: int = 4) -> QuantizedTensor:
    """Quantise a (rows, ...) weight to ``bits`` ∈ {4, 8} with a scale per ``group`` consecutive rows.

    ``group=4`` gives one scale per quaternion output channel (its w, x, y, z rows share it);
    ``group=1`` is plain per-row quantisation. Symmetric: codes in [-(2^(b-1)-1), 2^(b-1)-1].
    """
    if bits not in (4, 8):
        raise InvalidArgumentError(f"bits must be 4 or 8, got {bits}")
    if weight.dim() < 1 or weight.size(0) % group:
        raise ShapeError(f"weight rows must be divisible by group={group}, got shape {tuple(weight.shape)}")
    w = weight.detach().float().cpu()
    grouped = w.reshape(w.size(0) // group, -1)
    qmax = 2 ** (bits - 1) - 1
    scales = (grouped.abs().amax(dim=1) / qmax).clamp_min(torch.finfo(torch.float32).tiny)
    codes = torch.round(grouped / scales[:, None]).clamp(-qmax, qmax).to(torch.int64) + qmax
    return QuantizedTensor(pack_bits(codes, bits), scales, bits, group, tuple(weight.shape), weight.dtype)
