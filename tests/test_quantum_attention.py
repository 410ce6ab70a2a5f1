"""Statistical and behavioural tests of the shot-sampled attention estimators."""

from __future__ import annotations

import math

import pytest
import torch

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional import exact_attention, quantum_attention

SE_BOUND = 5.0  # every unbiasedness check allows this many standard errors (plus 1e-6)
CONFIGS = [
    dict(backend="naive"),
    dict(backend="stratified"),
    dict(backend="hybrid", top_k=2),
    dict(backend="stratified", key_order="position"),
    dict(backend="stratified", control_variate=True, cv_block=3),
]


def _problem(reps: int, seed: int = 0, length: int = 5, source: int = 12):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 2, length, 4, generator=g) * 1.5
    k = torch.randn(1, 2, source, 4, generator=g)
    v = torch.randn(1, 2, source, 3, generator=g)
    mask = torch.rand(1, 1, length, source, generator=g) > 0.3
    mask[..., 0, :] = False  # a fully masked row
    mask[..., 1, 3] = True
    return q, k, v, mask, (q.expand(reps, -1, -1, -1), k.expand(reps, -1, -1, -1), v.expand(reps, -1, -1, -1))


def _assert_unbiased(samples: torch.Tensor, exact: torch.Tensor) -> None:
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.size(0))
    excess = (mean - exact).abs() - (SE_BOUND * se + 1e-6)
    assert excess.max() <= 0, f"bias beyond {SE_BOUND} SE: max excess {excess.max():.3g}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_estimators_are_unbiased_with_masks(cfg):
    q, k, v, mask, (qr, kr, vr) = _problem(4000)
    exact, _ = exact_attention(q, k, v, mask, need_weights=True)
    out = quantum_attention(qr, kr, vr, mask, num_samples=4, generator=torch.Generator().manual_seed(1), **cfg)
    assert torch.isfinite(out).all()
    assert out[:, :, 0].abs().max() == 0, "fully masked row must give zeros"
    _assert_unbiased(out, exact[0])


@pytest.mark.parametrize(
    "cv",
    [
        dict(cv_kind="block", cv_block=3),
        dict(cv_kind="favor", cv_features=16),
        dict(cv_kind="block", cv_block=3, adaptive=True),
    ],
    ids=["block", "favor", "block-adaptive"],
)
@pytest.mark.parametrize("backend", ["naive", "stratified"])
def test_control_variates_are_unbiased_without_a_mask(cv, backend):
    q, k, v, _, (qr, kr, vr) = _problem(4000, seed=3)
    exact, _ = exact_attention(q, k, v)
    out = quantum_attention(
        qr,
        kr,
        vr,
        backend=backend,
        num_samples=4,
        control_variate=True,
        generator=torch.Generator().manual_seed(2),
        **cv,
    )
    assert torch.isfinite(out).all()
    _assert_unbiased(out, exact[0])


@pytest.mark.parametrize(
    "kwargs",
    [dict(adaptive=True), dict(control_variate=True, cv_kind="favor"), dict(key_order="value")],
    ids=["adaptive", "favor-cv", "value-order"],
)
def test_row_coupling_options_refuse_row_dependent_masks(kwargs):
    q, k, v, mask, _ = _problem(1)
    for masking in (dict(is_causal=True), dict(attn_mask=mask)):
        with pytest.raises(InvalidArgumentError, match="cannot"):
            quantum_attention(q, k, v, backend="stratified", **masking, **kwargs)


def test_block_control_variate_reduces_error():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 256, 16, generator=g) for _ in range(3))
    exact, _ = exact_attention(q, k, v)

    def error(**kw):
        out = quantum_attention(
            q, k, v, backend="stratified", num_samples=8, generator=torch.Generator().manual_seed(0), **kw
        )
        return float((out - exact).norm() / exact.norm())

    assert error(control_variate=True, cv_block=8) < 0.75 * error()


