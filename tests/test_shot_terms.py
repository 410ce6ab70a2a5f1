"""The dense form of the shot estimate and its score-function term against the per-shot form.

``shot_estimate`` and ``leave_one_out_term`` compute Σ_s w_s v_{J_s} and the leave-one-out
score-function term either through dense (B,H,L,S) weight matrices or per shot, on gathered rows
of k and v (the plain reference). Values and the gradients reaching q, k and v must agree to float64 rounding for
any draws: duplicate keys, unused shots (weight 0), rows with one weighted shot, dead rows.
"""

from __future__ import annotations

import pytest
import torch

from qtransformers.functional import quantum_attention
from qtransformers.functional.quantum import single_shot_term
from qtransformers.functional.shots import dense_pays, leave_one_out_term, shot_estimate


def random_draws(b, h, rows, source, shots, seed):
    """Indices (with many duplicates) and weights with unused (0) shots, one-shot rows and a dead row."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, source, (b, h, rows, shots), generator=g)
    weights = torch.rand(b, h, rows, shots, generator=g, dtype=torch.float64)
    weights = weights * (torch.rand(b, h, rows, shots, generator=g) > 0.3)
    weights[..., 0, 1:] = 0.0  # row 0: a single weighted shot (or none when shots == 1 and it was dropped)
    if rows > 2:
        weights[..., 2, :] = 0.0  # a dead row
    return idx, weights


def both_ways(q, k, v, idx, weights, scale):
    """(dense output, per-shot output) of estimate + score-function terms, each with its q, k, v gradients."""
    results = []
    for dense in (True, False):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        qq, kk, vv = leaves
        estimate = shot_estimate(vv, idx, weights, dense=dense)
        out = estimate + leave_one_out_term(qq, kk, vv, idx, weights, estimate, scale, dense=dense)
        out = out + single_shot_term(qq, kk, None, False, scale, weights, estimate)
        cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
        (out * cotangent).sum().backward()
        results.append((out.detach(), [leaf.grad for leaf in leaves]))
    return results


@pytest.mark.parametrize(
    "b,h,rows,source,shots,e,ev",
    [
        (2, 3, 9, 11, 5, 4, 3),
        (1, 1, 1, 1, 1, 1, 1),
        (1, 2, 5, 1, 4, 2, 2),
        (2, 1, 97, 13, 8, 6, 5),
        (1, 1, 4, 33, 1, 3, 1),
    ],
    ids=["general", "all-ones", "one-key", "odd", "one-shot"],
)
def test_dense_terms_equal_the_per_shot_reference(b, h, rows, source, shots, e, ev):
    g = torch.Generator().manual_seed(rows * 31 + source)
    q = torch.randn(b, h, rows, e, generator=g, dtype=torch.float64)
    k = torch.randn(b, h, source, e, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, source, ev, generator=g, dtype=torch.float64)
    idx, weights = random_draws(b, h, rows, source, shots, seed=source)
    (out, grads), (out_ref, grads_ref) = both_ways(q, k, v, idx, weights, scale=0.37)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    assert out.abs().sum() > 0, "every draw was dropped: the case tests nothing"
    for name, grad, ref in zip("qkv", grads, grads_ref):
        torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12, msg=lambda m, n=name: f"grad of {n}: {m}")
    if source > 1:  # with one key, s_J = log Z and the score function is exactly 0
        assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0, "the score-function gradient must reach q, k"


def test_dead_and_unused_shots_get_no_gradient():
    q, k, v = (torch.randn(1, 1, n, 4, dtype=torch.float64) for n in (5, 7, 7))
    idx, weights = random_draws(1, 1, 5, 7, 6, seed=3)
    (_, grads), _ = both_ways(q, k, v, idx, weights, scale=0.5)
    assert torch.equal(grads[0][0, 0, 2], torch.zeros(4, dtype=torch.float64)), "a dead row's query moved"
    untouched = torch.ones(7, dtype=torch.bool)
    untouched[idx[weights > 0]] = False
    assert torch.equal(grads[2][0, 0, untouched], torch.zeros(int(untouched.sum()), 4, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["naive", "stratified", "hybrid"])
@pytest.mark.parametrize("causal", [False, True, "bool-mask", "dropout"])
def test_quantum_attention_is_the_same_in_both_forms(backend, causal, monkeypatch):
    """End to end: the same draws through the dense form and through the per-shot form."""
    import qtransformers.functional.quantum as quantum

    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(2, 2, 17, 8, generator=g, dtype=torch.float64) for _ in range(3))
    assert dense_pays(17, 6, 8), "this case must run the dense form by default"

    def run():
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        options = dict(is_causal=causal is True, backend=backend, num_samples=6)
        if causal == "bool-mask":  # rows see different keys; row 0 sees none
            options["attn_mask"] = (torch.rand(17, 17, generator=torch.Generator().manual_seed(3)) > 0.5).tril()
            options["attn_mask"][0] = False
        if causal == "dropout":
            options["dropout_p"] = 0.3
        out = quantum_attention(*leaves, **options, generator=torch.Generator().manual_seed(5))
        out.square().sum().backward()
        return out.detach(), [leaf.grad for leaf in leaves]

    dense = run()
    monkeypatch.setattr(quantum, "dense_pays", lambda *sizes: False)
    per_shot = run()
    torch.testing.assert_close(dense[0], per_shot[0], rtol=0, atol=1e-12)
    for grad, grad_ref in zip(dense[1], per_shot[1]):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)


def test_the_form_follows_the_cost():
    assert dense_pays(64, 32, 64) and dense_pays(4096, 32, 64) and dense_pays(2048, 32, 32)
    assert not dense_pays(4096, 32, 32) and not dense_pays(193, 1, 96)


def test_low_precision_inputs_follow_the_float64_terms():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 16, 8, generator=g, dtype=torch.float64) for _ in range(3))
    idx, weights = random_draws(1, 2, 16, 16, 4, seed=9)
    leaves = [t.to(torch.bfloat16).requires_grad_(True) for t in (q, k, v)]
    estimate = shot_estimate(leaves[2], idx, weights.float(), dense=True)
    out = estimate + leave_one_out_term(*leaves[:2], leaves[2], idx, weights.float(), estimate, 0.35, dense=True)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    (exact_out, exact_grads), _ = both_ways(q, k, v, idx, weights, scale=0.35)
    torch.testing.assert_close(estimate.double(), exact_out, rtol=0.05, atol=0.05)
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves)


def test_shared_key_value_heads_get_the_summed_gradient():
    """k, v with one head broadcast over the draws' three heads: both forms give the same gradients."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, 1, 9, 5, generator=g, dtype=torch.float64) for _ in range(2))
    idx, weights = random_draws(2, 3, 7, 9, 4, seed=5)
    (out, grads), (out_ref, grads_ref) = both_ways(q, k, v, idx, weights, scale=0.4)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    for grad, ref, leaf in zip(grads, grads_ref, (q, k, v)):
        assert grad.shape == leaf.shape
        torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12)


def test_the_dense_form_saves_the_draws_not_the_dense_matrices():
    """For the backward the dense form keeps (B,H,L,M) draws: nothing it saves has L·S entries per head."""
    b, h, rows, source, shots = 1, 2, 64, 128, 4
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(b, h, n, 8, generator=g, requires_grad=True) for n in (rows, source, source))
    idx, weights = random_draws(b, h, rows, source, shots, seed=8)
    weights = weights.float()
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        estimate = shot_estimate(v, idx, weights, dense=True)
        out = estimate + leave_one_out_term(q, k, v, idx, weights, estimate, 0.3, dense=True)
    assert saved and max(saved) < b * h * rows * source, f"a (B,H,L,S) matrix was saved: {sorted(saved)[-3:]}"
    out.sum().backward()
    assert v.grad.abs().sum() > 0 and q.grad.abs().sum() > 0
