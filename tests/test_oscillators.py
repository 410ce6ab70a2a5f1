"""Gated oscillator banks (the spectral mixer's bands): the Rust recurrence against the definition and
the FFT reference, gradients, causality and prefix consistency, dtypes and errors."""

from __future__ import annotations

import math

import pytest
import torch

from qtransformers.exceptions import DTypeError, InvalidArgumentError, QTransformersError, ShapeError
from qtransformers.functional.oscillators import gated_oscillators_ref, gated_oscillators_rust, oscillator_kernels
from qtransformers.kernels import gated_oscillators

BACKENDS = ("rust", "torch", "reference")


def case(b, t, d, s, dtype=torch.float64, seed=0, radius=(0.5, 0.99)):
    """v, gates, poles with |λ| in ``radius`` and any phase, weights: all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(b, t, d, generator=gen, dtype=dtype)
    gates = torch.rand(b, t, s, generator=gen, dtype=dtype)
    rho = radius[0] + (radius[1] - radius[0]) * torch.rand(s, d, generator=gen, dtype=dtype)
    theta = (2 * torch.rand(s, d, generator=gen, dtype=dtype) - 1) * math.pi
    poles = torch.stack([rho * theta.cos(), rho * theta.sin()])
    weights = torch.randn(2, s, d, generator=gen, dtype=dtype)
    return [x.requires_grad_(True) for x in (v, gates, poles, weights)]


def definition(v, gates, poles, weights):
    """y by its definition, as loops over lags with |λ|^j cos(j·arg λ + arg w)·|w| (float64)."""
    b, t, d = v.shape
    rho, theta = poles[0].hypot(poles[1]), torch.atan2(poles[1], poles[0])
    mag, phi = weights[0].hypot(weights[1]), torch.atan2(weights[1], weights[0])
    y = torch.zeros(b, t, d, dtype=torch.float64)
    for i in range(t):
        for j in range(i + 1):
            kernel = mag * rho**j * torch.cos(theta * j + phi)  # (S, D)
            y[:, i] += torch.einsum("bs,sd,bd->bd", gates[:, i], kernel, v[:, i - j])
    return y


@pytest.mark.parametrize("shape", [(2, 13, 3, 2), (1, 1, 1, 1), (3, 70, 1, 4)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_the_definition(shape, backend):
    args = [x.detach() for x in case(*shape)]
    torch.testing.assert_close(gated_oscillators(*args, backend=backend), definition(*args), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 97, 5, 3), (1, 1025, 2, 2), (4, 64, 3, 1), (1, 1, 1, 1)])
def test_rust_output_and_every_gradient_match_the_fft_reference(shape):
    """Float64, odd lengths and lengths around the backward's checkpoint blocks (64 steps)."""
    fast, ref = case(*shape, seed=1), case(*shape, seed=1)
    y_fast, y_ref = gated_oscillators_rust(*fast), gated_oscillators_ref(*ref)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-9, atol=1e-9)
    w = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g_fast = torch.autograd.grad((y_fast * w).sum(), fast)
    g_ref = torch.autograd.grad((y_ref * w).sum(), ref)
    for name, a, r in zip(("v", "gates", "poles", "weights"), g_fast, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-8, atol=1e-8, msg=lambda m, name=name: f"grad {name}: {m}")


def test_rust_gradcheck_float64():
    assert torch.autograd.gradcheck(gated_oscillators_rust, tuple(case(2, 70, 2, 2)))


