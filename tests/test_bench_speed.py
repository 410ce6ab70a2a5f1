"""``qtransformers bench`` (suite ``speed``): paired per-round ratios, their interval, the table it writes."""

from __future__ import annotations

import argparse
import csv
import math
import time

import pytest
import torch

from qtransformers.bench import common
from qtransformers.bench.speed import paired_ratio
from qtransformers.bench.timing import interleaved_times, peak_memory_bytes
from qtransformers.cli import main
from qtransformers.exceptions import InvalidArgumentError


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # the machine slows down round by round; the case always costs twice the reference of its round
    reference = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    times = [2.0 * r for r in reference]
    times[0] = 100.0  # one outlier round
    ratio, low, high = paired_ratio(times, reference)
    assert ratio == 2.0 and low == 2.0 and high == 100.0  # 7 rounds: the interval is (min, max)
    # per round, not the ratio of the two medians (3 / 8 here)
    assert paired_ratio([3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 30.0], reference)[0] == pytest.approx(30.0 / 64.0)


def test_paired_ratio_interval_needs_six_rounds():
    ratio, low, high = paired_ratio([2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 1.0, 2.0, 2.0, 2.0])
    assert ratio == 4.0 and math.isnan(low) and math.isnan(high)
    ratio, low, high = paired_ratio([float(v) for v in range(1, 11)], [1.0] * 10)
    assert (ratio, low, high) == (5.5, 2.0, 9.0)


def test_peak_memory_is_the_median_over_calls():
    sizes = iter([8, 96, 40])  # MiB held by successive calls

    def hold():
        block = torch.ones(next(sizes) * 2**18)  # ones writes every page: the RSS grows by the size
        time.sleep(0.05)  # held long enough for the 0.5 ms sampler
        del block

    peak = peak_memory_bytes(hold, torch.device("cpu"), calls=3) / 2**20
    assert 36 <= peak <= 60, peak  # the 40 MiB call, not the 8 or 96 MiB one
    with pytest.raises(InvalidArgumentError, match="calls"):
        peak_memory_bytes(hold, torch.device("cpu"), calls=0)


def test_interleaved_times_elapsed_clock_counts_sleep():
    def sleeper():
        time.sleep(0.03)

    def busy():
        end = time.process_time() + 0.01
        while time.process_time() < end:
            pass

    elapsed = interleaved_times({"sleeper": sleeper, "busy": busy}, 3, torch.device("cpu"), cpu_time=False)
    cpu = interleaved_times({"sleeper": sleeper, "busy": busy}, 3, torch.device("cpu"))
    assert min(elapsed["sleeper"]) >= 29.0  # elapsed time includes the sleep
    assert max(cpu["sleeper"]) < 15.0  # CPU time does not
    assert min(cpu["busy"]) >= 9.0


def test_speed_suite_writes_paired_ratios(tmp_path, capsys):
    only = "attention,qrh,qmha-lsh"
    argv = ["bench", "--lengths", "16,33", "--dim", "16", "--heads", "2", "--repeats", "6", "--only", only]
    main([*argv, "--out", str(tmp_path), "--no-progress"])
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    keys = [(r["impl"], r["mode"], r["N"]) for r in rows]
    expected = [(name, "fwd", n) for name in only.split(",") for n in ("16", "33")]
    expected += [(name, "fwd+bwd", n) for name in ("attention", "qrh") for n in ("16", "33")]
    assert sorted(keys) == sorted(expected)  # the LSH backend has no backward
    for row in rows:
        ratio, low, high = float(row["ratio_to_sdpa"]), float(row["ratio_low"]), float(row["ratio_high"])
        assert row["rounds"] == "6" and float(row["median_ms"]) > 0 and float(row["peak_mem_MiB"]) >= 0
        assert 0 < low <= ratio <= high
        if row["impl"] == "attention":
            assert ratio == low == high == 1.0
    assert (tmp_path / "time.png").stat().st_size > 0
    assert "median over 6 interleaved rounds" in capsys.readouterr().out


def test_speed_suite_without_reference_has_no_ratio(tmp_path):
    main(
        ["bench", "--lengths", "8", "--dim", "8", "--heads", "2", "--repeats", "2", "--only", "qrh"]
        + ["--out", str(tmp_path), "--no-progress"]
    )
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 2 and all(r["ratio_to_sdpa"] == "nan" for r in rows)


def test_speed_suite_rejects_zero_repeats(tmp_path, capsys):
    assert main(["bench", "--lengths", "8", "--repeats", "0", "--only", "attention", "--out", str(tmp_path)]) == 2
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err
    args = argparse.Namespace(device="cpu", dtype="float32", lengths="8", quick=False, repeats=0, _repeats=(7, 9))
    with pytest.raises(InvalidArgumentError):
        common.resolve(args)
