"""ΨQRH operator: Hermitian unit-modulus filter, Parseval/energy, identity, causality, autograd, dtypes."""

from __future__ import annotations

import pytest
import torch

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional import energy_ratio, qrh_ref
from qtransformers.functional.qrh import causal_kernel, filter_spectrum, full_filter
from qtransformers.kernels import qrh

SIZES = (97, 111, 1025)


def unit_quaternions(d: int, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(d, 4, generator=g, dtype=torch.float64), dim=-1).to(dtype)


def make(b: int, t: int, d: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, 4, generator=g, dtype=torch.float64).to(dtype)
    alpha = (torch.rand(d, generator=g, dtype=torch.float64) * 4 - 2).to(dtype)
    return x, alpha, unit_quaternions(d, g, dtype), unit_quaternions(d, g, dtype)


def hamilton(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Independent Hamilton product p ⊗ q over the last axis."""
    a1, b1, c1, d1 = p.unbind(-1)
    a2, b2, c2, d2 = q.unbind(-1)
    return torch.stack(
        (
            a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
            a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
            a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
            a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2,
        ),
        dim=-1,
    )


@pytest.mark.parametrize("n", (16, 97, 111, 1025))
def test_filter_is_hermitian_with_unit_modulus(n):
    alpha = torch.linspace(-3, 3, 5, dtype=torch.float64)
    f = full_filter(alpha, n)
    assert torch.allclose(f.abs(), torch.ones_like(f.real), atol=1e-12)
    neg = torch.cat([f[:, :1], f[:, 1:].flip(-1)], dim=1)  # F(-k) at position k
    assert torch.allclose(neg, f.conj(), atol=1e-12)
    assert torch.all(f[:, 0] == 1)
    if n % 2 == 0:
        assert torch.allclose(f[:, n // 2], torch.ones(5, dtype=f.dtype))
    # the rfft half used by the operator is the non-negative part of the full filter
    assert torch.allclose(filter_spectrum(alpha, n), f[:, : n // 2 + 1], atol=1e-12)
    assert f[:, 2:].imag.abs().max() > 0.1  # the filter is not the identity


@pytest.mark.parametrize("t", SIZES + (128,))
def test_energy_is_conserved_without_rescaling(t):
    x, alpha, ql, qr = make(2, t, 6, seed=t)
    y = qrh(x, alpha, ql, qr)
    assert abs(energy_ratio(x, y) - 1) < 1e-5
    assert (y - x).norm() / x.norm() > 0.3  # it does mix
    assert y.dtype == x.dtype and y.shape == x.shape


def test_parseval_holds_for_input_and_output():
    x, alpha, ql, qr = make(1, 111, 3, seed=1, dtype=torch.float64)
    y = qrh(x, alpha, ql, qr)
    for sig in (x, y):
        spec = torch.fft.rfft(sig, dim=1).abs().square()
        weights = torch.full((spec.size(1),), 2.0, dtype=torch.float64)
        weights[0] = 1.0  # odd length: no Nyquist bin
        freq_energy = (spec * weights[None, :, None, None]).sum() / sig.size(1)
        assert torch.allclose(freq_energy, sig.square().sum(), rtol=1e-12)


@pytest.mark.parametrize("causal", (False, True))
def test_identity_at_alpha_zero_with_identity_rotations(causal):
    x, _, _, _ = make(2, 97, 5)
    ident = torch.tensor([1.0, 0, 0, 0]).repeat(5, 1)
    y = qrh(x, torch.zeros(5), ident, ident, causal=causal)
    assert torch.allclose(y, x, atol=1e-6)


def test_alpha_zero_leaves_exactly_the_quaternion_rotation():
    x, _, ql, qr = make(2, 33, 5, dtype=torch.float64)
    y = qrh(x, torch.zeros(5, dtype=torch.float64), ql, qr)
    want = hamilton(hamilton(ql.expand_as(x), x), qr.expand_as(x))
    assert torch.allclose(y, want, atol=1e-12)


def test_causal_has_no_future_leakage_and_reports_energy():
    x, alpha, ql, qr = make(1, 97, 4, dtype=torch.float64)
    t0 = 40
    x2 = x.clone()
    x2[:, t0] += 1.0
    y, y2 = qrh(x, alpha, ql, qr, causal=True), qrh(x2, alpha, ql, qr, causal=True)
    assert (y[:, :t0] - y2[:, :t0]).abs().max() < 1e-6
    assert (y[:, t0:] - y2[:, t0:]).abs().max() > 1e-3
    # the non-causal operator does leak (so the check above can fail)
    n, n2 = qrh(x, alpha, ql, qr), qrh(x2, alpha, ql, qr)
    assert (n[:, :t0] - n2[:, :t0]).abs().max() > 1e-3
    ratio = energy_ratio(x, y)
    assert 0 < ratio < float("inf") and abs(ratio - 1) > 1e-6  # reported, not forced to 1


def kernel_by_full_dft(alpha: torch.Tensor, max_len: int) -> torch.Tensor:
    """Independent causal kernel: lags 0..max_len-1 of the complex inverse DFT of F on all 2 · max_len bins."""
    h = torch.fft.ifft(full_filter(alpha, 2 * max_len))
    assert h.imag.abs().max() < 1e-12  # Hermitian filter: real response
    return h.real[:, :max_len]


def direct_causal(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """y[:, t, d] = sum_{j <= t} kernel[d, j] x[:, t - j, d] for x (B, T, D, 4), by an explicit loop over lags."""
    y = torch.zeros_like(x)
    for j in range(x.size(1)):
        y[:, j:] += kernel[None, :, j, None] * x[:, : x.size(1) - j]
    return y


@pytest.mark.parametrize("max_len", (1, 2, 48, 97))
def test_causal_kernel_is_the_causal_half_of_the_response_on_the_fixed_grid(max_len):
    alpha = torch.linspace(-3, 3, 5, dtype=torch.float64)
    h = causal_kernel(alpha, max_len)
    assert h.shape == (5, max_len)
    assert torch.allclose(h, kernel_by_full_dft(alpha, max_len), atol=1e-12)
    full = torch.fft.irfft(filter_spectrum(alpha, 2 * max_len), n=2 * max_len)
    assert torch.allclose(full.square().sum(-1), torch.ones(5, dtype=torch.float64))  # |F| = 1: unit energy
    kept = h.square().sum(-1)  # the causal half keeps part of it, never more
    assert torch.all(kept <= 1 + 1e-12) and torch.all(kept > 0)
    if max_len > 2:  # (on 2 · max_len <= 4 bins every phase is 0: ln 1 at k = 1, the Nyquist bin 1)
        assert kept[0] < 0.99  # nonzero α: the dropped anti-causal half carries energy


@pytest.mark.parametrize("t", (1, 2, 7, 48, 97))
def test_weight_of_each_lag_does_not_depend_on_the_length(t):
    """An impulse at position 0 returns the kernel's first t lags, the same values for every length t."""
    alpha = torch.linspace(-2, 2, 3, dtype=torch.float64)
    ident = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).repeat(3, 1)
    x = torch.zeros(1, t, 3, 4, dtype=torch.float64)
    x[:, 0] = 1.0
    want = kernel_by_full_dft(alpha, 97)[:, :t].t()[None, :, :, None].expand_as(x)
    for fn in (qrh, qrh_ref):
        assert torch.allclose(fn(x, alpha, ident, ident, causal=True, max_len=97), want, atol=1e-12)