def test_float32_recurrence_is_at_least_as_accurate_as_the_fft_path_with_slow_poles():
    """|λ| close to 1 (decay over ~1000 steps) at T = 2048, float32 against float64: the recurrence's rounding
    stays at float32's level (measured 7e-7), below the FFT convolution's (measured 2.6e-5)."""
    args = case(2, 2048, 4, 2, dtype=torch.float32, radius=(0.999, 0.9995))
    ref = gated_oscillators_ref(*(x.detach().double() for x in args))
    errors = {}
    for backend in BACKENDS:
        y = gated_oscillators(*(x.detach() for x in args), backend=backend)
        errors[backend] = ((y.double() - ref).norm() / ref.norm()).item()
    assert errors["rust"] < 2e-6, errors
    assert errors["torch"] < 1e-4 and errors["reference"] < 1e-4, errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_causal_and_prefix_consistent(backend):
    """Output t is the same whether the input stops at t or goes on, and changing later inputs changes nothing."""
    v, gates, poles, weights = (x.detach() for x in case(2, 150, 3, 2, seed=3))
    full = gated_oscillators(v, gates, poles, weights, backend=backend)
    for t in (1, 64, 65, 97):
        prefix = gated_oscillators(v[:, :t], gates[:, :t], poles, weights, backend=backend)
        torch.testing.assert_close(prefix, full[:, :t], rtol=1e-12, atol=1e-12)
        changed_v, changed_g = v.clone(), gates.clone()
        changed_v[:, t:] += 100.0
        changed_g[:, t:] = 1.0
        later = gated_oscillators(changed_v, changed_g, poles, weights, backend=backend)
        # the recurrence is exactly causal; an FFT convolution spreads rounding over the whole transform
        exact = backend == "rust"
        torch.testing.assert_close(later[:, :t], full[:, :t], rtol=0, atol=0 if exact else 1e-10)


def test_kernels_are_the_damped_oscillators():
    poles, weights = (x.detach() for x in case(1, 1, 3, 2, seed=4)[2:])
    k = oscillator_kernels(poles, weights, 5)
    lam, w = torch.complex(poles[0], poles[1]), torch.complex(weights[0], weights[1])
    for j in range(5):
        torch.testing.assert_close(k[..., j], (w * lam**j).real)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_half_inputs_are_computed_in_float32_and_cast_back(backend, dtype):
    args = [x.detach().float() for x in case(2, 97, 4, 2, seed=5)]
    y = gated_oscillators(*(x.to(dtype) for x in args), backend=backend)
    assert y.dtype == dtype
    ref = gated_oscillators_ref(*(x.to(dtype).double() for x in args))
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-2


def test_bad_input_raises_named_errors():
    v, gates, poles, weights = (x.detach() for x in case(2, 5, 3, 2))
    bad = [
        ((v[0], gates, poles, weights), ShapeError, "v (3,)|v \\(5, 3\\)"),
        ((v, gates[:, :4], poles, weights), ShapeError, "gates \\(2, 4, 2\\)"),
        ((v, gates, poles[:, :1], weights), ShapeError, "poles \\(2, 1, 3\\)"),
        ((v, gates, poles, weights[:1]), ShapeError, "weights \\(1, 2, 3\\)"),
        ((v[:, :0], gates[:, :0], poles, weights), ShapeError, "T >= 1"),
        ((v.long(), gates, poles, weights), DTypeError, "torch.int64"),
    ]
    for args, error, match in bad:
        for fn in (gated_oscillators, gated_oscillators_ref, gated_oscillators_rust):
            with pytest.raises(error, match=match) as info:
                fn(*args)
            assert isinstance(info.value, QTransformersError)
            assert isinstance(info.value, ValueError if error is ShapeError else TypeError)
    with pytest.raises(DTypeError, match="float32"):
        gated_oscillators_rust(v.float(), gates, poles, weights)
    with pytest.raises(InvalidArgumentError, match="backend must be one of"):
        gated_oscillators(v, gates, poles, weights, backend="cuda")
    with pytest.raises(InvalidArgumentError, match="CPU tensors only"):
        gated_oscillators_rust(*(x.to("meta") for x in (v, gates, poles, weights)))


def test_rust_op_compiles_fullgraph():
    args = [x.detach().float() for x in case(2, 33, 4, 2, seed=6)]
    compiled = torch.compile(gated_oscillators_rust, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(*args), gated_oscillators_rust(*args))


def test_rust_gradients_are_deterministic():
    """Parameter gradients sum the batch rows in order, whatever the thread split: bit-identical across calls."""
    args = [x.detach().float() for x in case(16, 40, 8, 3, seed=7)]
    grads = [_grads(args) for _ in range(3)]
    for again in grads[1:]:
        for a, b in zip(grads[0], again):
            assert torch.equal(a, b)


def _grads(args):
    leaves = [x.clone().requires_grad_(True) for x in args]
    return torch.autograd.grad(gated_oscillators_rust(*leaves).square().sum(), leaves)
