"""Gated banks of damped complex oscillators: the bands of the ``spectral`` mixer.

For v (B, T, D), gates g (B, T, S), complex poles λ (S, D) and weights w (S, D), each given as a real
(2, S, D) tensor (real parts, then imaginary parts)::

    y[b, t, d] = Σ_s g[b, t, s] · Σ_{j <= t} Re(w[s, d] · λ[s, d]^j) · v[b, t - j, d]

Band s of channel d is the causal convolution of v with the kernel ``Re(w λ^j)``, a damped
oscillator of frequency arg λ and decay |λ| per step (|λ| < 1). Two implementations of the same math:

- :func:`gated_oscillators_ref`: the kernels materialised (:func:`oscillator_kernels`) and convolved by
  FFT (:func:`~qtransformers.functional.fftconv.causal_fftconv_ref`), autograd through torch;
- :func:`gated_oscillators_rust`: the Rust core's recurrence ``h_t = λ h_{t-1} + v_t``,
  ``y_t = Σ_s g_ts Re(w h_t)``, O(T) per channel with no kernel materialised, and its backward (the
  adjoint recurrence) in Rust; a custom op (``qtransformers::gated_oscillators_rust``). CPU,
  float32/float64.

The choice between them (and the FFT convolution on the other backends) is in
:func:`qtransformers.kernels.gated_oscillators`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError
from qtransformers.functional.fftconv import as_numpy, causal_fftconv_ref


def check_bank(v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor) -> None:
    """Raise unless v is (B, T, D), gates (B, T, S), poles and weights (2, S, D), all floating point, T >= 1."""
    ok = v.dim() == 3 and gates.dim() == 3 and gates.shape[:2] == v.shape[:2] and v.size(1) >= 1
    want = (2, gates.size(-1), v.size(-1)) if ok else None
    if not ok or poles.shape != want or weights.shape != want:
        raise ShapeError(
            "expected v (B, T, D), gates (B, T, S) and poles, weights (2, S, D) with T >= 1, got "
            f"v {tuple(v.shape)}, gates {tuple(gates.shape)}, poles {tuple(poles.shape)}, weights {tuple(weights.shape)}"
        )
    if not all(x.is_floating_point() for x in (v, gates, poles, weights)):
        raise DTypeError(
            f"v, gates, poles and weights must be floating point, got {v.dtype}, {gates.dtype}, {poles.dtype}, "
            f"{weights.dtype}"
        )


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the bank is computed in: float32 and float64 as they are, half and bfloat16 in float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def oscillator_kernels(poles: Tensor, weights: Tensor, t: int) -> Tensor:
    """The kernels Re(w λ^j) for lags j = 0..t-1 from poles and weights (2, S, D): (S, D, t).

    Half and bfloat16 parameters are computed in float32 (and the kernels returned in float32).
    """
    work = working_dtype(poles.dtype)
    poles, weights = poles.to(work), weights.to(work)
    lam = torch.complex(poles[0], poles[1])
    w = torch.complex(weights[0], weights[1])
    lag = torch.arange(t, device=poles.device, dtype=work)
    return (w[..., None] * torch.exp(torch.log(lam)[..., None] * lag)).real


def gate_bands(z: Tensor, gates: Tensor) -> Tensor:
    """Σ_s gates[b, t, s] · z[b, s, d, t] for band outputs z (B, S, D, T) and gates (B, T, S): (B, T, D)."""
    # elementwise product and sum: an einsum here ran as B*T tiny matmuls on the CPU
    return (z * gates.transpose(1, 2)[:, :, None, :]).sum(dim=1).transpose(1, 2)


def gated_oscillators_by_convolution(
    v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor, convolve: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """The bank with materialised kernels: ``convolve(u (B, S·D, T), k (S·D, T))`` runs the causal convolutions."""
    b, t, d = v.shape
    bands = gates.size(-1)
    k = oscillator_kernels(poles, weights, t).reshape(bands * d, t).to(v.dtype)
    z = convolve(v.transpose(1, 2).repeat(1, bands, 1), k)
    return gate_bands(z.view(b, bands, d, t), gates)


def gated_oscillators_ref(v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor) -> Tensor:
    """Reference gated oscillator bank: v (B, T, D), gates (B, T, S), poles, weights (2, S, D) -> (B, T, D)."""
    check_bank(v, gates, poles, weights)
    return gated_oscillators_by_convolution(v, gates, poles, weights, causal_fftconv_ref)


@torch.library.custom_op("qtransformers::gated_oscillators_rust", mutates_args=())
def _rust_forward(v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor) -> Tensor:
    arrays = [as_numpy(x) for x in (v, gates, poles, weights)]
    return torch.from_numpy(np.asarray(_core.gated_oscillators(*arrays)))


@_rust_forward.register_fake
def _(v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor) -> Tensor:
    return torch.empty_like(v)


@torch.library.custom_op("qtransformers::gated_oscillators_rust_backward", mutates_args=())
def _rust_backward(
    grad: Tensor, v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    grads = _core.gated_oscillators_backward(*(as_numpy(x) for x in (grad, v, gates, poles, weights)))
    gv, gg, gp, gw = (torch.from_numpy(np.asarray(g)) for g in grads)
    return gv, gg, gp, gw


@_rust_backward.register_fake
def _(grad: Tensor, v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return torch.empty_like(v), torch.empty_like(gates), torch.empty_like(poles), torch.empty_like(weights)


def _rust_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _rust_grad(ctx, grad: Tensor):
    return _rust_backward(grad.contiguous(), *ctx.saved_tensors)


_rust_forward.register_autograd(_rust_grad, setup_context=_rust_setup)


def gated_oscillators_rust(v: Tensor, gates: Tensor, poles: Tensor, weights: Tensor) -> Tensor:
    """Gated oscillator bank by the Rust recurrence: CPU tensors, all float32 or all float64 -> (B, T, D)."""
    check_bank(v, gates, poles, weights)
    if any(x.device.type != "cpu" for x in (v, gates, poles, weights)):
        raise InvalidArgumentError(f"the rust backend runs on CPU tensors only, got {v.device}")
    if v.dtype not in (torch.float32, torch.float64) or any(x.dtype != v.dtype for x in (gates, poles, weights)):
        raise DTypeError(
            "the rust backend takes v, gates, poles and weights all float32 or all float64, got "
            f"{v.dtype}, {gates.dtype}, {poles.dtype}, {weights.dtype}"
        )
    return _rust_forward(*(x.contiguous() for x in (v, gates, poles, weights)))
