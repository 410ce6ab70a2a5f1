"""Polar quantisation of complex weights: magnitude and phase codes bit-packed into real bytes.

z = r·e^{iφ}: r is quantised uniformly on [0, r_max] of each row (``mag_bits``), φ uniformly
on [-π, π) (``phase_bits``, wrap-around), and both codes are packed together at
``mag_bits + phase_bits`` bits per weight, plus one float32 r_max per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from qtransformers.compress.packing import pack_bits, unpack_bits
from qtransformers.exceptions import DTypeError, InvalidArgumentError


@dataclass
class PolarTensor:
    """Packed (magnitude, phase) codes and per-row magnitude scales of a complex (rows, ...) tensor."""

    packed: Tensor
    scales: Tensor
    mag_bits: int
    phase_bits: int
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the stored representation (packed codes + row scales)."""
        return self.packed.numel() + self.scales.numel() * self.scales.element_size()

    def decompress(self) -> Tensor:
        """The complex64 tensor the codes stand for."""
        n = int(torch.tensor(self.shape).prod())
        codes = unpack_bits(self.packed, self.mag_bits + self.phase_bits, n)
        mag_code, phase_code = codes >> self.phase_bits, codes & ((1 << self.phase_bits) - 1)
        rows = self.shape[0]
        mag = mag_code.view(rows, -1).float() / (2**self.mag_bits - 1) * self.scales[:, None]
        phase = phase_code.view(rows, -1).float() * (2 * math.pi / 2**self.phase_bits) - math.pi
        return torch.polar(mag, phase).view(self.shape)


def polar_quantize(z: Tensor, mag_bits: int = 4, phase_bits: int = 4) -> PolarTensor:
    """Quantise a complex tensor (rows, ...) in polar form; codes take mag_bits + phase_bits ≤ 8 bits each."""
    if not z.is_complex():
        raise DTypeError(f"polar_quantize needs a complex tensor, got {z.dtype}")
    if mag_bits < 1 or phase_bits < 1 or mag_bits + phase_bits > 8:
        raise InvalidArgumentError(f"need mag_bits, phase_bits >= 1 with sum <= 8, got {mag_bits}, {phase_bits}")
    flat = z.detach().cpu().reshape(z.size(0), -1)
    mag, phase = flat.abs().float(), flat.angle().float()
    scales = mag.amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    levels_m, levels_p = 2**mag_bits - 1, 2**phase_bits
    mag_code = torch.round(mag / scales[:, None] * levels_m).to(torch.int64)
    phase_code = torch.round((phase + math.pi) / (2 * math.pi) * levels_p).to(torch.int64) % levels_p
    packed = pack_bits((mag_code << phase_bits) | phase_code, mag_bits + phase_bits)
    return PolarTensor(packed, scales, mag_bits, phase_bits, tuple(z.shape))
