"""The ΨQRH layer on x (2, 512, 4·32), causal (Rust FFT convolution) and not (torch.fft), against its reference."""

from __future__ import annotations

import pytest
import torch

from qtransformers import QRHLayer

B, T, D = 2, 512, 32


@pytest.mark.benchmark(group="QRHLayer (2, 512, 128) forward")
@pytest.mark.parametrize("causal", [False, True], ids=["non-causal", "causal"])
def test_qrh_layer_forward(benchmark, causal, gen):
    torch.manual_seed(0)
    layer = QRHLayer(D, causal=causal, max_len=T).eval()
    x = torch.randn(B, T, 4 * D, generator=gen)
    with torch.no_grad():
        y = benchmark(layer, x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.benchmark(group="QRHLayer (2, 512, 128) forward + backward")
@pytest.mark.parametrize("causal", [False, True], ids=["non-causal", "causal"])
def test_qrh_layer_backward(benchmark, causal, gen):
    torch.manual_seed(0)
    layer = QRHLayer(D, causal=causal, max_len=T)
    x = torch.randn(B, T, 4 * D, generator=gen)

    def step():
        layer.zero_grad()
        layer(x).square().mean().backward()
        return layer.alpha.grad

    grad = benchmark(step)
    assert grad is not None and torch.isfinite(grad).all()
