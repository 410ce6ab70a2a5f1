"""SampledKVCache: exact mode vs SDPA, the estimate vs the reference, causality, prefix consistency, errors, bench smoke."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from qtransformers.attention import SampledKVCache
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError
from qtransformers.functional import exact_attention, lsh_attention_ref


def kv(b, h, s, e, ev, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, s, e, generator=gen), torch.randn(b, h, s, ev, generator=gen)


def filled(k, v, chunks=(0.5,), **kw):
    cache = SampledKVCache(k.size(1), k.size(-1), value_dim=v.size(-1), **kw)
    cuts = [0, *(int(c * k.size(2)) for c in chunks), k.size(2)]
    for a, b in zip(cuts, cuts[1:]):
        cache.append(k[:, :, a:b], v[:, :, a:b])
    return cache


@pytest.mark.parametrize("lq", [1, 3])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_exact_mode_equals_sdpa(lq, mask_kind):
    k, v = kv(2, 3, 37, 8, 5)
    q = torch.randn(2, 3, lq, 8)
    cache = filled(k, v)
    mask = {
        "none": None,
        "bool": torch.rand(2, 1, lq, 37, generator=torch.Generator().manual_seed(1)) > 0.4,
        "float": torch.randn(1, 3, 1, 37),
    }[mask_kind]
    causal = torch.ones(lq, 37, dtype=torch.bool).tril(37 - lq)  # the newest lq rows, bottom-right aligned
    full = (
        causal
        if mask is None
        else (mask & causal if mask.dtype == torch.bool else mask.masked_fill(~causal, -torch.inf))
    )
    want, _ = exact_attention(q, k, v, full, need_weights=True)
    torch.testing.assert_close(cache.attend(q, mask, exact=True), want, rtol=1e-5, atol=1e-6)
    # A tail budget covering the whole remainder gives the exact answer too.
    big = filled(k, v, budget=37)
    torch.testing.assert_close(big.attend(q, mask), want, rtol=1e-5, atol=1e-6)


def test_estimate_matches_reference_from_its_design():
    k, v = kv(1, 2, 300, 8, 4, seed=1)
    q = torch.randn(1, 2, 1, 8)
    cache = filled(k, v, budget=7, bits=4, tables=3, sinks=2, window=5, seed=11)
    out, stats, design = cache._core.attend(q, None, 8**-0.5, False, keep_design=True)
    ref, candidates = lsh_attention_ref(q, k, v, planes=design.planes, tail=design.tail, sinks=2, window=5)
    assert torch.equal(candidates, design.candidates)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(out, cache.attend(q))  # same seed, same output
    assert int(stats["keys_scored"].max()) < 300


def test_rows_never_see_future_keys_and_prefix_consistency():
    k, v = kv(1, 2, 60, 4, 3, seed=2)
    q = torch.randn(1, 2, 8, 4)
    kw = dict(budget=3, bits=2, tables=2, sinks=1, window=2, seed=4)
    long = filled(k, v, chunks=(0.3, 0.7), **kw)
    _, _, design = long._core.attend(q, None, 0.5, False, keep_design=True)
    positions = torch.arange(52, 60).view(1, 1, 8, 1)
    assert not (design.candidates & (torch.arange(60) > positions)).any()
    assert ((design.tail < 0) | (design.tail <= positions)).all()
    out_long = long.attend(q)
    # A cache that stops at each row's position gives that row the same output.
    for t in (0, 3, 7):
        short = filled(k[:, :, : 53 + t], v[:, :, : 53 + t], chunks=(0.5,), **kw)
        torch.testing.assert_close(short.attend(q[:, :, t : t + 1]), out_long[:, :, t : t + 1], rtol=0, atol=0)


def test_decode_error_shrinks_with_budget_and_stats():
    k, v = kv(1, 4, 4000, 16, 16, seed=3)
    q = torch.randn(1, 4, 1, 16) * 2
    exact = F.scaled_dot_product_attention(q, k, v)
    errs = []
    for budget in (8, 1024):
        cache = filled(k, v, budget=budget, bits=10)
        errs.append(float((cache.attend(q) - exact).norm() / exact.norm()))
        stats = cache.stats
    assert errs[1] < errs[0] / 3
    assert {"keys_scored", "hashes", "rel_error", "scored_fraction", "cache_length"} <= set(stats)
    assert int(stats["cache_length"]) == 4000 and float(stats["scored_fraction"].max()) < 0.5


def test_len_reset_and_errors():
    k, v = kv(2, 2, 10, 4, 4)
    cache = SampledKVCache(2, 4)
    assert len(cache) == 0 and cache.length == 0
    cache.append(k, v)
    cache.append(k[:, :, :3], v[:, :, :3])
    assert len(cache) == 13
    with pytest.raises(ShapeError):
        cache.append(k[:1], v[:1])  # batch fixed by the first append
    with pytest.raises(ShapeError):
        cache.attend(torch.randn(2, 2, 14, 4))
    with pytest.raises(ShapeError):
        cache.attend(torch.randn(2, 3, 1, 4))
    with pytest.raises(DTypeError):
        cache.attend(torch.randn(2, 2, 1, 4, dtype=torch.float64))
    with pytest.raises(InvalidArgumentError):
        cache.append(k.clone().fill_(float("nan")), v)
    cache.reset()
    assert len(cache) == 0
    cache.append(k[:1], v[:1])
    assert cache.batch_size == 1
    with pytest.raises(InvalidArgumentError):
        SampledKVCache(2, 4, method="magic")
    with pytest.raises(InvalidArgumentError):
        SampledKVCache(2, 4, bits=0)
    with pytest.raises(InvalidArgumentError):
        SampledKVCache(0, 4)


def test_bench_decode_quick_smoke(tmp_path):
    from qtransformers.bench import decode

    parser = argparse.ArgumentParser()
    decode.add_arguments(parser)
    args = parser.parse_args(
        ["--quick", "--kinds", "clustered,needle", "--sizes", "512", "--repeats", "1", "--queries", "2"]
        + ["--heads", "2", "--out", str(tmp_path), "--no-progress"]
    )
    rows = decode.run(args)
    assert [r["kind"] for r in rows] == ["clustered", "needle"]
    for name in ("results.csv", "results.md", "time.png", "error.png"):
        assert (tmp_path / name).is_file()
    for r in rows:
        assert 0 <= r["rel_error"] < 1 and 0 < r["scored_frac"] <= 1 and r["mac_frac"] > 0
    with pytest.raises(InvalidArgumentError):
        decode.run(parser.parse_args(["--kinds", "trained", "--out", str(tmp_path)]))  # needs --data
