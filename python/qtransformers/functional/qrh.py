"""The ΨQRH operator: Ψ_QRH = R · F⁻¹{ F(k) · F{Ψ} } on quaternion-valued sequences.

The filter is ``F(k) = exp(i · α · sign(k) · arctan(ln |k|))`` on the integer frequencies k of
an FFT grid. The phase is odd in k, so ``F(-k) = conj F(k)`` (Hermitian): a real signal stays
real and nothing is thrown away by taking a real part. ``|F(k)| = 1`` exactly. Two bins are set
explicitly: k = 0 has phase 0 (``ln 1`` is used in place of ``ln 0``), and for even lengths
the Nyquist bin k = n/2, which must be real for a Hermitian filter of modulus 1, is 1.

R multiplies each channel's quaternion by unit quaternions on both sides,
``ψ ↦ q_left ⊗ ψ ⊗ q_right``, an orthogonal 4×4 map. It commutes with the filter (the filter
acts on each real component alike), so it is applied where it is cheapest.

Non-causal: F on the bins of the sequence's own length T, a diagonal unitary operator in the
Fourier basis followed by an orthogonal map, so ``‖out‖ = ‖in‖`` (no rescaling anywhere).

Causal: F on the bins of a *fixed* reference length ``N = 2 · max_len`` (``max_len`` is chosen
once, e.g. at a layer's construction, default :data:`DEFAULT_MAX_LEN`). Its impulse response on
that grid, ``h = irfft(F, n=N)``, is computed once per α; the causal half ``h[0..max_len-1]``
is the kernel (:func:`causal_kernel`), and a sequence of length T <= max_len is convolved with
its first T lags by a zero-padded FFT convolution (:func:`qtransformers.kernels.causal_fftconv`).
Lag τ therefore has the weight ``h[τ]`` whatever T is: output t is the same whether the input
stops at t or goes on (prefix-consistent), and output t sees inputs 0..t only. T > max_len
raises :class:`~qtransformers.exceptions.ShapeError`. The other half of h (lags max_len..N-1 of
the circular response, i.e. the negative lags -max_len..-1) is the filter's anti-causal part
and is dropped, so the causal operator is not unitary: Σ h² over all N lags is 1 (Parseval,
``|F| = 1``), the kernel keeps a fraction of it that depends on α, and its gain ``|H(ω)|`` varies
with the frequency, above 1 at some (it is reported, not forced: :func:`energy_ratio`). With
α = 0, F = 1 and h = δ, so both modes are the identity when the rotations are.

Shapes: x (B, T, D, 4) with components (w, x, y, z); α (D,); q_left, q_right (D, 4).
The channels-first form (u (B, C, G, T), G = 4 or 2) is what modules use.

This module holds the math and the references (:func:`qrh_ref`, :func:`spectral_rotate_ref`); the
operators that pick a fast path (Rust, Triton) are one layer up: :func:`qtransformers.kernels.qrh` and
:func:`qtransformers.kernels.spectral_rotate`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError
from qtransformers.functional.fftconv import fft_size

DEFAULT_MAX_LEN = 4096
"""Default longest sequence of the causal operator (its kernel is defined on 2 · max_len bins)."""


def filter_phase(alpha: Tensor, n: int) -> Tensor:
    """Phase α · arctan(ln k) of the rfft bins k = 0..n//2 of length n: (C,) -> (C, n//2 + 1).

    Bin 0 has phase 0 (ln 1 stands in for ln 0) and, for even n, so has the Nyquist bin.
    """
    k = torch.arange(n // 2 + 1, device=alpha.device, dtype=alpha.dtype).clamp_(min=1)
    phase = alpha[:, None] * torch.atan(torch.log(k))[None, :]
    if n % 2 == 0:
        phase = torch.cat([phase[:, :-1], torch.zeros_like(phase[:, -1:])], dim=1)
    return phase


def filter_spectrum(alpha: Tensor, n: int) -> Tensor:
    """The unit-modulus filter F on the rfft bins of length n: (C,) real -> (C, n//2 + 1) complex."""
    phase = filter_phase(alpha, n)
    return torch.polar(torch.ones_like(phase), phase)


def full_filter(alpha: Tensor, n: int) -> Tensor:
    """F on all n FFT bins (negative frequencies included), (C, n) complex; used to check Hermitian symmetry."""
    k = torch.fft.fftfreq(n, d=1.0 / n, device=alpha.device).to(alpha.dtype)
    phase = alpha[:, None] * (torch.sign(k) * torch.atan(torch.log(k.abs().clamp(min=1))))[None, :]
    if n % 2 == 0:
        phase[:, n // 2] = 0
    return torch.polar(torch.ones_like(phase), phase)


def causal_kernel(alpha: Tensor, max_len: int) -> Tensor:
    """Causal kernel of the filter for sequences up to ``max_len``: (C,) -> (C, max_len) real.

    The first ``max_len`` lags of the impulse response ``irfft(F, n=2 · max_len)`` (F on the
    bins of the fixed length 2 · max_len); a sequence of length T uses lags 0..T-1 of it.
    """
    n = 2 * max_len
    return torch.fft.irfft(filter_spectrum(alpha, n), n=n)[:, :max_len]


def check_length(t: int, max_len: int) -> None:
    """Raise unless 1 <= ``max_len`` and the sequence length ``t`` fits the causal kernel (t <= max_len)."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise InvalidArgumentError(f"max_len must be a positive int, got {max_len!r}")
    if t > max_len:
        raise ShapeError(
            f"sequence length {t} exceeds max_len {max_len} of the causal QRH kernel; build it with max_len >= {t}"
        )


def operator_spectrum(alpha: Tensor, t: int, causal: bool, max_len: int) -> tuple[Tensor, int]:
    """Spectrum (C, n//2 + 1) that multiplies rfft(u, n) for a length-t input, and the FFT length n.

    Non-causal: F on the t bins (n = t). Causal: the rfft of the kernel's first t lags, zero-padded
    to n = :func:`fft_size` (t) (so the product is a linear, not circular, convolution).
    """
    if not causal:
        return filter_spectrum(alpha, t), t
    check_length(t, max_len)
    n = fft_size(t)
    return torch.fft.rfft(causal_kernel(alpha, max_len)[:, :t], n=n), n


def quaternion_left(q: Tensor) -> Tensor:
    """Matrix of p ↦ q ⊗ p for q (..., 4): (..., 4, 4)."""
    a, b, c, d = q.unbind(-1)
    rows = [[a, -b, -c, -d], [b, a, -d, c], [c, d, a, -b], [d, -c, b, a]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def quaternion_right(q: Tensor) -> Tensor:
    """Matrix of p ↦ p ⊗ q for q (..., 4): (..., 4, 4)."""
    a, b, c, d = q.unbind(-1)
    rows = [[a, -b, -c, -d], [b, a, d, -c], [c, -d, a, b], [d, c, -b, a]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def rotation_matrix(q_left: Tensor, q_right: Tensor) -> Tensor:
    """Matrix of ψ ↦ q_left ⊗ ψ ⊗ q_right: (D, 4), (D, 4) -> (D, 4, 4) (orthogonal for unit quaternions)."""
    return quaternion_left(q_left) @ quaternion_right(q_right)


def energy_ratio(inp: Tensor, out: Tensor) -> float:
    """‖out‖ / ‖in‖ over the whole tensors (computed in float64)."""
    return float(out.detach().double().norm() / inp.detach().double().norm())


def rotate_channels(u: Tensor, matrix: Tensor | None) -> Tensor:
    """Apply (C, G, G) matrices to u (B, C, G, T) along G."""
    if matrix is None:
        return u
    return torch.einsum("cij,bcjt->bcit", matrix.to(u.dtype), u)


def spectral_rotate_ref(
    u: Tensor, alpha: Tensor | None, matrix: Tensor | None, causal: bool, max_len: int = DEFAULT_MAX_LEN
) -> Tensor:
    """Reference of :func:`qtransformers.kernels.spectral_rotate`: complex torch ops, rotation in the frequency domain."""
    t = u.size(-1)
    if alpha is None:
        return rotate_channels(u, matrix)
    spec, n = operator_spectrum(alpha.to(u.dtype), t, causal, max_len)
    z = torch.fft.rfft(u, n=n) * spec[None, :, None, :]
    if matrix is not None:
        z = torch.einsum("cij,bcjf->bcif", matrix.to(z.dtype), z)
    return torch.fft.irfft(z, n=n)[..., :t]


def check_spectral(u: Tensor, alpha: Tensor | None, matrix: Tensor | None) -> None:
    """Raise unless u is (B, C, G, T) floating point, alpha (C,) and matrix (C, G, G) (either may be None)."""
    if u.dim() != 4:
        raise ShapeError(f"expected u (B, C, G, T), got {tuple(u.shape)}")
    c, g = u.size(1), u.size(2)
    if alpha is not None and alpha.shape != (c,):
        raise ShapeError(f"alpha must be ({c},) for u {tuple(u.shape)}, got {tuple(alpha.shape)}")
    if matrix is not None and matrix.shape != (c, g, g):
        raise ShapeError(f"rotation must be ({c}, {g}, {g}) for u {tuple(u.shape)}, got {tuple(matrix.shape)}")
    if not u.is_floating_point():
        raise DTypeError(f"u must be floating point, got {u.dtype}")


def check_qrh(x: Tensor, alpha: Tensor, q_left: Tensor, q_right: Tensor) -> None:
    """Raise unless x is (B, T, D, 4), alpha (D,) and q_left, q_right (D, 4)."""
    if x.dim() != 4 or x.size(-1) != 4:
        raise ShapeError(f"x must be (B, T, D, 4), got {tuple(x.shape)}")
    d = x.size(2)
    for name, q in (("q_left", q_left), ("q_right", q_right)):
        if q.shape != (d, 4):
            raise ShapeError(f"{name} must be ({d}, 4) for x {tuple(x.shape)}, got {tuple(q.shape)}")
    if alpha.shape != (d,):
        raise ShapeError(f"alpha must be ({d},) for x {tuple(x.shape)}, got {tuple(alpha.shape)}")


def qrh_ref(
    x: Tensor, alpha: Tensor, q_left: Tensor, q_right: Tensor, causal: bool = False, max_len: int = DEFAULT_MAX_LEN
) -> Tensor:
    """Reference of :func:`qtransformers.kernels.qrh` (plain torch, autograd through complex ops)."""
    check_qrh(x, alpha, q_left, q_right)
    y = spectral_rotate_ref(x.permute(0, 2, 3, 1), alpha, rotation_matrix(q_left, q_right), causal, max_len)
    return y.permute(0, 3, 1, 2)