@pytest.mark.parametrize("t", (1, 2, 48, 97))
def test_causal_is_the_direct_lag_sum_with_the_kernel(t):
    """No rescaling, no length dependence: the causal operator is exactly sum_j h[j] x[t - j], then R."""
    x, alpha, ql, qr = make(2, t, 3, seed=t, dtype=torch.float64)
    ident = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).repeat(3, 1)
    want = direct_causal(x, kernel_by_full_dft(alpha, 97))
    assert torch.allclose(qrh(x, alpha, ident, ident, causal=True, max_len=97), want, atol=1e-12)
    rotated = hamilton(hamilton(ql.expand_as(want), want), qr.expand_as(want))
    assert torch.allclose(qrh(x, alpha, ql, qr, causal=True, max_len=97), rotated, atol=1e-12)


def test_cut_input_gives_the_same_past_outputs():
    x, alpha, ql, qr = make(2, 97, 4, seed=9, dtype=torch.float64)
    for fn in (qrh, qrh_ref):
        full = fn(x, alpha, ql, qr, causal=True, max_len=97)
        for t in (1, 7, 30, 96):
            assert (fn(x[:, :t], alpha, ql, qr, causal=True, max_len=97) - full[:, :t]).abs().max() < 1e-12


def test_causal_length_beyond_max_len_and_bad_max_len_raise():
    x, alpha, ql, qr = make(1, 9, 2)
    for fn in (qrh, qrh_ref):
        with pytest.raises(ShapeError, match="max_len 8"):
            fn(x, alpha, ql, qr, causal=True, max_len=8)
        assert fn(x, alpha, ql, qr, causal=False, max_len=8).shape == x.shape  # non-causal: no length bound
        for bad in (0, -1, 2.5, True):
            with pytest.raises(InvalidArgumentError, match="max_len"):
                fn(x, alpha, ql, qr, causal=True, max_len=bad)
    with pytest.raises(ValueError):  # the builtin is matched too
        qrh(x, alpha, ql, qr, causal=True, max_len=8)


