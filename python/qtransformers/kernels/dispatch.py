"""The operators that choose between a reference and a fast path: causal FFT convolution, ΨQRH.

This is the one place where the choice is made. It sits above both sides: the references and
CPU paths in :mod:`qtransformers.functional` (plain torch, the Rust core) and the Triton kernels
of this package (imported only when used, so ``import qtransformers`` never imports Triton).

``backend`` of :func:`causal_fftconv` is one of :data:`BACKENDS`:

- ``"reference"``: :func:`~qtransformers.functional.fftconv.causal_fftconv_ref`;
- ``"torch"``: :func:`~qtransformers.functional.fftconv.causal_fftconv_torch`;
- ``"rust"``: :func:`~qtransformers.functional.fftconv.causal_fftconv_rust` (CPU, float32/float64);
- ``"triton"``: :func:`causal_fftconv_triton`, the fused Monarch-form kernel (cuFFT with a fused
  spectrum multiply past its length limit); float32/bf16/fp16, read as they are;
- ``"auto"``: :data:`CPU_DEFAULT` on CPU (chosen from the long-context bench), ``"triton"`` on CUDA
  when Triton is installed (and not disabled) for non-float64 inputs, ``"torch"`` otherwise.

Half/bfloat16 inputs of the non-Triton paths are computed in float32 and cast back. ``"triton"`` on a
CPU tensor runs only under the Triton interpreter (``TRITON_INTERPRET=1``, what the tests use).
``QTRANSFORMERS_DISABLE_TRITON=1`` forces the torch path on GPU too (for A/B timing).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

from qtransformers.exceptions import BackendUnavailableError, DTypeError, InvalidArgumentError
from qtransformers.functional.fftconv import (
    causal_fftconv_ref,
    causal_fftconv_rust,
    causal_fftconv_torch,
    check_inputs,
    fft_size,
)
from qtransformers.functional.oscillators import (
    check_bank,
    gated_oscillators_by_convolution,
    gated_oscillators_ref,
    gated_oscillators_rust,
    working_dtype,
)
from qtransformers.functional.qrh import (
    DEFAULT_MAX_LEN,
    causal_kernel,
    check_length,
    check_qrh,
    check_spectral,
    filter_spectrum,
    operator_spectrum,
    rotate_channels,
    rotation_matrix,
)

BACKENDS = ("auto", "torch", "rust", "triton", "reference")
"""The values ``backend`` takes in :func:`causal_fftconv` (and the modules built on it)."""

CPU_DEFAULT = "rust"
"""What ``backend="auto"`` means for CPU tensors."""

FUSED_MAX_LEN = 16384
"""Longest sequence the fused Monarch kernel takes; longer ones use cuFFT with the fused pointwise kernel."""


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def use_triton(x: Tensor) -> bool:
    """True when ``x`` lives on CUDA, Triton is installed and not disabled by the environment."""
    return x.is_cuda and triton_available() and os.environ.get("QTRANSFORMERS_DISABLE_TRITON", "0") != "1"


def resolve_backend(backend: str, u: Tensor) -> str:
    """The concrete backend ``"auto"`` stands for on the device and dtype of u."""
    if backend != "auto":
        return backend
    if u.device.type == "cpu":
        return CPU_DEFAULT
    return "triton" if use_triton(u) and u.dtype != torch.float64 else "torch"


def causal_fftconv(u: Tensor, k: Tensor, backend: str = "auto") -> Tensor:
    """Causal convolution of u (B, C, T) with kernels k (K, T), channel c using k[c // (C / K)] -> (B, C, T).

    ``backend`` is "auto", "torch", "rust", "triton" or "reference" (see the module docstring);
    the math is in :mod:`qtransformers.functional.fftconv`.
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_inputs(u, k)
    chosen = resolve_backend(backend, u)
    if chosen == "triton":
        return _triton(u, k)
    dtype = u.dtype
    if dtype not in (torch.float32, torch.float64):
        u, k = u.float(), k.float()
    k = k.to(u.dtype)
    if chosen == "reference":
        y = causal_fftconv_ref(u, k)
    elif chosen == "torch":
        y = causal_fftconv_torch(u, k)
    else:
        y = causal_fftconv_rust(u, k)
    return y.to(dtype)


def _triton(u: Tensor, k: Tensor) -> Tensor:
    """The triton backend after its checks: CUDA, or CPU under the interpreter; no float64."""
    if u.dtype == torch.float64:
        raise DTypeError("the triton backend computes in float32; use backend='torch' for float64 inputs")
    if not triton_available():
        raise BackendUnavailableError("the triton backend needs the triton package (pip install triton)")
    if not u.is_cuda and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise BackendUnavailableError(
            f"the triton backend runs on CUDA tensors (or CPU ones under TRITON_INTERPRET=1), got {u.device}"
        )
    return causal_fftconv_triton(u, k)


def causal_fftconv_triton(u: Tensor, k: Tensor) -> Tensor:
    """:func:`causal_fftconv` on Triton: u (B, C, T), k (K, T) -> (B, C, T), u's dtype.

    T <= :data:`FUSED_MAX_LEN`: the fused kernel :func:`~qtransformers.kernels.fftconv_triton.fftconv_triton`.
    Longer: torch.fft (cuFFT) transforms with the spectrum multiply as one Triton kernel between them
    (:func:`~qtransformers.kernels.spectral.filter_rotate` with 1×1 rotations). Runs on any device Triton
    can target (CPU tensors under ``TRITON_INTERPRET=1``).
    """
    if u.size(-1) <= FUSED_MAX_LEN:
        from qtransformers.kernels.fftconv_triton import fftconv_triton

        return fftconv_triton(u, k)
    from qtransformers.kernels.spectral import filter_rotate

    b, c, t = u.shape
    n = fft_size(t)
    x = torch.view_as_real(torch.fft.rfft(u.float(), n=n)).unsqueeze(2)
    spec = torch.view_as_real(torch.fft.rfft(k.float(), n=n)).repeat_interleave(c // k.size(0), dim=0)
    y = filter_rotate(x, spec, torch.ones(c, 1, 1, device=u.device))
    return torch.fft.irfft(torch.view_as_complex(y.squeeze(2)), n=n)[..., :t].to(u.dtype)


def gated_oscillators(v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor, backend: str = "auto") -> Tensor:
    """Gated bank of damped oscillators: v (B, T, D), gates (B, T, S), poles, weights (2, S, D) -> (B, T, D).

    The math is in :mod:`qtransformers.functional.oscillators`. ``backend`` as in :func:`causal_fftconv`:
    ``"rust"`` (what ``"auto"`` is on CPU) runs the Rust core's recurrence, O(T) per channel; ``"reference"``
    is :func:`~qtransformers.functional.oscillators.gated_oscillators_ref`; ``"torch"`` and ``"triton"``
    materialise the kernels and convolve them by :func:`causal_fftconv` on that backend. Half/bfloat16
    inputs of the Rust and reference paths are computed in float32 and cast back.
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_bank(v, gates, poles, weights)
    chosen = resolve_backend(backend, v)
    if chosen in ("reference", "rust"):
        bank = gated_oscillators_ref if chosen == "reference" else gated_oscillators_rust
        work = working_dtype(v.dtype)
        return bank(*(x.to(work) for x in (v, gates, poles, weights))).to(v.dtype)
    return gated_oscillators_by_convolution(v, gates, poles, weights, lambda u, k: causal_fftconv(u, k, backend=chosen))


def spectral_rotate(
    u: Tensor,
    alpha: Tensor | None,
    matrix: Tensor | None,
    causal: bool = False,
    backend: str = "auto",
    max_len: int = DEFAULT_MAX_LEN,
) -> Tensor:
    """Filter each channel of u (B, C, G, T) by F_α along T, then apply matrix (C, G, G) along G.

    ``alpha=None`` skips the filter, ``matrix=None`` the rotation. Causal mode uses the kernel of
    :func:`~qtransformers.functional.qrh.causal_kernel` for ``max_len`` (with a filter, T > max_len
    raises ShapeError) in :func:`causal_fftconv` (``backend`` as there: Rust on CPU, the fused Triton
    kernel on CUDA), then the rotation along G in the time domain (it commutes with the per-channel
    filter). Non-causal: on CUDA with Triton the frequency-domain multiply and rotation run as one
    kernel between cuFFT transforms; elsewhere torch.fft. Reference:
    :func:`~qtransformers.functional.qrh.spectral_rotate_ref`.
    """
    check_spectral(u, alpha, matrix)
    if alpha is None:
        return rotate_channels(u, matrix)
    b, c, g, t = u.shape
    dtype = u.dtype
    # half inputs reach the convolution as they are (the Triton kernel reads them) unless a rotation
    # follows it: then both run in float32, rounded once at the end
    work = u if dtype in (torch.float32, torch.float64) or (causal and matrix is None) else u.float()
    if causal:
        check_length(t, max_len)
        kernel = causal_kernel(alpha.to(torch.float64 if dtype == torch.float64 else torch.float32), max_len)
        y = causal_fftconv(work.reshape(b, c * g, t), kernel[:, :t], backend=backend).view(b, c, g, t)
    elif use_triton(u):
        return spectral_rotate_triton(u, alpha, matrix)
    else:
        spec = filter_spectrum(alpha.to(work.dtype), t)
        y = torch.fft.irfft(torch.fft.rfft(work) * spec[None, :, None, :], n=t)
    return rotate_channels(y, matrix).to(dtype)


def spectral_rotate_triton(u: Tensor, alpha: Tensor, matrix: Tensor | None) -> Tensor:
    """Non-causal :func:`spectral_rotate` with the fused Triton filter+rotation kernel.

    torch.fft (cuFFT on GPU) does the transforms; the pointwise work between them is one kernel,
    fed the same spectrum as the reference (:func:`~qtransformers.functional.qrh.operator_spectrum`).
    (The causal operator is a causal convolution: :func:`causal_fftconv_triton`.)
    Runs on any device Triton can target (CPU tensors under ``TRITON_INTERPRET=1``).
    """
    from qtransformers.kernels.spectral import filter_rotate

    b, c, g, t = u.shape
    spec, n = operator_spectrum(alpha.float(), t, False, t)
    if matrix is None:
        matrix = torch.eye(g, device=u.device).expand(c, g, g)
    x = torch.view_as_real(torch.fft.rfft(u.float(), n=n))
    y = filter_rotate(x, torch.view_as_real(spec), matrix.float())
    return torch.fft.irfft(torch.view_as_complex(y), n=n)[..., :t].to(u.dtype)


def qrh(
    x: Tensor, alpha: Tensor, q_left: Tensor, q_right: Tensor, causal: bool = False, max_len: int = DEFAULT_MAX_LEN
) -> Tensor:
    """Ψ_QRH of x (B, T, D, 4) with α (D,) and unit quaternions q_left, q_right (D, 4) -> (B, T, D, 4).

    ``max_len`` (causal only) fixes the grid of the causal kernel; T must not exceed it.
    Reference: :func:`~qtransformers.functional.qrh.qrh_ref`; the math: :mod:`qtransformers.functional.qrh`.
    """
    check_qrh(x, alpha, q_left, q_right)
    u = x.permute(0, 2, 3, 1)
    y = spectral_rotate(u, alpha, rotation_matrix(q_left, q_right), causal, max_len=max_len)
    return y.permute(0, 3, 1, 2)
