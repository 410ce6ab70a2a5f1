"""When to use the Triton kernels: CUDA tensors with Triton importable; otherwise the reference math.

``QTRANSFORMERS_DISABLE_TRITON=1`` forces the torch path on GPU too (for A/B timing).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def use_triton(x: Tensor) -> bool:
    """True when ``x`` lives on CUDA, Triton is installed and not disabled by the environment."""
    return x.is_cuda and triton_available() and os.environ.get("QTRANSFORMERS_DISABLE_TRITON", "0") != "1"


def spectral_rotate_triton(u: Tensor, alpha: Tensor, matrix: Tensor | None, causal: bool, max_len: int) -> Tensor:
    """:func:`qtransformers.functional.qrh.spectral_rotate` with the fused Triton filter+rotation kernel.

    torch.fft (cuFFT on GPU) does the transforms; the pointwise work between them is one kernel,
    fed the same spectrum as the reference (:func:`~qtransformers.functional.qrh.operator_spectrum`).
    Runs on any device Triton can target (CPU tensors under ``TRITON_INTERPRET=1``).
    """
    from qtransformers.functional.qrh import operator_spectrum
    from qtransformers.kernels.spectral import filter_rotate

    b, c, g, t = u.shape
    spec, n = operator_spectrum(alpha.float(), t, causal, max_len)
    if matrix is None:
        matrix = torch.eye(g, device=u.device).expand(c, g, g)
    x = torch.view_as_real(torch.fft.rfft(u.float(), n=n))
    y = filter_rotate(x, torch.view_as_real(spec), matrix.float())
    return torch.fft.irfft(torch.view_as_complex(y), n=n)[..., :t].to(u.dtype)
