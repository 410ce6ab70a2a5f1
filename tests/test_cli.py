"""The ``qtransformers`` command line: the default bench suite runs and writes its outputs."""

from __future__ import annotations

import csv
import subprocess
import sys

from qtransformers.cli import main


def test_bench_writes_table_csv_and_plot(tmp_path, capsys):
    status = main(
        [
            "bench",
            "--lengths",
            "16,32",
            "--repeats",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--only",
            "attention,qmha-exact,nn.MultiheadAttention",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "ratio_to_sdpa" in printed and "qmha-exact" in printed
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert {r["impl"] for r in rows} == {"attention", "qmha-exact", "nn.MultiheadAttention"}
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"} and {r["N"] for r in rows} == {"16", "32"}
    assert all(float(r["median_ms"]) > 0 for r in rows)
    assert all(float(r["ratio_to_sdpa"]) == 1.0 for r in rows if r["impl"] == "attention")
    assert (tmp_path / "time.png").stat().st_size > 1000


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "qtransformers", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("qtransformers ")


def test_bad_lengths_is_a_clean_error(capsys):
    assert main(["bench", "--lengths", "a,b", "--out", "/tmp/unused-qt"]) == 2
    assert "--lengths" in capsys.readouterr().err
