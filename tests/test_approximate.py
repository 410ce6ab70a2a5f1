"""Properties of the Performer, Nyström and Linformer baselines that need no public peer."""

from __future__ import annotations

import pytest
import torch

from qtransformers.exceptions import InvalidArgumentError, QTransformersError
from qtransformers.functional import linformer_attention, nystrom_attention, performer_attention
from qtransformers.functional.approximate import iterative_pinv
from qtransformers.functional.metrics import relative_errors


def _qkv(b=2, h=2, n=48, e=16, seed=0, tau=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, e, generator=g) for _ in range(3))
    return q * tau, k, v


def _perf(q, k, v, **kw):
    return performer_attention(q, k, v, num_features=32, generator=torch.Generator().manual_seed(3), **kw)


@pytest.mark.parametrize("eps", [0.0, 1e-4, 1e-1])
def test_performer_mask_paths_agree(eps):
    # The chunked causal path, the dense masked path and the unmasked path are one estimator.
    q, k, v = _qkv(n=70)  # 70: a partial last chunk
    causal = torch.ones(70, 70, dtype=torch.bool).tril()
    torch.testing.assert_close(_perf(q, k, v, is_causal=True, eps=eps), _perf(q, k, v, attn_mask=causal, eps=eps))
    everyone = torch.ones(2, 1, 1, 70, dtype=torch.bool)
    torch.testing.assert_close(_perf(q, k, v, eps=eps), _perf(q, k, v, attn_mask=everyone, eps=eps))
    zeros = torch.zeros(70, 70)  # a float mask of zeros is no mask
    torch.testing.assert_close(_perf(q, k, v, eps=eps), _perf(q, k, v, attn_mask=zeros, eps=eps))


@pytest.mark.parametrize("masked", [False, True])
def test_performer_causal_output_ignores_future_keys(masked):
    # eps makes the stabiliser matter; it must use only the keys a row sees.
    q, k, v = _qkv(n=64)
    k2, v2 = k.clone(), v.clone()
    k2[..., 40:, :] *= 6.0  # future keys with far larger projections change a global maximum
    v2[..., 40:, :] = 100.0
    kw = {"attn_mask": torch.ones(64, 64, dtype=torch.bool).tril()} if masked else {"is_causal": True}
    a, b = _perf(q, k, v, **kw), _perf(q, k2, v2, **kw)
    torch.testing.assert_close(a[..., :40, :], b[..., :40, :], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a[..., 40:, :], b[..., 40:, :])


def test_performer_eps_limits_are_query_independent_weights_and_finite():
    q, k, v = _qkv()
    # Large |k|·scale^½: key features fall far below eps, the weights become uniform.
    out = _perf(q, k * 40.0, v)
    torch.testing.assert_close(out, v.mean(-2, keepdim=True).expand_as(out), rtol=1e-4, atol=1e-5)
    prefix_means = v.cumsum(-2) / torch.arange(1, 49).view(48, 1)
    torch.testing.assert_close(_perf(q, k * 40.0, v, is_causal=True), prefix_means, rtol=1e-4, atol=1e-5)
    # Large |q|·scale^½: query features fall below eps, every query gets the same weights.
    out = _perf(q * 40.0, k, v)
    torch.testing.assert_close(out, out[..., :1, :].expand_as(out), rtol=1e-4, atol=1e-5)
    for big in (_perf(q * 40.0, k * 40.0, v), _perf(q * 40.0, k * 40.0, v, eps=0.0)):
        assert torch.isfinite(big).all()


def test_performer_seed_determinism_small_eps_and_errors():
    q, k, v = _qkv()
    torch.testing.assert_close(_perf(q, k, v), _perf(q, k, v))
    other = performer_attention(q, k, v, num_features=32, generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(_perf(q, k, v), other)
    # Small |q|·|k|: many features approach exact attention, and eps changes little.
    small = [t * 0.5 for t in (q, k, v)]
    exact = torch.nn.functional.scaled_dot_product_attention(*small)
    fine, plain = (
        performer_attention(*small, num_features=2048, eps=eps, generator=torch.Generator().manual_seed(1))
        for eps in (1e-4, 0.0)
    )
    assert float(relative_errors(fine, exact).mean()) < 0.1
    assert float(relative_errors(fine, plain).max()) < 1e-2  # eps moves it by under 1% here
    dead = torch.zeros(2, 1, 1, 48, dtype=torch.bool)
    assert (_perf(q, k, v, attn_mask=dead) == 0).all()
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(InvalidArgumentError) as info:
            _perf(q, k, v, eps=bad)
        assert isinstance(info.value, ValueError) and isinstance(info.value, QTransformersError)


def test_iterative_pinv_converges_to_the_pseudo_inverse():
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(3, 12, 12, generator=g, dtype=torch.float64) * 3, -1)
    torch.testing.assert_close(iterative_pinv(a, 40), torch.linalg.pinv(a), rtol=1e-6, atol=1e-8)
    few = iterative_pinv(a, 2)
    assert (few - torch.linalg.pinv(a)).norm() > 1e-3 * torch.linalg.pinv(a).norm()
    assert (iterative_pinv(torch.zeros(2, 5, 5), 6) == 0).all()


def test_nystrom_is_per_sequence_and_masks_whole_landmarks():
    q, k, v = _qkv(b=2, n=64)
    both = nystrom_attention(q * torch.tensor([1.0, 8.0]).view(2, 1, 1, 1), k, v, num_landmarks=8)
    alone = nystrom_attention(q[:1], k[:1], v[:1], num_landmarks=8)
    torch.testing.assert_close(both[:1], alone)  # a sequence's output does not depend on its batch
    keep = torch.ones(2, 1, 1, 64, dtype=torch.bool)
    keep[0, ..., 40:] = False
    keep[1] = False  # nothing to attend to
    v2 = v.clone()
    v2[..., 40:, :] = 1e4
    k2 = k.clone()
    k2[..., 40:, :] = 50.0
    a = nystrom_attention(q, k, v, keep, num_landmarks=8)
    b = nystrom_attention(q, k2, v2, keep, num_landmarks=8)
    torch.testing.assert_close(a, b)  # masked keys and values take no part, landmarks included
    assert (a[1] == 0).all() and torch.isfinite(a).all()
    with pytest.raises(InvalidArgumentError):
        nystrom_attention(q, k, v, num_landmarks=8, pinv_iterations=0)


def test_linformer_is_softmax_of_segment_mean_keys_times_segment_mean_values():
    q, k, v = _qkv(n=64)
    pool = torch.kron(torch.eye(8), torch.full((1, 8), 1 / 8))  # (8, 64): means of 8 segments of 8
    expected = torch.softmax(q @ (pool @ k).transpose(-2, -1) / 4, -1) @ (pool @ v)
    torch.testing.assert_close(linformer_attention(q, k, v, proj_dim=8), expected)
    keep = torch.ones(2, 1, 1, 64, dtype=torch.bool)
    keep[0, ..., :16] = False  # two whole segments
    keep[1] = False
    out = linformer_attention(q, k, v, keep, proj_dim=8)
    sub = torch.softmax(q[:1] @ (pool[2:, 16:] @ k[:1, :, 16:]).transpose(-2, -1) / 4, -1) @ (
        pool[2:, 16:] @ v[:1, :, 16:]
    )
    torch.testing.assert_close(out[:1], sub)
    assert (out[1] == 0).all()
