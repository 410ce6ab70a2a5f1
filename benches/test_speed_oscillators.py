"""Gated oscillator bank v (1, 4096, 128), 4 bands (the spectral mixer's at context 4096): the Rust recurrence
against the FFT convolution of the materialised kernels (torch.fft) and the plain reference, forward and backward."""

from __future__ import annotations

import math

import pytest
import torch

from qtransformers.functional.oscillators import gated_oscillators_ref
from qtransformers.kernels import gated_oscillators

B, T, D, S = 1, 4096, 128, 4
BACKENDS = ["rust", "torch", "reference"]


def _inputs(gen: torch.Generator, grad: bool = False) -> list[torch.Tensor]:
    v = torch.randn(B, T, D, generator=gen)
    gates = torch.rand(B, T, S, generator=gen)
    decay = torch.exp(-1.0 / (4.0 * 2.0 ** torch.arange(S, dtype=torch.float32)))[:, None]  # the mixer's τ_b
    omega = torch.rand(S, D, generator=gen) * math.pi
    poles = torch.stack([decay * omega.cos(), decay * omega.sin()])
    weights = torch.randn(2, S, D, generator=gen)
    return [x.requires_grad_(grad) for x in (v, gates, poles, weights)]


@pytest.mark.benchmark(group="gated oscillators (1, 4096, 128) x 4 bands forward")
@pytest.mark.parametrize("backend", BACKENDS)
def test_oscillators_forward(benchmark, backend, gen):
    args = _inputs(gen)
    y = benchmark(gated_oscillators, *args, backend=backend)
    ref = gated_oscillators_ref(*(x.double() for x in args))
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-4


@pytest.mark.benchmark(group="gated oscillators (1, 4096, 128) x 4 bands forward + backward")
@pytest.mark.parametrize("backend", BACKENDS)
def test_oscillators_backward(benchmark, backend, gen):
    args = _inputs(gen, grad=True)
    g = torch.randn(B, T, D, generator=gen)

    def step():
        return torch.autograd.grad((gated_oscillators(*args, backend=backend) * g).sum(), args)

    grads = benchmark(step)
    assert all(a.shape == x.shape and torch.isfinite(a).all() for a, x in zip(grads, args))
