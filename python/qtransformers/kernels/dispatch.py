"""When to use the Triton kernels: CUDA tensors with Triton importable; otherwise the reference math.

``QTRANSFORMERS_DISABLE_TRITON=1`` forces the torch path on GPU too (for A/B timing).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

FUSED_MAX_LEN = 16384
"""Longest sequence the fused Monarch kernel takes; longer ones use cuFFT with the fused pointwise kernel."""


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def use_triton(x: Tensor) -> bool:
    """True when ``x`` lives on CUDA, Triton is installed and not disabled by the environment."""
    return x.is_cuda and triton_available() and os.environ.get("QTRANSFORMERS_DISABLE_TRITON", "0") != "1"


def causal_fftconv_triton(u: Tensor, k: Tensor) -> Tensor:
    """:func:`qtransformers.functional.causal_fftconv` on Triton: u (B, C, T), k (K, T) -> (B, C, T), u's dtype.

    T <= :data:`FUSED_MAX_LEN`: the fused kernel :func:`~qtransformers.kernels.fftconv_triton.fftconv_triton`.
    Longer: torch.fft (cuFFT) transforms with the spectrum multiply as one Triton kernel between them
    (:func:`~qtransformers.kernels.spectral.filter_rotate` with 1×1 rotations). Runs on any device Triton
    can target (CPU tensors under ``TRITON_INTERPRET=1``).
    """
    if u.size(-1) <= FUSED_MAX_LEN:
        from qtransformers.kernels.fftconv_triton import fftconv_triton

        return fftconv_triton(u, k)
    from qtransformers.functional.fftconv import fft_size
    from qtransformers.kernels.spectral import filter_rotate

    b, c, t = u.shape
    n = fft_size(t)
    x = torch.view_as_real(torch.fft.rfft(u.float(), n=n)).unsqueeze(2)
    spec = torch.view_as_real(torch.fft.rfft(k.float(), n=n)).repeat_interleave(c // k.size(0), dim=0)
    y = filter_rotate(x, spec, torch.ones(c, 1, 1, device=u.device))
    return torch.fft.irfft(torch.view_as_complex(y.squeeze(2)), n=n)[..., :t].to(u.dtype)


def spectral_rotate_triton(u: Tensor, alpha: Tensor, matrix: Tensor | None) -> Tensor:
    """Non-causal :func:`qtransformers.functional.qrh.spectral_rotate` with the fused Triton filter+rotation kernel.

    torch.fft (cuFFT on GPU) does the transforms; the pointwise work between them is one kernel,
    fed the same spectrum as the reference (:func:`~qtransformers.functional.qrh.operator_spectrum`).
    (The causal operator is a causal convolution: :func:`causal_fftconv_triton`.)
    Runs on any device Triton can target (CPU tensors under ``TRITON_INTERPRET=1``).
    """
    from qtransformers.functional.qrh import operator_spectrum
    from qtransformers.kernels.spectral import filter_rotate

    b, c, g, t = u.shape
    spec, n = operator_spectrum(alpha.float(), t, False, t)
    if matrix is None:
        matrix = torch.eye(g, device=u.device).expand(c, g, g)
    x = torch.view_as_real(torch.fft.rfft(u.float(), n=n))
    y = filter_rotate(x, torch.view_as_real(spec), matrix.float())
    return torch.fft.irfft(torch.view_as_complex(y), n=n)[..., :t].to(u.dtype)
