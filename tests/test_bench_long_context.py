"""The long-context bench runs end to end on tiny sizes and writes its CSVs and plots."""

from __future__ import annotations

import csv

import pytest

from qtransformers.bench import SUITES
from qtransformers.cli import main


def test_long_context_suite_writes_tables_and_plots(tmp_path, capsys):
    assert SUITES["long-context"] == "qtransformers.bench.long_context"
    cases = "attention,nn.MultiheadAttention,qrh,qrh-torchfft,spectral-torchfft"
    argv = [
        "bench",
        "long-context",
        "--lengths",
        "16,32",
        "--dim",
        "16",
        "--heads",
        "2",
        "--repeats",
        "1",
        "--only",
        cases,
        "--mha-max-n",
        "16",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    seen = {(r["impl"], r["mode"], int(r["N"])) for r in rows}
    assert ("qrh", "fwd+bwd", 32) in seen and ("qrh-torchfft", "fwd", 16) in seen
    assert ("spectral-torchfft", "fwd+bwd", 32) in seen
    assert ("nn.MultiheadAttention", "fwd", 16) in seen and ("nn.MultiheadAttention", "fwd", 32) not in seen
    assert all(float(r["ratio_to_sdpa"]) == 1.0 for r in rows if r["impl"] == "attention")
    slopes = list(csv.DictReader(open(tmp_path / "slopes.csv")))
    assert {s["impl"] for s in slopes} == set(cases.split(","))
    assert (tmp_path / "time.png").stat().st_size > 0 and (tmp_path / "memory.png").stat().st_size > 0
    assert "log-log slopes" in capsys.readouterr().out


def test_long_context_rejects_unknown_cases(tmp_path):
    with pytest.raises(SystemExit, match="unknown case"):
        main(["bench", "long-context", "--quick", "--only", "nope", "--out", str(tmp_path), "--no-progress"])
