"""Absolute position for the spectral mixers: a time-domain rotary phase that is not undone.

Convolutions (and every FFT mixer) are shift-equivariant: on their own they cannot tell
position t from t + s. :func:`absolute_phase` rotates each consecutive channel pair
(x[2i], x[2i+1]) at position t by the angle t·θ_i, with θ_i = base^(-2i/D) as in RoPE, but
in the time domain and on the mixer's input values (not on queries and keys, where the
rotation cancels to a relative offset), and it is not undone afterwards. Shifting the input
by s therefore multiplies every token by a different, s-dependent rotation, which the rest
of the mixer does not commute with: shift invariance is broken (a test checks it). It is
norm-preserving per token, causal (per position) and defined for any length.

For a quaternion channel (w, x, y, z) the pairs (w, x), (y, z) are rotated alike: that is
left multiplication by the unit quaternion cos(tθ) + i·sin(tθ).
(A per-bin factor e^{ikθ} in the frequency domain would only be a circular shift: no position.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.exceptions import ShapeError


def phase_frequencies(dim: int, base: float = 10000.0, *, device=None) -> Tensor:
    """θ_i = base^(-2i/dim) for the dim/2 channel pairs, float32 (dim/2,)."""
    return base ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)


def absolute_phase(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate channel pair i of token t of x (B, T, D) by t·θ_i; returns (B, T, D). D must be even."""
    if x.dim() != 3 or x.size(-1) % 2:
        raise ShapeError(f"absolute_phase needs x (B, T, D) with even D, got {tuple(x.shape)}")
    b, t, d = x.shape
    theta = phase_frequencies(d, base, device=x.device)
    angle = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * theta[None, :]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    pairs = x.view(b, t, d // 2, 2)
    re, im = pairs[..., 0], pairs[..., 1]
    return torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1).view(b, t, d)
