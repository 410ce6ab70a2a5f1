"""Causal FFT convolution u (2, 64, 2048) * k (64, 2048): the Rust core against torch.fft, forward and backward."""

from __future__ import annotations

import pytest
import torch

from qtransformers.functional import causal_fftconv_ref
from qtransformers.kernels import causal_fftconv

SHAPE = (2, 64, 2048)
BACKENDS = ["rust", "torch", "reference"]  # reference: plain torch.fft, autograd through complex ops


def _inputs(gen: torch.Generator, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.randn(*SHAPE, generator=gen).requires_grad_(grad)
    k = (torch.randn(SHAPE[1], SHAPE[2], generator=gen) / SHAPE[2]).requires_grad_(grad)
    return u, k


@pytest.mark.benchmark(group="causal fftconv (2, 64, 2048) forward")
@pytest.mark.parametrize("backend", BACKENDS)
def test_fftconv_forward(benchmark, backend, gen):
    u, k = _inputs(gen)
    y = benchmark(causal_fftconv, u, k, backend)
    assert torch.allclose(y, causal_fftconv_ref(u, k), atol=1e-4)


@pytest.mark.benchmark(group="causal fftconv (2, 64, 2048) forward + backward")
@pytest.mark.parametrize("backend", BACKENDS)
def test_fftconv_backward(benchmark, backend, gen):
    u, k = _inputs(gen, grad=True)
    g = torch.randn(*SHAPE, generator=gen)

    def step():
        return torch.autograd.grad((causal_fftconv(u, k, backend) * g).sum(), (u, k))

    gu, gk = benchmark(step)
    assert gu.shape == u.shape and gk.shape == k.shape
