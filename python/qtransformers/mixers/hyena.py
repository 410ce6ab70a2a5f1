"""The "hyena" mixer (Poli et al. 2023, order 2): a gated causal long convolution.

x (B, T, D) -> [absolute phase] -> projection to (v, x1, x2) -> short causal depthwise conv
-> y = x2 ⊙ GELU(h * (x1 ⊙ v) + b ⊙ x1 ⊙ v) -> output projection. The long kernel h (D, T) is
implicit: a small MLP of sinusoidal features of the lag t, times a per-channel exponential
decay window (decay rates spread over scales). The long convolution is
:func:`qtransformers.kernels.causal_fftconv` (zero-padded, so causal; Rust on CPU, the fused
Triton kernel :mod:`qtransformers.kernels.fftconv_triton` on CUDA).
Causal only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.position import absolute_phase
from qtransformers.kernels import causal_fftconv
from qtransformers.mixers.registry import register


class ImplicitFilter(nn.Module):
    """Long kernel (D, T) from an MLP on sinusoidal lag features times an exponential decay window."""

    freqs: Tensor
    decay: Tensor

    def __init__(self, dim: int, *, features: int = 8, hidden: int = 64, max_decay: float = 0.3) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.logspace(-4, 0, features) * math.pi, persistent=False)
        self.register_buffer("decay", torch.logspace(-4, math.log10(max_decay), dim), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * features, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, t: int, *, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Kernel taps for lags 0..t-1: (D, t)."""
        lag = torch.arange(t, device=device, dtype=torch.float32)
        arg = lag[:, None] * self.freqs[None, :]
        features = torch.cat((arg.sin(), arg.cos()), dim=-1).to(next(self.mlp.parameters()).dtype)
        taps = self.mlp(features).t()
        return (taps * torch.exp(-self.decay[:, None] * lag[None, :])).to(dtype)


@register("hyena", causal=True, non_causal=False)
class HyenaMixer(nn.Module):
    """Gated causal long convolution on x (B, T, D) -> (B, T, D); see the module docstring."""

    def __init__(
        self, dim: int, *, causal: bool = True, short_kernel: int = 3, position: bool = True, backend: str = "auto"
    ) -> None:
        super().__init__()
        if not causal:
            raise InvalidArgumentError(f"the {type(self).__name__} mixer is causal only, got causal=False")
        self.causal = True
        if position and dim % 2:
            raise InvalidArgumentError(f"hyena with position=True needs an even dim, got {dim}")
        self.dim, self.position, self.backend = dim, position, backend
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.short = nn.Conv1d(3 * dim, 3 * dim, short_kernel, groups=3 * dim, padding=short_kernel - 1)
        self.filter = ImplicitFilter(dim)
        self.skip = nn.Parameter(torch.ones(dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of x (B, T, D) causally."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        t = x.size(1)
        if self.position:
            x = absolute_phase(x)
        z = self.short(self.in_proj(x).transpose(1, 2))[..., :t]
        v, x1, x2 = z.chunk(3, dim=1)
        gated = x1 * v
        h = self.filter(t, device=x.device, dtype=gated.dtype)
        long = causal_fftconv(gated, h, backend=self.backend) + self.skip[:, None].to(gated.dtype) * gated
        return self.out_proj((x2 * F.gelu(long)).transpose(1, 2))
