"""lsh_attention: Rust vs the PyTorch reference, exactness at full budget, statistics, causality, masks, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qtransformers.exceptions import DTypeError, InvalidArgumentError, QTransformersError, ShapeError
from qtransformers.functional import exact_attention, lsh_attention, lsh_attention_design, lsh_attention_ref
from qtransformers.functional.cost import side_information_cost
from qtransformers.functional.lsh import LshSettings

SMALL = LshSettings(budget=3, bits=3, tables=2, sinks=1, window=2)


def qkv(b, h, length, s, e, ev, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, length, e, generator=gen),
        torch.randn(b, h, s, e, generator=gen),
        torch.randn(b, h, s, ev, generator=gen),
    )


def masks(b, h, length, s):
    gen = torch.Generator().manual_seed(9)
    keep = torch.rand(b, 1, length, s, generator=gen) > 0.3
    keep[..., 0] = True
    bias = torch.randn(1, h, 1, s, generator=gen).masked_fill(torch.rand(1, h, 1, s, generator=gen) < 0.2, -torch.inf)
    return {"none": None, "bool": keep, "float": bias}


@pytest.mark.parametrize(
    "shape", [(2, 3, 7, 13, 4, 5), (1, 2, 97, 97, 8, 3), (1, 1, 1, 1, 1, 1), (2, 1, 5, 1025, 3, 2)]
)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_rust_matches_reference(shape, causal, mask_kind):
    b, h, length, s, e, ev = shape
    q, k, v = qkv(*shape)
    mask = masks(b, h, length, s)[mask_kind]
    gen = torch.Generator().manual_seed(3)
    out, stats, design = lsh_attention_design(q, k, v, mask, causal, settings=SMALL, generator=gen)
    ref, candidates = lsh_attention_ref(
        q, k, v, mask, causal, planes=design.planes, tail=design.tail, sinks=SMALL.sinks, window=SMALL.window
    )
    assert torch.equal(candidates, design.candidates)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    drawn = (design.tail >= 0).sum(-1)
    assert torch.equal(stats["keys_scored"], design.candidates.sum(-1) + drawn)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_full_budget_is_exact_attention(causal, mask_kind):
    q, k, v = qkv(2, 2, 9, 31, 8, 6, seed=1)
    mask = masks(2, 2, 9, 31)[mask_kind]
    out, stats = lsh_attention(q, k, v, mask, causal, budget=31, return_stats=True)
    want, _ = exact_attention(q, k, v, mask, is_causal=causal, need_weights=True)  # zeros for dead rows
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    assert torch.all(stats["rel_error"] == 0)


def test_causal_rows_never_touch_future_keys_and_prefix_consistency():
    q, k, v = qkv(1, 2, 40, 40, 4, 3, seed=2)
    settings = LshSettings(budget=4, bits=2, tables=3, sinks=2, window=3)
    out, _, design = lsh_attention_design(
        q, k, v, None, True, settings=settings, generator=torch.Generator().manual_seed(5)
    )
    future = torch.ones(40, 40, dtype=torch.bool).triu(1)
    assert not (design.candidates & future).any()
    rows = torch.arange(40).view(1, 1, 40, 1)
    assert ((design.tail < 0) | (design.tail <= rows)).all()
    for t in (1, 17, 33):
        prefix = lsh_attention(
            q[:, :, :t],
            k[:, :, :t],
            v[:, :, :t],
            is_causal=True,
            budget=4,
            bits=2,
            tables=3,
            sinks=2,
            window=3,
            generator=torch.Generator().manual_seed(5),
        )
        torch.testing.assert_close(prefix, out[:, :, :t], rtol=0, atol=0)


def test_bool_and_float_masks_agree_and_masked_keys_never_drawn():
    q, k, v = qkv(1, 2, 6, 50, 4, 4, seed=4)
    keep = torch.rand(1, 2, 6, 50, generator=torch.Generator().manual_seed(1)) > 0.5
    bias = torch.zeros(keep.shape).masked_fill(~keep, -torch.inf)
    a = lsh_attention(q, k, v, keep, budget=5, generator=torch.Generator().manual_seed(0))
    b = lsh_attention(q, k, v, bias, budget=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, _, design = lsh_attention_design(q, k, v, keep, settings=LshSettings(budget=5), generator=torch.Generator())
    assert not (design.candidates & ~keep).any()
    drawn = design.tail.clamp(min=0)
    assert (keep.gather(-1, drawn) | (design.tail < 0)).all()
    # A fully masked row gives zeros.
    none = torch.zeros(1, 1, 1, 50, dtype=torch.bool)
    assert torch.all(lsh_attention(q, k, v, none) == 0)


def test_same_generator_state_same_output_and_estimate_converges():
    q, k, v = qkv(1, 4, 8, 600, 8, 8, seed=6)
    a = lsh_attention(q, k, v, budget=16, generator=torch.Generator().manual_seed(1))
    b = lsh_attention(q, k, v, budget=16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    exact = F.scaled_dot_product_attention(q, k, v)
    errs = []
    for budget in (8, 512):
        gen = torch.Generator().manual_seed(2)
        out = lsh_attention(q, k, v, budget=budget, bits=12, tables=1, sinks=0, window=0, generator=gen)
        errs.append(float((out - exact).norm() / exact.norm()))
    assert errs[1] < errs[0] / 3


def test_bias_of_the_ratio_estimator_shrinks_with_budget():
    from qtransformers.bench.decode_bias import bias_rows

    small, large = bias_rows(512, 64, [4, 64], 4000, 0.5, 0)
    # At n = 4 the bias is clearly resolved; at n = 64 it is much smaller (it shrinks like 1/n).
    assert abs(small["bias"]) > 4 * small["bias_se"]
    assert abs(large["bias"]) + 2 * large["bias_se"] < abs(small["bias"]) / 3


def test_epsilon_mode_meets_its_bound():
    q, k, v = qkv(1, 2, 4, 2000, 16, 16, seed=7)
    gen = torch.Generator().manual_seed(3)
    out, stats = lsh_attention(q, k, v, budget=8, epsilon=0.05, return_stats=True, generator=gen)
    assert torch.all(stats["rel_error"] <= 0.05)
    fixed = lsh_attention(q, k, v, budget=8, return_stats=True, generator=torch.Generator().manual_seed(3))[1]
    assert stats["keys_scored"].sum() > fixed["keys_scored"].sum()


def test_stats_and_cost_accounting():
    q, k, v = qkv(1, 2, 10, 100, 8, 4, seed=8)
    _, stats = lsh_attention(q, k, v, budget=5, tables=4, bits=6, return_stats=True, generator=torch.Generator())
    assert set(stats) == {"keys_scored", "candidates", "hashes", "rel_error", "scored_fraction"}
    assert torch.all(stats["hashes"] == 4 + 4 * 100 / 10)
    assert torch.all(stats["keys_scored"] <= 100)
    cost = side_information_cost(
        10,
        100,
        8,
        4,
        backend="lsh",
        keys_scored=float(stats["keys_scored"][0, 0].sum()),
        hashes=float(stats["hashes"][0, 0].sum()),
        hash_bits=6,
    )
    assert cost["exact_macs"] == 10 * 100 * 12
    assert cost["side_information_macs"] == (4 * 10 + 4 * 100) * 6 * 8
    assert cost["fraction"] == pytest.approx((cost["side_information_macs"] + cost["estimator_macs"]) / 12000)
    with pytest.raises(InvalidArgumentError):
        side_information_cost(1, 1, 1, 1, backend="lsh")


def test_bad_input_raises_typed_errors():
    q, k, v = qkv(1, 2, 3, 5, 4, 4)
    with pytest.raises(DTypeError):
        lsh_attention(q.double(), k, v)
    with pytest.raises(ShapeError, match="do not fit"):
        lsh_attention(q, k[:, :1], v)
    with pytest.raises(ShapeError):
        lsh_attention(q[0], k, v)
    with pytest.raises(ShapeError, match="broadcast"):
        lsh_attention(q, k, v, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(InvalidArgumentError):
        lsh_attention(q, k, v, torch.full((3, 5), float("nan")))
    with pytest.raises(InvalidArgumentError, match="bits"):
        lsh_attention(q, k, v, bits=17)
    with pytest.raises(InvalidArgumentError, match="delta"):
        lsh_attention(q, k, v, delta=1.0)
    with pytest.raises(InvalidArgumentError, match="epsilon"):
        lsh_attention(q, k, v, epsilon=0.0)
    with pytest.raises(InvalidArgumentError, match="requires grad"):
        lsh_attention(q.requires_grad_(), k, v)
    with pytest.raises(QTransformersError):
        lsh_attention(q.detach(), k, v, budget=-1)
    with torch.no_grad():
        assert lsh_attention(q, k, v).shape == (1, 2, 3, 4)
