"""Causal FFT convolution of (B, C, T) signals with (K, T) kernels, K dividing C: the CPU paths.

``y[b, c, t] = sum_{j <= t} k[c // g, j] * u[b, c, t - j]`` where g = C / K consecutive
channels share a kernel (g = 1: one kernel per channel; QRH uses g = 4, one kernel per
quaternion, without materialising repeated kernels). Zero-pad to an even 5-smooth length
``n >= 2T - 1``, rfft, multiply, irfft, keep the first T samples, so no output sees a later
input. Three implementations of the same math live here:

- :func:`causal_fftconv_ref`: plain ``torch.fft`` with autograd through the complex ops (the reference);
- :func:`causal_fftconv_torch`: an ``autograd.Function`` whose backward is the matching correlation, also
  by FFT, keeping only the real inputs for backward (no complex intermediates saved);
- :func:`causal_fftconv_rust`: the Rust core (realfft plans cached, rows/channels in parallel with rayon),
  registered as the custom op ``qtransformers::causal_fftconv_rust`` with its own backward (also in
  Rust); a custom op, so ``torch.compile`` treats it as one opaque node. CPU, float32/float64 only.

The Triton kernel and the choice between all four (``backend="auto"``, dtype handling) are one
layer up, in :func:`qtransformers.kernels.causal_fftconv`; this module never imports ``kernels``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError


def fft_size(t: int) -> int:
    """Smallest even 5-smooth length >= 2t - 1 (the same rule as the Rust core)."""
    n = max(2 * int(t) - 1, 2)  # int(): under torch.compile's dynamic shapes, specialise on the length
    n += n % 2
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


def check_inputs(u: Tensor, k: Tensor) -> None:
    """Raise unless u is (B, C, T) and k (K, T) floating point with K dividing C and T >= 1."""
    if u.dim() != 3 or k.dim() != 2 or k.size(1) != u.size(2) or k.size(0) == 0 or u.size(1) % k.size(0):
        raise ShapeError(
            f"expected u (B, C, T) and k (K, T) with K dividing C, got u {tuple(u.shape)} and k {tuple(k.shape)}"
        )
    if u.size(-1) == 0:
        raise ShapeError(f"sequence length must be positive, got u {tuple(u.shape)}")
    if not (u.is_floating_point() and k.is_floating_point()):
        raise DTypeError(f"u and k must be floating point, got {u.dtype} and {k.dtype}")


def _grouped(x: Tensor, kernels: int) -> Tensor:
    """View (B, C, ...) as (B, K, C / K, ...)."""
    return x.view(x.size(0), kernels, x.size(1) // kernels, *x.shape[2:])


def causal_fftconv_ref(u: Tensor, k: Tensor) -> Tensor:
    """Reference causal convolution: u (B, C, T), k (K, T) -> (B, C, T), autograd through torch.fft."""
    t = u.size(-1)
    n = fft_size(t)
    spec = _grouped(torch.fft.rfft(u, n=n), k.size(0)) * torch.fft.rfft(k, n=n)[:, None, :]
    return torch.fft.irfft(spec.flatten(1, 2), n=n)[..., :t]


class _TorchFFTConv(torch.autograd.Function):
    """Causal FFT convolution whose backward is an FFT correlation (saves only u and k)."""

    @staticmethod
    def forward(ctx, u: Tensor, k: Tensor) -> Tensor:
        ctx.save_for_backward(u, k)
        return causal_fftconv_ref(u, k)

    @staticmethod
    def backward(ctx, grad: Tensor):
        u, k = ctx.saved_tensors
        t = u.size(-1)
        n = fft_size(t)
        kernels = k.size(0)
        g_spec = _grouped(torch.fft.rfft(grad, n=n), kernels)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:
            corr = g_spec * torch.fft.rfft(k, n=n).conj()[:, None, :]
            grad_u = torch.fft.irfft(corr.flatten(1, 2), n=n)[..., :t]
        if ctx.needs_input_grad[1]:
            cross = (g_spec * _grouped(torch.fft.rfft(u, n=n), kernels).conj()).sum(dim=(0, 2))
            grad_k = torch.fft.irfft(cross, n=n)[..., :t]
        return grad_u, grad_k


def as_numpy(x: Tensor) -> np.ndarray:
    """A C-contiguous numpy view (or copy) of a detached CPU tensor, as the Rust core takes it."""
    return x.detach().contiguous().numpy()


@torch.library.custom_op("qtransformers::causal_fftconv_rust", mutates_args=())
def _rust_forward(u: Tensor, k: Tensor) -> Tensor:
    return torch.from_numpy(np.asarray(_core.causal_fftconv(as_numpy(u), as_numpy(k))))


@_rust_forward.register_fake
def _(u: Tensor, k: Tensor) -> Tensor:
    return torch.empty_like(u)


@torch.library.custom_op("qtransformers::causal_fftconv_rust_backward", mutates_args=())
def _rust_backward(grad: Tensor, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    gu, gk = _core.causal_fftconv_backward(as_numpy(grad), as_numpy(u), as_numpy(k))
    return torch.from_numpy(np.asarray(gu)), torch.from_numpy(np.asarray(gk))


@_rust_backward.register_fake
def _(grad: Tensor, u: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    return torch.empty_like(u), torch.empty_like(k)


def _rust_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _rust_grad(ctx, grad: Tensor):
    u, k = ctx.saved_tensors
    return _rust_backward(grad.contiguous(), u, k)


_rust_forward.register_autograd(_rust_grad, setup_context=_rust_setup)


def causal_fftconv_torch(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution u (B, C, T), k (K, T) -> (B, C, T) with an FFT-correlation backward (same dtype inputs)."""
    return _TorchFFTConv.apply(u, k)


def causal_fftconv_rust(u: Tensor, k: Tensor) -> Tensor:
    """Causal convolution u (B, C, T), k (K, T) -> (B, C, T) in the Rust core: CPU, float32/float64, same dtypes."""
    if u.device.type != "cpu":
        raise InvalidArgumentError(f"the rust backend runs on CPU tensors only, got {u.device}")
    return _rust_forward(u.contiguous(), k.contiguous())