def test_masked_keys_never_contribute():
    q, k, v, mask, _ = _problem(1)
    gen = torch.Generator()
    for backend in ("naive", "stratified", "hybrid"):
        for cv in (False, True) if backend != "hybrid" else (False,):
            extra = dict(control_variate=cv, cv_block=2)
            out, weights = quantum_attention(
                q, k, v, mask, backend=backend, num_samples=6, generator=gen.manual_seed(5), need_weights=True, **extra
            )
            assert weights[~mask.expand_as(weights)].abs().max() == 0
            v2 = v.clone()
            v2[..., ~mask[0, 0].any(0), :] = 1e6  # keys masked for every row
            v2[..., 0, :] = torch.where(mask[0, 0, :, 0].any(), v2[..., 0, :], 1e6)
            out2 = quantum_attention(
                q, k, v2, mask, backend=backend, num_samples=6, generator=gen.manual_seed(5), **extra
            )
            assert torch.isfinite(out2).all()
            assert out[:, :, 0].abs().max() == 0 and out2[:, :, 0].abs().max() == 0


def test_masked_key_values_do_not_change_the_output():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    key_mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    key_mask[..., 4:] = False
    v2 = v.clone()
    v2[..., 4:, :] = 1e3
    float_mask = torch.zeros(2, 1, 6, 6).masked_fill(~key_mask, float("-inf"))  # same keys for every row
    for backend in ("naive", "stratified", "hybrid"):
        for order in ("position", "auto", "value"):
            for mask in (key_mask, float_mask):
                a = quantum_attention(
                    q,
                    k,
                    v,
                    mask,
                    backend=backend,
                    key_order=order,
                    control_variate=backend != "hybrid",
                    generator=torch.Generator().manual_seed(1),
                )
                b = quantum_attention(
                    q,
                    k,
                    v2,
                    mask,
                    backend=backend,
                    key_order=order,
                    control_variate=backend != "hybrid",
                    generator=torch.Generator().manual_seed(1),
                )
                torch.testing.assert_close(a, b)


def test_same_seed_same_output_and_exact_backend():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, 4, generator=g) for _ in range(3))
    kwargs = dict(backend="stratified", adaptive=True, control_variate=True, num_samples=5)
    a = quantum_attention(q, k, v, generator=torch.Generator().manual_seed(7), **kwargs)
    b = quantum_attention(q, k, v, generator=torch.Generator().manual_seed(7), **kwargs)
    c = quantum_attention(q, k, v, generator=torch.Generator().manual_seed(8), **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(quantum_attention(q, k, v, backend="exact"), exact_attention(q, k, v)[0])


def test_heavy_keys_enter_exactly_and_many_shots_converge():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 6, 4, generator=g) for _ in range(3))
    exact, _ = exact_attention(q, k, v)
    # With m >= S every key has m·p_j >= 1 only if p_j >= 1/m; with m = 4096 all keys do here.
    out = quantum_attention(q, k, v, backend="stratified", num_samples=4096, generator=g)
    torch.testing.assert_close(out, exact, atol=1e-5, rtol=1e-5)


def _replicated_grads(backend: str, reps: int):
    q0, k0, v0, _, _ = _problem(1, seed=4, length=3, source=6)
    c = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(9))
    leaves = [t.clone().requires_grad_(True) for t in (q0, k0, v0)]
    (exact_attention(*leaves)[0] * c).sum().backward()
    reps_leaves = [t.expand(reps, -1, -1, -1).clone().requires_grad_(True) for t in (q0, k0, v0)]
    out = quantum_attention(
        *reps_leaves, backend=backend, num_samples=8, key_order="position", generator=torch.Generator().manual_seed(3)
    )
    (out * c).sum().backward()
    return [leaf.grad for leaf in reps_leaves], [leaf.grad[0] for leaf in leaves]


def test_naive_gradients_reach_q_k_v_and_are_unbiased():
    grads, exact = _replicated_grads("naive", 3000)
    for grad, ref in zip(grads, exact):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        _assert_unbiased(grad, ref)


def test_stratified_gradients_follow_the_exact_gradient():
    # Documented: the systematic design's q/k score-function gradient is biased by the
    # dependence between strata (O(1/m)); v's pathwise gradient is unbiased.
    grads, exact = _replicated_grads("stratified", 3000)
    _assert_unbiased(grads[2], exact[2])
    for grad, ref in zip(grads[:2], exact[:2]):
        mean = grad.mean(0)
        cosine = torch.nn.functional.cosine_similarity(mean.flatten(), ref.flatten(), dim=0)
        assert cosine > 0.95, f"mean gradient cosine to exact {cosine:.3f}"


