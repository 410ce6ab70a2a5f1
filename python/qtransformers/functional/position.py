"""Rotary positions: RoPE on queries and keys, and an absolute rotary phase for the spectral mixers.

:func:`rope` rotates query and key pairs by angles proportional to the position, so an
attention score depends only on the offset between the two positions (relative position,
defined at any length). The rest of this docstring is about :func:`absolute_phase`.

Convolutions (and every FFT mixer) are shift-equivariant: on their own they cannot tell
position t from t + s. :func:`absolute_phase` rotates each consecutive channel pair
(x[2i], x[2i+1]) at position t by the angle t·θ_j, θ_j = base^(-j/J) (RoPE's frequencies),
but in the time domain and on the mixer's input values (not on queries and keys, where the
rotation cancels to a relative offset), and it is not undone afterwards. Shifting the input
by s therefore multiplies every token by a different, s-dependent rotation, which the rest
of the mixer does not commute with: shift invariance is broken (a test checks it). It is
norm-preserving per token, causal (per position) and defined for any length.

``group`` channels share one frequency: with ``group=4`` a quaternion channel (w, x, y, z)
has its pairs (w, x) and (y, z) rotated alike, which is left multiplication by the unit
quaternion cos(tθ) + i·sin(tθ). (A per-bin factor e^{ikθ} in the frequency domain would only
be a circular shift: it adds no position.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.exceptions import ShapeError


def phase_angles(
    t: int, dim: int, *, group: int = 2, base: float = 10000.0, offset: int = 0, device=None, dtype=torch.float32
) -> Tensor:
    """Angles t·θ for the dim/2 channel pairs over positions offset..offset+t-1, (dim/2, t) in ``dtype``."""
    if dim % group or group % 2:
        raise ShapeError(f"dim {dim} must be divisible by an even group {group}")
    freqs = base ** (-torch.arange(dim // group, device=device, dtype=dtype) / max(dim // group, 1))
    per_pair = freqs.repeat_interleave(group // 2)
    positions = torch.arange(offset, offset + t, device=device, dtype=dtype)
    return per_pair[:, None] * positions[None, :]


def _rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor, channels_first: bool) -> Tensor:
    """Rotate pairs (2i, 2i+1) of x by angles with cosines/sines (D/2, T) if ``channels_first``, else (T, D/2).

    Eager mode writes both planes into one output tensor: no temporaries of x's size, which set the
    peak memory at long context. Under ``torch.compile`` the same products run out of place (the
    compiler fuses them, and writing into views of a fresh tensor failed to compile).
    """
    b = x.size(0)
    if channels_first:
        d, t = x.shape[1:]
        shape, axis = (b, d // 2, 2, t), 2
    else:
        t, d = x.shape[1:]
        shape, axis = (b, t, d // 2, 2), 3
    re, im = x.view(shape).unbind(axis)
    if torch.compiler.is_compiling():
        planes = (torch.addcmul(re * cos, im, sin, value=-1), torch.addcmul(re * sin, im, cos))
        return torch.stack(planes, dim=axis).view(x.shape)
    out = torch.empty_like(x)
    out_re, out_im = out.view(shape).unbind(axis)
    torch.mul(re, cos, out=out_re).addcmul_(im, sin, value=-1)
    torch.mul(re, sin, out=out_im).addcmul_(im, cos)
    return out


def _tables(
    t: int, d: int, group: int, base: float, offset: int, angle_dtype: torch.dtype, x: Tensor, channels_first: bool
) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the angles of :func:`phase_angles` (computed in ``angle_dtype``), in x's dtype and
    laid out as x is: (D/2, T) if ``channels_first``, else (T, D/2)."""
    angle = phase_angles(t, d, group=group, base=base, offset=offset, device=x.device, dtype=angle_dtype)
    if not channels_first:  # contiguous operands for the channels-last rotation: about 2x faster
        angle = angle.t().contiguous()
    return angle.cos().to(x.dtype), angle.sin().to(x.dtype)


class _PhaseRotate(torch.autograd.Function):
    """Pair rotation whose backward is the inverse rotation.

    It saves no tensor: the backward recomputes the cos/sin tables from the same arguments (bit for bit
    the same values), so a layer's tables (as large as x at long context) are not held until its backward.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        t: int,
        d: int,
        group: int,
        base: float,
        offset: int,
        angle_dtype: torch.dtype,
        channels_first: bool,
    ) -> Tensor:
        ctx.angles = (t, d, group, base, offset, angle_dtype)
        ctx.channels_first = channels_first
        cos, sin = _tables(t, d, group, base, offset, angle_dtype, x, channels_first)
        return _rotate_pairs(x.contiguous(), cos, sin, channels_first)

    @staticmethod
    def backward(ctx, grad: Tensor):
        t, d, group, base, offset, angle_dtype = ctx.angles
        cos, sin = _tables(t, d, group, base, offset, angle_dtype, grad, ctx.channels_first)
        return _rotate_pairs(grad.contiguous(), cos, -sin, ctx.channels_first), None, None, None, None, None, None, None


def rope(x: Tensor, base: float = 10000.0, *, offset: int = 0) -> Tensor:
    """Rotary position embedding (RoPE) of queries or keys x (B, H, T, E), E even; positions start at ``offset``.

    Pair (2i, 2i+1) of the vector at position p is rotated by p·θ_i, θ_i = base^(-2i/E) (RoFormer's
    frequencies, interleaved pairs). Applied to both q and k, the score q_p·k_s depends on p - s only.
    Angles are taken in float64 for float64 x, else in float32 (never in half precision).
    """
    if x.dim() != 4 or x.size(-1) % 2:
        raise ShapeError(f"rope needs x (B, H, T, E) with E even, got {tuple(x.shape)}")
    b, h, t, e = x.shape
    angle_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    flat = x.reshape(b * h, t, e)
    return _PhaseRotate.apply(flat, t, e, 2, base, offset, angle_dtype, False).view(b, h, t, e)


def absolute_phase(x: Tensor, base: float = 10000.0, *, group: int = 2, channels_first: bool = False) -> Tensor:
    """Rotate channel pair i of token t by the angle t·θ: x (B, T, D), or (B, D, T) if ``channels_first``."""
    if x.dim() != 3:
        raise ShapeError(f"absolute_phase needs a 3-D x, got {tuple(x.shape)}")
    d, t = (x.size(1), x.size(2)) if channels_first else (x.size(2), x.size(1))
    return _PhaseRotate.apply(x, t, d, group, base, 0, torch.float32, channels_first)
