"""Attention: QuantumMultiheadAttention (exact backend) against nn.MultiheadAttention, and the sampled backends.

x (2, 256, 64), 4 heads. The sampled backends draw 32 shots per row; "exact" (SDPA) is their reference.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qtransformers import QuantumMultiheadAttention
from qtransformers.functional import exact_attention, quantum_attention
from qtransformers.functional import quantum as quantum_module
from qtransformers.functional.shots import dense_pays

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


FORM_SIZES = [
    (8, 256, 32),
    (2, 512, 32),
    (1, 1024, 32),
    (4, 1024, 32),
    (1, 2048, 32),
    (1, 4096, 32),
]  # (B, L = S, head dim); 4 heads, 32 shots


def _causal_step(q, k, v):
    """Forward and backward of causal stratified attention; returns the output and the q, k, v gradients."""
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = quantum_attention(*leaves, is_causal=True, num_samples=SHOTS, generator=torch.Generator().manual_seed(0))
    out.square().sum().backward()
    return [out.detach()] + [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("form", ["dense", "per-shot"])
@pytest.mark.parametrize("size", FORM_SIZES, ids=[f"B{b}-S{s}-E{e}" for b, s, e in FORM_SIZES])
def test_shot_forms_forward_backward(benchmark, form, size, gen, monkeypatch):
    """The dense and per-shot forms of the estimate and its score-function term (same draws, same result)."""
    b, s, e = size
    benchmark.group = f"causal sampled attention fwd+bwd, (B={b}, 4 heads, S={s}, E={e}), {SHOTS} shots"
    benchmark.extra_info["dense_pays"] = dense_pays(s, SHOTS, e)
    q, k, v = torch.randn(3, b, 4, s, e, generator=gen).unbind(0)
    monkeypatch.setattr(quantum_module, "dense_pays", lambda *sizes: form == "dense")
    got = benchmark(_causal_step, q, k, v)
    monkeypatch.setattr(quantum_module, "dense_pays", lambda *sizes: form != "dense")
    for a, other in zip(got, _causal_step(q, k, v)):
        torch.testing.assert_close(a, other, rtol=1e-4, atol=1e-4)