def test_bad_input_raises():
    x = torch.randn(1, 1, 4, 2)
    with pytest.raises(ShapeError):
        quantum_attention(x, x[..., :3, :], x)
    with pytest.raises(InvalidArgumentError):
        quantum_attention(x, x, x, backend="bogus")
    with pytest.raises(InvalidArgumentError):
        quantum_attention(x, x, x, num_samples=0)
    with pytest.raises(InvalidArgumentError):
        quantum_attention(x, x, x, key_order="random")
    with pytest.raises(InvalidArgumentError):
        quantum_attention(x, x, x, backend="hybrid", control_variate=True)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(backend="stratified", adaptive=True),
        dict(backend="hybrid"),
        dict(backend="naive", control_variate=True),
        dict(backend="stratified"),
    ],
)
def test_rust_and_torch_samplers_draw_the_same_shots(cfg):
    q, k, v, mask, (qr, kr, vr) = _problem(50, seed=6)
    masking = {} if cfg.get("adaptive") else dict(attn_mask=mask)
    a, b = (
        quantum_attention(
            qr, kr, vr, num_samples=4, sampler=s, generator=torch.Generator().manual_seed(4), **masking, **cfg
        )
        for s in ("rust", "torch")
    )
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_side_information_counts_the_row_normaliser():
    from qtransformers.functional import side_information_cost

    def cost(**kw):
        c = side_information_cost(256, 256, 64, 64, num_samples=8, **kw)
        return c["side_information_macs"] / c["exact_macs"], c["normaliser_macs"]

    # Every estimator that reads a normalised p_J pays for the normaliser: half of exact attention.
    for kw in (
        dict(backend="stratified", control_variate=False),
        dict(backend="hybrid", control_variate=False),
        dict(backend="naive", control_variate=False, adaptive=True),
        dict(backend="naive", control_variate=True, cv_kind="favor"),
    ):
        frac, normaliser = cost(**kw)
        assert normaliser == 256 * 256 * 64 and frac >= 0.5, kw
    assert cost(backend="naive", control_variate=False) == (0.0, 0)
    frac, normaliser = cost(backend="naive", control_variate=True)
    assert normaliser == 0 and 0 < frac <= 0.25


@pytest.mark.parametrize("mask_kind", ["none", "causal", "bool", "bool-dead-rows", "float", "float-dead-rows"])
@pytest.mark.parametrize("sizes", [(7, 7), (5, 9), (9, 5), (1, 1)], ids=["square", "wide", "tall", "one"])
def test_simulated_probs_equal_the_safe_softmax_of_the_scores(mask_kind, sizes):
    from qtransformers.functional.attention import safe_softmax, scaled_scores
    from qtransformers.functional.masks import causal_additive_mask
    from qtransformers.functional.quantum import simulated_probs

    length, source = sizes
    g = torch.Generator().manual_seed(length * 10 + source)
    q = torch.randn(2, 3, length, 4, generator=g, dtype=torch.float64)
    k = torch.randn(2, 3, source, 4, generator=g, dtype=torch.float64)
    keep = torch.rand(2, 1, length, source, generator=g) > 0.4
    if mask_kind.endswith("dead-rows"):
        keep[:, :, 0] = False
    mask = {
        "none": None,
        "causal": None,
        "bool": keep,
        "bool-dead-rows": keep,
        "float": torch.randn(length, source, generator=g, dtype=torch.float64),
        "float-dead-rows": torch.zeros(2, 1, length, source, dtype=torch.float64).masked_fill(~keep, float("-inf")),
    }[mask_kind]
    causal = mask_kind == "causal"
    probs = simulated_probs(q, k, mask, causal, 0.5)
    assert torch.equal(probs, safe_softmax(scaled_scores(q, k, mask, causal, 0.5)))
    if causal:  # the in-place causal fill gives what adding the additive mask gave
        added = torch.matmul(q * 0.5, k.transpose(-2, -1)) + causal_additive_mask(length, source, torch.float64)
        assert torch.equal(probs, safe_softmax(added))
    if mask_kind.endswith("dead-rows"):
        assert torch.equal(probs[:, :, 0], torch.zeros_like(probs[:, :, 0]))
    assert torch.isfinite(probs).all()
