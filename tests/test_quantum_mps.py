"""MPS / TT-SVD: exact round trips, the truncation-error bound, Rust vs numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.quantum import MPS, tt_svd_ref


def dense_from_cores(cores) -> np.ndarray:
    """Plain numpy contraction of cores (independent of the Rust to_dense)."""
    acc = np.ones((1, 1))
    for c in cores:
        acc = (acc @ c.reshape(c.shape[0], -1)).reshape(-1, c.shape[2])
    return acc.reshape(-1)


@pytest.mark.parametrize(
    "shape,dims,complex_",
    [
        ((256,), None, False),
        ((3, 4, 5, 2), None, False),
        ((64,), None, True),
        ((24,), [2, 3, 4], False),
        ((6, 10), [3, 2, 5, 2], True),
    ],
)
def test_exact_round_trip_without_truncation(shape, dims, complex_):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape) + (1j * rng.normal(size=shape) if complex_ else 0)
    mps = MPS.from_dense(a, dims=dims)
    out = mps.to_dense()
    assert out.shape == a.shape and out.dtype == (np.complex128 if complex_ else np.float64)
    assert np.abs(out - a).max() < 1e-12
    assert mps.truncation_error == 0.0
    assert np.abs(dense_from_cores(mps.cores) - a.reshape(-1)).max() < 1e-12
    assert mps.dims == tuple(dims or (shape if len(shape) > 1 else [2] * int(math.log2(shape[0]))))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(2, 4), min_size=2, max_size=6),
    st.one_of(st.none(), st.integers(1, 6)),
    st.sampled_from([0.0, 0.05, 0.3]),
    st.integers(0, 2**31 - 1),
)
def test_error_never_exceeds_truncation_error(dims, max_bond, cutoff, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=dims)
    mps = MPS.from_dense(a, max_bond=max_bond, cutoff=cutoff)
    err = np.linalg.norm(mps.to_dense() - a)
    assert err <= mps.truncation_error * (1 + 1e-9) + 1e-12
    if max_bond is not None:
        assert max(mps.bond_dims) <= max_bond
    small = mps.compress(max_bond=2)
    err2 = np.linalg.norm(small.to_dense() - a)
    assert max(small.bond_dims) <= 2
    assert err2 <= small.truncation_error * (1 + 1e-9) + 1e-12
    assert small.truncation_error >= mps.truncation_error


@pytest.mark.parametrize("chi", [1, 3, 7])
def test_error_equals_truncation_error_for_one_cut(chi):
    rng = np.random.default_rng(chi)
    a = rng.normal(size=(20, 16))
    mps = MPS.from_dense(a, max_bond=chi)
    err = np.linalg.norm(mps.to_dense() - a)
    s = np.linalg.svd(a, compute_uv=False)
    optimal = math.sqrt(float(np.sum(s[chi:] ** 2)))  # Eckart-Young
    assert mps.bond_dims == (chi,)
    assert err == pytest.approx(mps.truncation_error, rel=1e-10)
    assert err == pytest.approx(optimal, rel=1e-10)


def test_rust_matches_numpy_reference():
    rng = np.random.default_rng(3)
    for a, dims in [
        (rng.normal(size=1024), [2] * 10),
        (rng.normal(size=(8, 6, 5)) + 1j * rng.normal(size=(8, 6, 5)), [8, 6, 5]),
    ]:
        for max_bond, cutoff in [(None, 0.0), (4, 0.0), (None, 0.2)]:
            mps = MPS.from_dense(a, max_bond=max_bond, cutoff=cutoff, dims=dims)
            cores, err = tt_svd_ref(a, dims, max_bond, cutoff)
            assert mps.bond_dims == tuple(c.shape[2] for c in cores[:-1])
            assert mps.truncation_error == pytest.approx(err, rel=1e-9, abs=1e-12)
            assert np.abs(mps.to_dense().reshape(-1) - dense_from_cores(cores)).max() < 1e-10


def test_inner_norm_and_compression_ratio():
    rng = np.random.default_rng(4)
    a = rng.normal(size=256) + 1j * rng.normal(size=256)
    b = rng.normal(size=256)
    ma, mb = MPS.from_dense(a), MPS.from_dense(b)
    assert ma.inner(mb) == pytest.approx(np.vdot(a, b), rel=1e-12)
    assert mb.inner(ma) == pytest.approx(np.vdot(b, a), rel=1e-12)
    assert ma.norm() == pytest.approx(np.linalg.norm(a), rel=1e-12)
    # A product state: 12 cores of (1, 2, 1) float64 = 192 bytes for a 4096 * 8-byte vector.
    product = np.ones(1)
    for _ in range(12):
        product = np.kron(product, rng.normal(size=2))
    mp = MPS.from_dense(product, cutoff=1e-12)
    assert mp.bond_dims == (1,) * 11
    assert mp.nbytes == 12 * 2 * 8 == sum(c.nbytes for c in mp.cores)
    assert mp.compression_ratio == 4096 * 8 / 192
    # A generic state needs more bytes than the dense vector: the ratio says so.
    full = MPS.from_dense(rng.normal(size=4096))
    assert full.compression_ratio < 1
    assert torch.allclose(
        torch.from_numpy(MPS.from_dense(torch.arange(8.0)).to_dense()), torch.arange(8.0, dtype=torch.float64)
    )


def test_compress_without_truncation_keeps_the_array_and_bounds_add():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 4, 4, 4))
    exact = MPS.from_dense(a)
    same = exact.compress()
    assert np.abs(same.to_dense() - a).max() < 1e-12
    first = MPS.from_dense(a, max_bond=6)
    second = first.compress(max_bond=2)
    step = second.truncation_error - first.truncation_error
    assert np.linalg.norm(second.to_dense() - first.to_dense()) == pytest.approx(step, rel=1e-9)
    assert np.linalg.norm(second.to_dense() - a) <= second.truncation_error * (1 + 1e-12)


def test_invalid_input():
    with pytest.raises(ShapeError, match="pass dims"):
        MPS.from_dense(np.ones(6))
    with pytest.raises(ShapeError, match="do not multiply"):
        MPS.from_dense(np.ones(8), dims=[2, 3])
    with pytest.raises(InvalidArgumentError, match="max_bond"):
        MPS.from_dense(np.ones(8), max_bond=0)
    with pytest.raises(InvalidArgumentError, match="cutoff"):
        MPS.from_dense(np.ones(8), cutoff=-1.0)
    with pytest.raises(InvalidArgumentError, match="finite"):
        MPS.from_dense(np.array([1.0, np.nan, 0.0, 1.0]))
    with pytest.raises(ShapeError, match="site dimensions"):
        MPS.from_dense(np.ones(8)).inner(MPS.from_dense(np.ones((2, 4))))
