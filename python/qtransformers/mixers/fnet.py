"""The "fnet" mixer (FNet, Lee-Thorp et al. 2021): the real part of a 2-D FFT over (T, D).

Every output token depends on every input token, so it is registered non-causal only;
building it with ``causal=True`` raises. No parameters; orthonormal FFT scaling keeps the
output on the input's scale. It stays on torch.fft on every device: one 2-D cuFFT call with no
pointwise work between transforms leaves nothing to fuse, and its lengths (T, D) need not be
powers of two, so a Monarch-form Triton kernel would add padding, not save memory traffic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qtransformers.exceptions import ShapeError
from qtransformers.mixers.registry import register


@register("fnet", causal=False, non_causal=True)
class FNetMixer(nn.Module):
    """Re(FFT_T(FFT_D(x))) on x (B, T, D) -> (B, T, D), orthonormal scaling; non-causal only."""

    def __init__(self, dim: int, *, causal: bool = False) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of x (B, T, D)."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return torch.fft.fft2(work, dim=(1, 2), norm="ortho").real.to(x.dtype)
