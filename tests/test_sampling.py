"""The Rust row sampler against its PyTorch reference: law, strata, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, QTransformersError, ShapeError
from qtransformers.functional import sample_rows, sample_rows_ref

METHODS = ["multinomial", "stratified", "systematic"]


def frequencies(idx: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bincount(idx.flatten(), minlength=n).double() / idx.numel()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fn", [sample_rows, sample_rows_ref], ids=["rust", "torch"])
def test_marginal_law_within_five_standard_errors(method, fn):
    p = torch.tensor([0.05, 0.0, 0.25, 0.1, 0.6], dtype=torch.float64)
    rows, shots = 4000, 8
    idx = fn(p.repeat(rows, 1), shots, method, generator=torch.Generator().manual_seed(3))
    freq = frequencies(idx, 5)
    # Each of the rows * shots draws has marginal law p; strata only lower the variance.
    se = torch.sqrt(p * (1 - p) / (rows * shots)).clamp_min(1e-12)
    assert torch.all((freq - p).abs() <= 5 * se + 1e-12), (freq, p)
    assert freq[1] == 0.0


@pytest.mark.parametrize("fn", [sample_rows, sample_rows_ref], ids=["rust", "torch"])
def test_systematic_counts_are_within_one_of_expectation(fn):
    torch.manual_seed(0)
    w = torch.rand(64, 37, dtype=torch.float32)
    shots = 16
    idx = fn(w, shots, "systematic", generator=torch.Generator().manual_seed(1))
    counts = torch.zeros(64, 37).scatter_add_(1, idx, torch.ones(64, shots))
    expected = w / w.sum(dim=1, keepdim=True) * shots
    assert torch.all((counts - expected).abs() < 1.0 + 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_rust_sampler_is_deterministic_per_generator(method):
    w = torch.rand(10, 50)
    a = sample_rows(w, 7, method, generator=torch.Generator().manual_seed(42))
    b = sample_rows(w, 7, method, generator=torch.Generator().manual_seed(42))
    c = sample_rows(w, 7, method, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.int64 and a.shape == (10, 7)


def test_zero_rows_give_minus_one():
    w = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    for fn in (sample_rows, sample_rows_ref):
        idx = fn(w, 4, "stratified", generator=torch.Generator().manual_seed(0))
        assert torch.all(idx[0] == -1) and torch.all(idx[1] >= 0)


def test_rust_sampler_variance_of_strata_is_lower():
    """Stratification lowers the variance of a count estimate compared with i.i.d. draws."""
    w = torch.tensor([0.3, 0.7]).repeat(2000, 1)
    spread = {}
    for method in ("multinomial", "stratified"):
        idx = sample_rows(w, 10, method, generator=torch.Generator().manual_seed(0))
        spread[method] = (idx == 1).double().mean(dim=1).var().item()
    # Multinomial: 0.21 / 10 = 0.021; stratified: at most 0.3 * 0.7 / 10 and here ~0.016 - 0.0
    assert spread["stratified"] < 0.6 * spread["multinomial"]


@pytest.mark.parametrize(
    "weights,error",
    [
        (torch.tensor([[1.0, -0.5]]), InvalidArgumentError),
        (torch.tensor([[1.0, float("nan")]]), InvalidArgumentError),
        (torch.tensor([[1.0, float("inf")]]), InvalidArgumentError),
        (torch.ones(3), ShapeError),
        (torch.ones(2, 0), ShapeError),
        (torch.ones(2, 3, dtype=torch.int64), DTypeError),
    ],
)
def test_bad_weights_raise(weights, error):
    for fn in (sample_rows, sample_rows_ref):
        with pytest.raises(error):
            fn(weights, 4, "multinomial")


def test_bad_method_and_shots():
    with pytest.raises(InvalidArgumentError, match="method"):
        sample_rows(torch.ones(2, 3), 4, "bogus")
    with pytest.raises(InvalidArgumentError, match="shots"):
        sample_rows(torch.ones(2, 3), -1, "stratified")


def test_extension_raises_typed_errors_not_panics():
    with pytest.raises(InvalidArgumentError) as info:
        _core.sample_rows(np.array([[1.0, -1.0]]), 2, "multinomial", 0)
    assert isinstance(info.value, QTransformersError) and "row 0, column 1" in str(info.value)
    with pytest.raises(InvalidArgumentError):
        _core.sample_rows(np.ones((2, 2)), 2, "nope", 0)
    with pytest.raises(TypeError):
        _core.sample_rows(np.ones((2, 2), dtype=np.int32), 2, "multinomial", 0)
    with pytest.raises(TypeError, match="contiguous"):
        _core.sample_rows(np.ones((4, 4))[:, ::2], 2, "multinomial", 0)
    with pytest.raises(ShapeError):
        _core.sample_rows(np.ones((2, 0)), 2, "multinomial", 0)


def test_version_is_exposed():
    import qtransformers

    assert qtransformers.__version__ == _core.__version__ and qtransformers.__version__.count(".") == 2


def test_relative_errors_per_head_and_mean():
    from qtransformers.functional import relative_error, relative_errors

    exact = torch.ones(2, 3, 4, 5)
    approx = exact.clone()
    approx[0, 1] *= 1.5  # that head is off by 50 %
    errs = relative_errors(approx, exact)
    assert errs.shape == (2, 3) and errs[0, 1].item() == pytest.approx(0.5)
    assert errs.sum().item() == pytest.approx(0.5)
    assert relative_error(approx, exact) == pytest.approx(0.5 / 6)


@pytest.mark.parametrize("method", METHODS)
def test_stream_keys_make_a_row_independent_of_the_rows_drawn_with_it(method):
    from qtransformers.functional import draw_rows

    g = torch.Generator().manual_seed(0)
    w = torch.rand(9, 11, generator=g, dtype=torch.float64)
    shots = torch.tensor([3, 5, 1, 4, 4, 2, 5, 3, 4])
    keys = torch.arange(9) * 7 + 100
    order = torch.stack([torch.randperm(11, generator=g) for _ in range(3)])
    for sampler in ("rust", "torch"):
        full = draw_rows(
            w,
            shots,
            method,
            generator=torch.Generator().manual_seed(5),
            order=order,
            rows_per_order=3,
            sampler=sampler,
            streams=keys,
        )
        # Rows 3..5 (order group 1) drawn alone, with fewer shots around them, give the same indices.
        part = draw_rows(
            w[3:6],
            shots[3:6],
            method,
            generator=torch.Generator().manual_seed(5),
            order=order[1:2],
            rows_per_order=3,
            sampler=sampler,
            streams=keys[3:6],
        )
        assert torch.equal(full[3:6, : part.size(1)], part)
        assert (full[3:6, part.size(1) :] == -1).all()
    rust, torch_ = (
        draw_rows(w, shots, method, generator=torch.Generator().manual_seed(5), sampler=s, streams=keys)
        for s in ("rust", "torch")
    )
    assert torch.equal(rust, torch_), "both samplers read the same uniforms, so they draw the same shots"
    with pytest.raises(ShapeError):
        draw_rows(w, shots, method, streams=keys[:3], sampler="torch")
