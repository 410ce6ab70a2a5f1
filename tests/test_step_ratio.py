"""``qtransformers bench step-ratio``: the median interval, the interleaving, the ratios and the command."""

from __future__ import annotations

import csv
import math
import time

import numpy as np
import pytest
import torch

from qtransformers.bench.step_ratio import dependent_rounds, lag1_autocorrelation, ratio_rows, speed_verdict
from qtransformers.bench.timing import MIN_ROUNDS, interleaved_times, median_interval
from qtransformers.cli import main
from qtransformers.exceptions import InvalidArgumentError


def test_median_interval_order_statistics():
    # n = 10: k = 2 covers 1 - 2 * (1 + 10) / 1024 = 0.9785; k = 3 only 0.891
    median, low, high, coverage = median_interval([float(v) for v in range(10, 0, -1)], 0.95)
    assert (median, low, high) == (5.5, 2.0, 9.0)
    assert coverage == pytest.approx(1 - 22 / 1024)
    # fewest values for 95 %: 6 (1 - 2/64); 5 values reach only 1 - 2/32
    assert median_interval([1.0] * MIN_ROUNDS)[3] == pytest.approx(1 - 2 / 64)
    with pytest.raises(InvalidArgumentError, match="5 values cannot give a 0.95 interval") as info:
        median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert isinstance(info.value, ValueError)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(InvalidArgumentError, match="confidence must be in"):
            median_interval([1.0] * 10, bad)


@pytest.mark.parametrize(
    "draw, true_median",
    [
        (lambda rng, n: rng.lognormal(0.0, 1.5, n), 1.0),  # heavy right tail
        (lambda rng, n: 2.0 - rng.exponential(1.0, n), 2.0 - math.log(2.0)),  # heavy left tail
        (lambda rng, n: np.where(rng.random(n) < 0.5, rng.normal(1, 0.01, n), rng.normal(3, 0.01, n)), 2.0),  # bimodal
    ],
    ids=["lognormal", "reflected-exponential", "bimodal"],
)
@pytest.mark.parametrize("n", [7, 15, 40])
def test_median_interval_coverage(draw, true_median, n):
    """Over many independent draws the interval holds the true median at its stated coverage (within 4 SE)."""
    rng = np.random.default_rng(n)
    trials = 4000
    hits, coverage = 0, None
    for _ in range(trials):
        _, low, high, coverage = median_interval(list(draw(rng, n)), 0.95)
        hits += low <= true_median <= high
    se = math.sqrt(coverage * (1 - coverage) / trials)
    assert coverage >= 0.95
    assert abs(hits / trials - coverage) < 4 * se, (hits / trials, coverage)


def test_median_interval_ties_stay_conservative():
    """With many ties (a discrete distribution) the interval is closed, so it covers at least as often."""
    rng = np.random.default_rng(0)
    hits, coverage = 0, None
    for _ in range(2000):
        _, low, high, coverage = median_interval(list(rng.choice([1.0, 2.0, 3.0], 9, p=[0.3, 0.4, 0.3])))
        hits += low <= 2.0 <= high
    assert hits / 2000 >= coverage


def test_speed_verdict():
    assert speed_verdict(2.0, 2.5) == "reached"
    assert speed_verdict(1.5, 1.99) == "not reached"
    assert speed_verdict(1.9, 2.1) == "undecided"


def test_interleaved_times_rotates_and_counts_cpu_time():
    calls = []

    def busy():
        calls.append("busy")
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass

    def sleeper():
        calls.append("sleeper")
        time.sleep(0.05)

    def third():
        calls.append("third")

    times = interleaved_times({"busy": busy, "sleeper": sleeper, "third": third}, 6, torch.device("cpu"))
    assert calls[:3] == ["busy", "sleeper", "third"]  # warm-up round, untimed
    rounds = [calls[3 + 3 * r : 6 + 3 * r] for r in range(6)]
    assert rounds[0] == ["busy", "sleeper", "third"]
    assert rounds[1] == ["sleeper", "third", "busy"]
    assert rounds[2] == ["third", "busy", "sleeper"]
    assert all(len(t) == 6 for t in times.values())
    assert min(times["busy"]) >= 19.0  # CPU time of a busy step
    assert max(times["sleeper"]) < 25.0  # a sleeping step costs (almost) no CPU time


def _info(mixer, position="learned"):
    return {"mixer": mixer, "position": position, "dim": 8, "mlp_hidden": 32, "params": 100, "params_vs_baseline": 1.0}


