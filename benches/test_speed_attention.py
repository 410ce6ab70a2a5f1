"""Attention: QuantumMultiheadAttention (exact backend) against nn.MultiheadAttention, and the sampled backends.

x (2, 256, 64), 4 heads. The sampled backends draw 32 shots per row; "exact" (SDPA) is their reference.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtransformers import QuantumMultiheadAttention
from qtransformers.functional import exact_attention, quantum_attention

B, L, E, H = 2, 256, 64, 4
SHOTS = 32


def _drop_in(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "nn.MultiheadAttention":
        return nn.MultiheadAttention(E, H, batch_first=True).eval()
    return QuantumMultiheadAttention(E, H, batch_first=True, quantum_backend="exact").eval()


@pytest.mark.benchmark(group="multihead attention (2, 256, 64), 4 heads, forward")
@pytest.mark.parametrize("kind", ["nn.MultiheadAttention", "QuantumMultiheadAttention(exact)"])
def test_multihead_forward(benchmark, kind, gen):
    mha = _drop_in(kind)
    x = torch.randn(B, L, E, generator=gen)
    with torch.no_grad():
        out, _ = benchmark(mha, x, x, x, need_weights=False)
    assert out.shape == (B, L, E) and torch.isfinite(out).all()


@pytest.mark.benchmark(group=f"sampled attention (2, 4, 256, 16), {SHOTS} shots per row")
@pytest.mark.parametrize("backend", ["exact", "naive", "stratified", "hybrid"])
def test_sampled_backend(benchmark, backend, gen):
    q, k, v = torch.randn(3, B, H, L, E // H, generator=gen).unbind(0)
    exact = exact_attention(q, k, v)[0]

    def run():
        return quantum_attention(
            q, k, v, backend=backend, num_samples=SHOTS, generator=torch.Generator().manual_seed(0)
        )

    out = benchmark(run)
    assert out.shape == exact.shape and torch.isfinite(out).all()
    if backend == "exact":
        assert torch.allclose(out, exact)