@pytest.mark.parametrize("causal", (False, True))
def test_gradcheck_reference_and_fast_path(causal):
    x, alpha, ql, qr = make(1, 11, 2, seed=3, dtype=torch.float64)
    args = [t.clone().requires_grad_(True) for t in (x, alpha, ql, qr)]
    assert torch.autograd.gradcheck(lambda *a: qrh_ref(*a, causal=causal), args)
    assert torch.autograd.gradcheck(lambda *a: qrh(*a, causal=causal), args)


@pytest.mark.parametrize("causal", (False, True))
@pytest.mark.parametrize("t", SIZES)
def test_fast_path_matches_reference_float32(t, causal):
    x, alpha, ql, qr = make(2, t, 4, seed=t)
    args = [a.clone().requires_grad_(True) for a in (x, alpha, ql, qr)]
    ref_args = [a.detach().double().requires_grad_(True) for a in args]
    y, y_ref = qrh(*args, causal=causal), qrh_ref(*ref_args, causal=causal)
    g = torch.randn_like(y_ref)
    assert (y.double() - y_ref).abs().max() < 1e-4 * y_ref.abs().max()
    grads = torch.autograd.grad((y * g.float()).sum(), args)
    grads_ref = torch.autograd.grad((y_ref * g).sum(), ref_args)
    for a, b in zip(grads, grads_ref):
        assert (a.double() - b).abs().max() < 1e-3 * b.abs().max() + 1e-5


@pytest.mark.parametrize("causal", (False, True))
def test_bfloat16_error_within_twice_the_rounding_baseline(causal):
    x, alpha, ql, qr = make(2, 111, 4, seed=5)
    xb = x.bfloat16()
    ref = qrh_ref(xb.double(), alpha.double(), ql.double(), qr.double(), causal=causal)
    baseline = (ref.bfloat16().double() - ref).abs().max()
    y = qrh(xb, alpha, ql, qr, causal=causal)
    assert y.dtype == torch.bfloat16
    assert (y.double() - ref).abs().max() <= 2 * baseline + 1e-3


def test_bad_shapes_raise_shape_error():
    x, alpha, ql, qr = make(1, 8, 3)
    with pytest.raises(ShapeError, match="alpha"):
        qrh(x, alpha[:2], ql, qr)
    with pytest.raises(ShapeError, match="q_left"):
        qrh(x, alpha, ql[:, :3], qr)
    with pytest.raises(ShapeError, match=r"\(B, T, D, 4\)"):
        qrh(x[..., :3], alpha, ql, qr)
