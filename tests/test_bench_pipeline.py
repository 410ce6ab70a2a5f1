"""The results pipeline (``qtransformers bench all``): every entry's command parses, a run writes the
folder layout (CSV, PNG, results.md, machine.json), failures keep the previous folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from qtransformers.bench import pipeline
from qtransformers.cli import build_parser, main
from qtransformers.exceptions import BenchmarkFailedError, InvalidArgumentError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 200)
    return path


@pytest.mark.parametrize("preset", pipeline.PRESETS)
def test_every_entry_parses_in_every_preset(preset, tmp_path):
    parser = build_parser()
    names = [e.name for e in pipeline.PIPELINE]
    assert len(names) == len(set(names)), "entry names must be unique (they are folder names)"
    for entry in pipeline.PIPELINE:
        if entry.arguments(preset) is None:
            continue
        argv = pipeline.command(entry, preset, tmp_path, "data.txt")
        if entry.script:
            assert (ROOT / argv[0]).is_file(), f"{entry.name}: no script {argv[0]}"
            continue
        args = parser.parse_args(argv)
        assert Path(args.out) == tmp_path / entry.name
        assert "{" not in " ".join(argv), f"unfilled placeholder in {argv}"
    assert all(e.test is not None for e in pipeline.PIPELINE if e.cpu is not None), "every cpu entry has a test size"


def test_list_prints_commands_and_runs_nothing(tmp_path, capsys):
    assert main(["bench", "all", "--preset", "full", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"speed: qtransformers bench --quick --out {tmp_path / 'speed'}" in out
    assert "OMP_NUM_THREADS=1 qtransformers ablate" in out
    assert not any(tmp_path.iterdir())


def test_run_writes_the_folder_layout(tmp_path, text_file, monkeypatch):
    monkeypatch.chdir(ROOT)  # scripts are named relative to the repository root
    out = tmp_path / "results"
    only = "speed,qrh-energy"
    argv = ["bench", "all", "--preset", "test", "--only", only, "--out", str(out), "--data", str(text_file)]
    assert main([*argv, "--no-progress"]) == 0
    folder = out / "speed"
    assert sorted(p.name for p in folder.iterdir()) == ["machine.json", "results.csv", "results.md", "time.png"]
    record = json.loads((folder / "machine.json").read_text())
    assert record["preset"] == "test" and record["command"].startswith("qtransformers bench speed --lengths 16")
    assert record["command"].endswith(f"--out {folder} --no-progress")
    assert record["machine"]["cores"] >= 1 and record["machine"]["cpu"] and "torch" in record["machine"]
    md = (folder / "results.md").read_text()
    assert record["command"] in md and record["machine"]["cpu"] in md
    assert "| impl | mode | N | rounds | median_ms |" in md and "![time](time.png)" in md
    assert ".partial" not in md and not (out / "speed.partial").exists()
    script = out / "qrh-energy"
    assert sorted(p.name for p in script.iterdir()) == ["machine.json", "results.md"]
    md = (script / "results.md").read_text()
    assert "python examples/qrh_energy.py" in md and "alpha=1.0: non-causal" in md


def test_entries_needing_data_are_skipped_without_it(tmp_path, capsys):
    argv = ["bench", "all", "--preset", "test", "--only", "ablation", "--out", str(tmp_path)]
    assert main([*argv, "--data", str(tmp_path / "missing.txt"), "--no-progress"]) == 0
    assert "skipped: no data file" in capsys.readouterr().out
    assert not (tmp_path / "ablation").exists()


def test_scripts_are_skipped_outside_the_repository_root(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "all", "--preset", "test", "--only", "qrh-energy", "--out", "results", "--no-progress"]) == 0
    assert "skipped: script not found" in capsys.readouterr().out
    assert not (tmp_path / "results" / "qrh-energy").exists()


def test_a_failing_entry_raises_and_keeps_the_previous_folder(tmp_path, monkeypatch):
    broken = dataclasses.replace(pipeline.PIPELINE[0], name="broken", test="bench speed --lengths 0")
    monkeypatch.setattr(pipeline, "PIPELINE", (broken,))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.md").write_text("previous run")
    args = build_parser().parse_args(["bench", "all", "--preset", "test", "--out", str(tmp_path), "--no-progress"])
    with pytest.raises(BenchmarkFailedError, match="1 of 1 benchmarks failed"):
        pipeline.run(args)
    assert (tmp_path / "broken" / "results.md").read_text() == "previous run"
    assert not (tmp_path / "broken.partial").exists()


def test_unknown_entry_is_refused(tmp_path):
    args = build_parser().parse_args(["bench", "all", "--only", "nope", "--out", str(tmp_path)])
    with pytest.raises(InvalidArgumentError, match="unknown pipeline entries"):
        pipeline.run(args)


@pytest.mark.slow
def test_the_whole_test_preset_runs(tmp_path, text_file, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "results"
    assert main(["bench", "all", "--preset", "test", "--out", str(out), "--data", str(text_file), "--no-progress"]) == 0
    expected = {e.name for e in pipeline.PIPELINE if e.test is not None}
    assert {p.name for p in out.iterdir() if p.name != ".cache"} == expected
    for name in expected:
        assert (out / name / "results.md").is_file() and (out / name / "machine.json").is_file()
    for entry in pipeline.PIPELINE:
        if entry.test is not None and not entry.script:
            assert list((out / entry.name).glob("*.csv")) and list((out / entry.name).glob("*.png"))
    assert not list((out / "ablation").glob("*/ckpt-*")), "checkpoints are dropped"
