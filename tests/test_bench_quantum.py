"""The quantum bench suite runs end to end at tiny sizes and writes its CSVs and plots."""

from __future__ import annotations

import csv

from qtransformers.bench import SUITES
from qtransformers.cli import main


def test_quantum_bench_quick_writes_tables_and_plots(tmp_path, capsys):
    assert SUITES["quantum"] == "qtransformers.bench.quantum"
    argv = [
        "bench",
        "quantum",
        "--quick",
        "--repeats",
        "1",
        "--levels",
        "0,0.1",
        "--shots",
        "16,inf",
        "--bonds",
        "1,4,full",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "## noise" in printed and "## mps" in printed and "## speed" in printed
    rows = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in ("noise", "mps", "speed")}
    assert len(rows["noise"]) == 4 * 2 * 2  # channels x levels x shots at one length
    exact = [r for r in rows["noise"] if r["shots"] == "inf" and float(r["noise_level"]) == 0.0]
    assert all(float(r["rel_error"]) < 1e-12 for r in exact)
    full = [r for r in rows["mps"] if r["input"] == "attention" and r["max_bond"] == "full"]
    assert float(full[0]["output_rel_err"]) < 1e-10
    assert all(float(r["rust_ms"]) > 0 and float(r["numpy_ms"]) > 0 for r in rows["speed"])
    assert (tmp_path / "noise.png").stat().st_size > 0 and (tmp_path / "mps.png").stat().st_size > 0