def test_ratio_rows_pair_rounds_with_the_same_position_baseline():
    info = {
        "transformer-sdpa": _info("attention"),
        "transformer-sdpa-rope": _info("attention", "rope"),
        "qrh,qrh,qrh,attention": _info("qrh,qrh,qrh,attention"),
        "qrh,qrh,qrh,attention-rope": _info("qrh,qrh,qrh,attention", "rope"),
        "qrh": _info("qrh"),
        "attention,qrh": _info("attention,qrh"),
    }
    base = [10.0, 12.0, 9.0, 11.0, 10.0, 30.0]  # one slow round hits every model alike
    times = {
        "transformer-sdpa": base,
        "transformer-sdpa-rope": [2 * b for b in base],
        "qrh,qrh,qrh,attention": [b / 2 for b in base],
        "qrh,qrh,qrh,attention-rope": [b / 1.5 for b in base],
        "qrh": [b / 3 for b in base],
        "attention,qrh": [b / 2.5 for b in base],
    }
    rows = {r["variant"]: r for r in ratio_rows(info, times, layers=4)}
    assert "ratio" not in rows["transformer-sdpa"] and rows["transformer-sdpa"]["median_ms"] == 10.5
    hybrid = rows["qrh,qrh,qrh,attention"]
    assert hybrid["ratio"] == pytest.approx(2.0) and hybrid["ratio_low"] == pytest.approx(2.0)
    assert hybrid["goal"] == "reached"
    rope = rows["qrh,qrh,qrh,attention-rope"]  # against the RoPE baseline: 2 * 1.5
    assert rope["ratio"] == pytest.approx(3.0) and rope["goal"] == "reached"
    assert rows["qrh"]["ratio"] == pytest.approx(3.0) and "goal" not in rows["qrh"]  # one mixer: not a hybrid
    assert "goal" not in rows["attention,qrh"]  # half the layers attention: not one of the hybrids


def test_lag1_autocorrelation_sees_drift_and_not_independent_rounds():
    assert lag1_autocorrelation([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]) == pytest.approx(-5 / 6)
    assert lag1_autocorrelation([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) > 0.5  # a drift
    assert math.isnan(lag1_autocorrelation([2.0, 2.0, 2.0])) and math.isnan(lag1_autocorrelation([1.0, 2.0]))
    rng = np.random.default_rng(0)
    draws = [lag1_autocorrelation(list(rng.standard_normal(30))) for _ in range(2000)]
    flagged = np.mean([d > 2 / math.sqrt(30) for d in draws])
    assert flagged < 0.05, f"independent rounds flagged {flagged:.3f} of the time"  # about 2-3 % expected
    walks = [lag1_autocorrelation(list(np.cumsum(rng.standard_normal(30)))) for _ in range(200)]
    assert np.mean([w > 2 / math.sqrt(30) for w in walks]) > 0.9  # a random walk is dependent


def test_dependent_rounds_are_named():
    info = {"transformer-sdpa": _info("attention"), "a": _info("qrh"), "b": _info("hyena")}
    base = [10.0] * 12
    times = {
        "transformer-sdpa": base,
        "a": [10.0 / (1.0 + 0.1 * r) for r in range(12)],  # the ratio drifts up round after round
        "b": [10.0 / (1.5 + 0.1 * (r % 2)) for r in range(12)],  # it alternates: no positive dependence
    }
    rows = ratio_rows(info, times, layers=4)
    assert "lag1" not in rows[0]
    assert rows[1]["lag1"] > 0.5 and rows[2]["lag1"] < 0
    assert dependent_rounds(rows) == ["a"]


def test_cli_small_run(tmp_path, capsys):
    out = tmp_path / "ratio"
    argv = ["bench", "step-ratio", "--preset", "nanogpt-cpu", "--seq-len", "16", "--batch-size", "2"]
    argv += ["--hybrids", "qrh,qrh,qrh,attention", "--rope", "--rounds", "6", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["variant"] for r in rows] == [
        "transformer-sdpa",
        "transformer-sdpa-rope",
        "qrh,qrh,qrh,attention",
        "qrh,qrh,qrh,attention-rope",
    ]
    for r in rows:
        assert abs(float(r["params_vs_baseline"]) - (1.0 if r["position"] == "learned" else 0.98)) < 0.02
    hybrid = rows[2]
    assert float(hybrid["ratio_low"]) <= float(hybrid["ratio"]) <= float(hybrid["ratio_high"])
    assert hybrid["goal"] in ("reached", "not reached", "undecided")
    steps = list(csv.DictReader(open(out / "step_times.csv")))
    assert len(steps) == 4 * 6 and all(float(s["ms"]) > 0 for s in steps)
    assert "command: `qtransformers bench step-ratio --preset nanogpt-cpu" in (out / "results.md").read_text()
    assert "lag1: lag-1 autocorrelation" in (out / "results.md").read_text()
    assert all(math.isfinite(float(r["lag1"])) for r in rows[2:]) and rows[1]["lag1"] == ""
    capsys.readouterr()
    assert main([*argv[:-5], "--rounds", "5", "--out", str(out), "--no-progress"]) == 2
    assert "--rounds 5 with --confidence 0.95: 5 values cannot give" in capsys.readouterr().err
    assert main([*argv[:-5], "--rounds", "6", "--confidence", "0.999", "--out", str(out), "--no-progress"]) == 2
    assert "--rounds 6 with --confidence 0.999" in capsys.readouterr().err
    assert main([*argv[:-5], "--rounds", "20", "--confidence", "1.5", "--out", str(out), "--no-progress"]) == 2
    assert "confidence must be in (0, 1), got 1.5" in capsys.readouterr().err
    assert main(["bench", "step-ratio", "--hybrids", "qrh,nope", "--out", str(out), "--no-progress"]) == 2
    assert "unknown mixer 'nope'" in capsys.readouterr().err
    assert main([*argv[:2], "--only", "qrh-ful", "--out", str(out), "--no-progress"]) == 2
    assert "no variant or causal mixer is named qrh-ful" in capsys.readouterr().err
    assert main([*argv[:2], "--seq-len", "0", "--out", str(out), "--no-progress"]) == 2
    assert "--seq-len and --batch-size must be >= 1, got 0" in capsys.readouterr().err
