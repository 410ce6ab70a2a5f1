"""The ΨQRH operator: Ψ_QRH = R · F⁻¹{ F(k) · F{Ψ} } on quaternion-valued sequences.

The filter is ``F(k) = exp(i · α · sign(k) · arctan(ln |k|))`` on the integer frequencies k of
the sequence. The phase is odd in k, so ``F(-k) = conj F(k)`` (Hermitian): a real signal stays
real and nothing is thrown away by taking a real part. ``|F(k)| = 1`` exactly. Two bins are set
explicitly: k = 0 has phase 0 (``ln 1`` is used in place of ``ln 0``), and for even lengths
the Nyquist bin k = T/2, which must be real for a Hermitian filter of modulus 1, is 1.

R multiplies each channel's quaternion by unit quaternions on both sides,
``ψ ↦ q_left ⊗ ψ ⊗ q_right``, an orthogonal 4×4 map. It commutes with the filter (the filter
acts on each real component alike), so it is applied where it is cheapest.

Non-causal: a diagonal unitary operator in the Fourier basis followed by an orthogonal map, so
``‖out‖ = ‖in‖`` (no rescaling anywhere). Causal: the filter's impulse response over T samples,
``h = irfft(F, n=T)``, is used as a causal kernel (lags 0..T-1) in a zero-padded FFT convolution
(:func:`qtransformers.functional.causal_fftconv`); output t sees inputs 0..t only. Its energy is
not conserved; :func:`energy_ratio` reports it. With α = 0, F = 1 and h = δ, so both modes are
the identity when the rotations are.

Shapes: x (B, T, D, 4) with components (w, x, y, z); α (D,); q_left, q_right (D, 4).
The channels-first form :func:`spectral_rotate` (u (B, C, G, T), G = 4 or 2) is what modules use.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.exceptions import DTypeError, ShapeError
from qtransformers.functional.fftconv import causal_fftconv, fft_size


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


def causal_kernel(alpha: Tensor, t: int) -> Tensor:
    """Causal kernel of the filter: its impulse response over t samples, (C,) -> (C, t) real."""
    return torch.fft.irfft(filter_spectrum(alpha, t), n=t)


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


def _rotate(u: Tensor, matrix: Tensor | None) -> Tensor:
    """Apply (C, G, G) matrices to u (B, C, G, T) along G."""
    if matrix is None:
        return u
    return torch.einsum("cij,bcjt->bcit", matrix.to(u.dtype), u)


def spectral_rotate_ref(u: Tensor, alpha: Tensor | None, matrix: Tensor | None, causal: bool) -> Tensor:
    """Reference of :func:`spectral_rotate`: complex torch ops with autograd, rotation in the frequency domain."""
    t = u.size(-1)
    if alpha is None:
        return _rotate(u, matrix)
    if causal:
        n = fft_size(t)
        spec = torch.fft.rfft(causal_kernel(alpha.to(u.dtype), t), n=n)
    else:
        n = t
        spec = filter_spectrum(alpha.to(u.dtype), n)
    z = torch.fft.rfft(u, n=n) * spec[None, :, None, :]
    if matrix is not None:
        z = torch.einsum("cij,bcjf->bcif", matrix.to(z.dtype), z)
    return torch.fft.irfft(z, n=n)[..., :t]


def _check_spectral(u: Tensor, alpha: Tensor | None, matrix: Tensor | None) -> None:
    if u.dim() != 4:
        raise ShapeError(f"expected u (B, C, G, T), got {tuple(u.shape)}")
    c, g = u.size(1), u.size(2)
    if alpha is not None and alpha.shape != (c,):
        raise ShapeError(f"alpha must be ({c},) for u {tuple(u.shape)}, got {tuple(alpha.shape)}")
    if matrix is not None and matrix.shape != (c, g, g):
        raise ShapeError(f"rotation must be ({c}, {g}, {g}) for u {tuple(u.shape)}, got {tuple(matrix.shape)}")
    if not u.is_floating_point():
        raise DTypeError(f"u must be floating point, got {u.dtype}")


def spectral_rotate(
    u: Tensor, alpha: Tensor | None, matrix: Tensor | None, causal: bool = False, backend: str = "auto"
) -> Tensor:
    """Filter each channel of u (B, C, G, T) by F_α along T, then apply matrix (C, G, G) along G.

    ``alpha=None`` skips the filter, ``matrix=None`` the rotation. On CUDA with Triton the
    frequency-domain multiply and rotation run as one fused kernel; elsewhere the causal path
    uses :func:`causal_fftconv` (``backend`` as there) and the non-causal path torch.fft.
    """
    _check_spectral(u, alpha, matrix)
    if alpha is None:
        return _rotate(u, matrix)
    from qtransformers.kernels import dispatch

    if dispatch.use_triton(u):
        return dispatch.spectral_rotate_triton(u, alpha, matrix, causal)
    dtype = u.dtype
    work = u if dtype in (torch.float32, torch.float64) else u.float()
    b, c, g, t = work.shape
    if causal:
        kernel = causal_kernel(alpha.to(work.dtype), t)
        y = causal_fftconv(work.reshape(b, c * g, t), kernel, backend=backend).view(b, c, g, t)
    else:
        spec = filter_spectrum(alpha.to(work.dtype), t)
        y = torch.fft.irfft(torch.fft.rfft(work) * spec[None, :, None, :], n=t)
    return _rotate(y, matrix).to(dtype)


def _check_qrh(x: Tensor, alpha: Tensor, q_left: Tensor, q_right: Tensor) -> None:
    if x.dim() != 4 or x.size(-1) != 4:
        raise ShapeError(f"x must be (B, T, D, 4), got {tuple(x.shape)}")
    d = x.size(2)
    for name, q in (("q_left", q_left), ("q_right", q_right)):
        if q.shape != (d, 4):
            raise ShapeError(f"{name} must be ({d}, 4) for x {tuple(x.shape)}, got {tuple(q.shape)}")
    if alpha.shape != (d,):
        raise ShapeError(f"alpha must be ({d},) for x {tuple(x.shape)}, got {tuple(alpha.shape)}")


def qrh(x: Tensor, alpha: Tensor, q_left: Tensor, q_right: Tensor, causal: bool = False) -> Tensor:
    """Ψ_QRH of x (B, T, D, 4) with α (D,) and unit quaternions q_left, q_right (D, 4) -> (B, T, D, 4)."""
    _check_qrh(x, alpha, q_left, q_right)
    u = x.permute(0, 2, 3, 1)
    y = spectral_rotate(u, alpha, rotation_matrix(q_left, q_right), causal)
    return y.permute(0, 3, 1, 2)


def qrh_ref(x: Tensor, alpha: Tensor, q_left: Tensor, q_right: Tensor, causal: bool = False) -> Tensor:
    """Reference of :func:`qrh` (plain torch, autograd through complex ops)."""
    _check_qrh(x, alpha, q_left, q_right)
    y = spectral_rotate_ref(x.permute(0, 2, 3, 1), alpha, rotation_matrix(q_left, q_right), causal)
    return y.permute(0, 3, 1, 2)
