"""The LM comparison on ``ablate``: equal wall-clock mode, presets, nanoGPT's figure labelled, samples."""

import argparse
import csv
import math

import pytest
import torch

from qtransformers.bench.report import format_markdown
from qtransformers.cli import build_parser, main
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.train import TrainConfig, Trainer, lr_factor
from qtransformers.train.ablate_command import SIZE_DEFAULTS, resolve_size
from qtransformers.train.ablation import NANOGPT_CPU_LOSS, PRESETS, sample

TINY = ["--dim", "16", "--layers", "1", "--seq-len", "16", "--batch-size", "2", "--eval-batches", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """20 kB of varied ASCII text (no shared corpus needed)."""
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler", "mind"]
    gen = torch.Generator().manual_seed(0)
    picks = torch.randint(0, len(words), (4000,), generator=gen).tolist()
    path = tmp_path_factory.mktemp("data") / "words.txt"
    path.write_text(" ".join(words[i] for i in picks))
    return path


def _ablate(corpus, out, *extra):
    argv = ["ablate", "--data", str(corpus), "--out", str(out), "--long-context", "0", "--no-progress", *TINY, *extra]
    assert main(argv) == 0
    return list(csv.DictReader(open(out / "ablation.csv")))


@pytest.mark.parametrize("clock", ["wall", "process"])
def test_time_budget_stops_on_time_and_evaluates_the_last_step(corpus, tmp_path, clock):
    budget = 2.0  # seconds: well above one tiny step even on a loaded machine
    model = ByteLMConfig(mixer="attention", dim=16, layers=1, max_seq_len=16)
    config = TrainConfig(
        data=str(corpus),
        out=str(tmp_path),
        steps=10**6,
        batch_size=2,
        eval_batches=1,
        warmup_steps=1,
        time_budget=budget,
        budget_clock=clock,
    )
    trainer = Trainer(model, config)
    history = trainer.run()
    spent = trainer.step_seconds if clock == "wall" else trainer.step_cpu_seconds
    assert 1 < trainer.step == len(history) == len(spent) < 10**6
    assert sum(spent) >= budget > sum(spent[:-1])  # stopped at the first step that reached the budget
    assert "val_loss" in history[-1] and math.isfinite(history[-1]["val_loss"])
    assert (tmp_path / f"ckpt-{trainer.step:08d}").is_dir()
    assert history[-1]["lr"] < 0.5 * config.lr  # the cosine follows the budget (by steps it would still be ~lr)


def test_time_budget_is_validated(corpus, tmp_path):
    for bad in (0.0, -1.0):
        with pytest.raises(InvalidArgumentError, match="time_budget"):
            TrainConfig(data=str(corpus), out=str(tmp_path), steps=5, time_budget=bad).resolved()
    with pytest.raises(InvalidArgumentError, match="budget_clock"):
        TrainConfig(data=str(corpus), out=str(tmp_path), steps=5, time_budget=1.0, budget_clock="cpu").resolved()
    with pytest.raises(InvalidArgumentError, match="resume"):
        TrainConfig(data=str(corpus), out=str(tmp_path), steps=5, time_budget=1.0, resume=True).resolved()


def test_lr_factor_follows_the_budget_fraction():
    assert lr_factor(3, 10, 100, 0.1, fraction=0.9) == lr_factor(3, 10, 100, 0.1)  # warm-up counts steps
    assert lr_factor(50, 10, 100, 0.1, fraction=0.0) == pytest.approx(1.0)
    assert lr_factor(50, 10, 100, 0.1, fraction=0.5) == pytest.approx(0.55)
    assert lr_factor(50, 10, 100, 0.1, fraction=2.0) == pytest.approx(0.1)


def test_ablate_equal_time_records_steps_and_seconds(corpus, tmp_path):
    # 1 s: a model's first step took 0.44 s on the loaded 2-core machine (a 0.3 s budget ended after it)
    rows = _ablate(corpus, tmp_path / "eq", "--time-budget", "1", "--only", "attention,hyena")
    assert [r["variant"] for r in rows] == ["transformer-sdpa", "hyena"]
    for row in rows:
        assert row["status"] == "ok", row
        steps, train_s = int(row["steps"]), float(row["train_s"])
        assert steps > 1 and 1.0 <= train_s < 3.0, row
        assert float(row["wall_s"]) >= train_s and float(row["cpu_s"]) > 0 and float(row["cpu_ms_per_step"]) > 0
    assert "1 s (wall clock) of training per model" in (tmp_path / "eq" / "ablation.md").read_text()


def _args(*argv):
    parser = build_parser()
    return parser.parse_args(["ablate", "--data", "x", "--out", "y", *argv])


def test_presets_resolve_to_the_stated_configs():
    got = {name: vars(resolve_size(_args("--preset", name))) for name in PRESETS}
    size = ("layers", "heads", "dim", "seq_len", "batch_size", "steps")
    assert tuple(got["nanogpt-cpu"][k] for k in size) == (4, 4, 128, 64, 12, 2000)
    assert tuple(got["nanogpt-cpu-1024"][k] for k in size) == (4, 4, 128, 1024, 4, 500)
    assert tuple(got["nanogpt-cpu-4096"][k] for k in size) == (4, 4, 128, 4096, 1, 5)
    mine = resolve_size(_args("--preset", "nanogpt-cpu", "--steps", "300", "--dim", "64"))
    assert (mine.steps, mine.dim, mine.seq_len) == (300, 64, 64)  # explicit options win over the preset
    plain = resolve_size(_args("--steps", "7"))
    assert {k: getattr(plain, k) for k in SIZE_DEFAULTS} == {**SIZE_DEFAULTS, "steps": 7}
    assert resolve_size(_args("--time-budget", "5")).steps >= 10**6
    with pytest.raises(InvalidArgumentError, match="--steps, --time-budget or --preset"):
        resolve_size(_args())


def test_markdown_labels_nanogpt_figure_as_theirs(corpus, tmp_path):
    out = tmp_path / "nano"
    rows = _ablate(corpus, out, "--preset", "nanogpt-cpu", "--steps", "2", "--only", "attention")
    assert [r["variant"] for r in rows] == ["transformer-sdpa"]  # the CSV holds measured rows only
    table = (out / "ablation.md").read_text()
    line = next(x for x in table.splitlines() if x.startswith("| nanoGPT"))
    assert "published (theirs, not measured here)" in line
    assert f"| {NANOGPT_CPU_LOSS:.4g} | {NANOGPT_CPU_LOSS / math.log(2):.4g} |" in line
    assert "not measured here" in table.split(line)[1] and "one character is one byte" in table
    other = tmp_path / "other"
    _ablate(corpus, other, "--steps", "2", "--only", "attention")
    assert "nanoGPT" not in (other / "ablation.md").read_text()  # shown only beside its own configuration


def test_samples_are_written_for_each_model(corpus, tmp_path):
    out = tmp_path / "s"
    _ablate(corpus, out, "--steps", "3", "--only", "attention,spectral", "--prompt", "to be")
    text = (out / "samples.md").read_text()
    for variant in ("transformer-sdpa", "spectral"):
        written = (out / variant / "sample.txt").read_text()
        assert written.startswith("to be") and len(written.encode()) >= len("to be") + 1
        assert f"### {variant}\n\n```text\n{written}\n```" in text


def test_sample_is_seeded_and_continues_the_prompt():
    torch.manual_seed(0)
    model = ByteLM(ByteLMConfig(mixer="attention", dim=16, layers=1, max_seq_len=32))
    a, b, c = sample(model, "ab", 40, seed=1), sample(model, "ab", 40, seed=1), sample(model, "ab", 40, seed=2)
    assert a == b and a != c and a.startswith("ab")


def test_markdown_cells_keep_spaces_and_escape_pipes():
    table = format_markdown([{"a": "x y", "b": 1.5}, {"a": "p|q", "b": float("nan")}], ["a", "b"])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x y | 1.5 |", "| p\\|q | - |"]


def test_namespace_round_trip_keeps_other_options():
    args = resolve_size(_args("--preset", "nanogpt-cpu", "--time-budget", "9", "--hybrids", "qrh,attention"))
    assert isinstance(args, argparse.Namespace) and args.hybrids == ["qrh,attention"] and args.time_budget == 9.0


def test_hybrid_patterns_and_rope_rows(corpus, tmp_path):
    out = tmp_path / "hy"
    argv = ["--steps", "2", "--layers", "2", "--only", "attention,hyena", "--rope"]
    rows = _ablate(corpus, out, *argv, "--hybrids", "hyena,attention", "spectral+attention")
    names = [r["variant"] for r in rows]
    assert names == [
        "transformer-sdpa",
        "transformer-sdpa-rope",
        "hyena",  # no attention-based mixer, so no RoPE copy
        "hyena,attention",
        "hyena,attention-rope",
        "spectral+attention",
        "spectral+attention-rope",
    ]
    by_name = {r["variant"]: r for r in rows}
    assert all(r["status"] == "ok" for r in rows), rows
    table = 16 * 16  # the baseline's position table: max_seq_len x dim
    base = int(by_name["transformer-sdpa"]["params"])
    rope = by_name["transformer-sdpa-rope"]
    assert int(rope["params"]) == base - table and rope["dim"] == by_name["transformer-sdpa"]["dim"]
    for name in ("hyena,attention", "spectral+attention"):
        assert abs(int(by_name[name]["params"]) / base - 1) < 0.02
        assert abs(int(by_name[name + "-rope"]["params"]) / (base - table) - 1) < 0.02
        assert (out / name / "sample.txt").is_file()


def test_a_pattern_longer_than_the_depth_stops_the_study_before_training(corpus, tmp_path):
    argv = ["ablate", "--data", str(corpus), "--out", str(tmp_path / "x"), "--no-progress", *TINY]
    assert main([*argv, "--only", "transformer-sdpa", "--hybrids", "qrh,attention"]) == 2  # TINY has 1 layer
    assert not (tmp_path / "x" / "transformer-sdpa").exists()


def test_goal_models_are_subquadratic_or_the_issues_hybrids():
    from qtransformers.train.ablation import is_goal_model

    yes = ["hyena", "qrh", "qrh,qrh,qrh,attention", "hyena,hyena,hyena,quantum", "hyena+quantum", "spectral,quantum"]
    no = ["attention", "quantum", "phase", "qrh,attention", "hyena+attention", "phase,qrh,qrh,qrh"]
    assert all(is_goal_model(m, 4) for m in yes) and not any(is_goal_model(m, 4) for m in no)
    assert is_goal_model("qrh,qrh,qrh,attention", 8) and not is_goal_model("qrh,qrh,attention", 3)


def test_goal_report_compares_within_a_position_scheme():
    from qtransformers.train.ablation import goal_report

    def row(variant, mixer, position, loss, cpu_ms):
        return dict(variant=variant, mixer=mixer, position=position, val_loss=loss, cpu_ms_per_step=cpu_ms,
                    ms_per_step=cpu_ms, status="ok")  # fmt: skip

    rows = [
        row("transformer-sdpa", "attention", "learned", 2.0, 100.0),
        row("qrh,qrh,qrh,attention", "qrh,qrh,qrh,attention", "learned", 2.1, 40.0),
        row("hyena", "hyena", "learned", 1.9, 30.0),
        row("transformer-sdpa-rope", "attention", "rope", 1.5, 100.0),
        row("qrh,qrh,qrh,attention-rope", "qrh,qrh,qrh,attention", "rope", 1.6, 60.0),
        {"variant": "spectral", "status": "failed: x"},
    ]
    lines = goal_report(rows, 4, time_budget=60.0)
    assert lines == [
        "speed: qrh,qrh,qrh,attention trains 2.50x as fast per step as transformer-sdpa (CPU time; 2.50x elapsed): "
        "reached (goal >= 2x)",
        "quality at equal time: best sub-quadratic or hybrid hyena val_loss 1.9000 vs transformer-sdpa 2.0000: reached",
        "speed: qrh,qrh,qrh,attention-rope trains 1.67x as fast per step as transformer-sdpa-rope (CPU time; 1.67x "
        "elapsed): NOT reached (goal >= 2x)",
        "quality at equal time: best sub-quadratic or hybrid qrh,qrh,qrh,attention-rope val_loss 1.6000 vs "
        "transformer-sdpa-rope 1.5000: NOT reached",
    ]
    assert not any("quality" in line for line in goal_report(rows, 4, time_budget=None))


def test_report_only_rewrites_the_same_report_from_the_csv(corpus, tmp_path):
    out = tmp_path / "r"
    argv = ["--preset", "nanogpt-cpu", "--steps", "2", "--only", "attention,hyena", "--rope"]
    _ablate(corpus, out, *argv)
    written = {name: (out / name).read_text() for name in ("ablation.md", "samples.md")}
    for name in (*written, "ablation_val_bpb.png", "ablation_curves.png", "ablation_step_time.png"):
        (out / name).unlink()
    _ablate(corpus, out, *argv, "--report-only")
    assert {name: (out / name).read_text() for name in written} == written
    assert (out / "ablation_curves.png").stat().st_size > 1000 and (out / "ablation_step_time.png").is_file()
    with pytest.raises(InvalidArgumentError, match="ablation.csv"):
        resolve_args = _args("--steps", "1", "--report-only")
        resolve_args.out = str(tmp_path / "missing")
        from qtransformers.train.ablate_command import run

        run(resolve_args)
