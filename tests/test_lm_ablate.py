"""The ablation command runs every variant at an equal parameter budget and writes its table and plots."""

import csv

import pytest

from qtransformers import mixers
from qtransformers.cli import main
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.models import ByteLMConfig
from qtransformers.train.ablation import BASELINE, Variant, count_parameters, match_size, variants


def test_variants_cover_qrh_ablation_and_every_causal_mixer():
    names = [v.mixer for v in variants(["attention", "phase", "qrh", "hyena"])]
    assert names == ["attention", "qrh", "qrh", "qrh", "qrh", "phase", "hyena"]
    assert {v.mixer for v in variants()} == set(mixers.available(causal=True))
    assert [v.mixer for v in variants(["attention", "phase"])] == ["attention", "phase"]


def test_match_size_equalises_parameters():
    base = ByteLMConfig(mixer=BASELINE, dim=64, layers=2, max_seq_len=64)
    target = count_parameters(base)
    config = match_size(base, Variant("phase", "phase"), target)
    assert config.mixer == "phase" and config.dim % 4 == 0
    assert abs(count_parameters(config) - target) / target < 0.005


def test_same_width_keeps_the_baseline_width_and_matches_parameters_through_the_mlp():
    base = ByteLMConfig(mixer=BASELINE, dim=64, layers=4, max_seq_len=64)
    target = count_parameters(base)
    hybrid = Variant("qrh,qrh,qrh,attention", "qrh,qrh,qrh,attention")
    nearest = match_size(base, hybrid, target)
    same = match_size(base, hybrid, target, same_width=True)
    assert nearest.dim != 64 and same.dim == 64  # the closest width at the default MLP is another one
    assert same.mlp_hidden > base.mlp_ratio * 64  # the MLP absorbs the parameters QRH does not use
    assert abs(count_parameters(same) - target) / target < 0.005
    with pytest.raises(ValueError, match="width 66 builds"):  # qrh needs a width divisible by 4
        match_size(
            ByteLMConfig(mixer=BASELINE, dim=66, layers=1, max_seq_len=16),
            Variant("qrh", "qrh"),
            target,
            same_width=True,
        )


def test_ablate_cli_writes_table_csv_and_plots(tmp_path, shakespeare_path):
    data = tmp_path / "small.txt"
    data.write_bytes(shakespeare_path.read_bytes()[:30000])
    out = tmp_path / "ablation"
    argv = [
        "ablate",
        "--data",
        str(data),
        "--steps",
        "2",
        "--out",
        str(out),
        "--dim",
        "32",
        "--layers",
        "1",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--eval-batches",
        "1",
        "--long-context",
        "32",
        "--no-progress",
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["variant"] for r in rows] == [v.name for v in variants()]
    for row in rows:
        assert row["status"] == "ok", row
        assert abs(float(row["params_vs_baseline"]) - 1) < 0.02, row
        assert float(row["val_bpb"]) > 0 and float(row["ms_per_step"]) > 0 and float(row["long_ctx_ms_per_step"]) > 0
    for name in ("ablation.md", "ablation_val_bpb.png", "ablation_curves.png", "ablation_step_time.png"):
        assert (out / name).stat().st_size > 100, name
    assert "| variant |" in (out / "ablation.md").read_text()
    same = tmp_path / "same-width"
    assert main([*argv[:-1], "--only", "hyena", "--same-width", "--out", str(same), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(same / "ablation.csv")))
    assert [(r["variant"], r["dim"], r["status"]) for r in rows] == [("hyena", "32", "ok")]  # nearest width: 28
    assert abs(float(rows[0]["params_vs_baseline"]) - 1) < 0.02
    assert "every variant at the baseline's width" in (same / "ablation.md").read_text()


def test_unknown_only_name_raises_before_training(tmp_path, capsys):
    from qtransformers.train.ablation import choose_variants

    with pytest.raises(InvalidArgumentError, match="no variant or causal mixer is named hyna, qrh-ful") as info:
        choose_variants(["hyena", "hyna", "qrh-ful"], layers=4)
    assert isinstance(info.value, ValueError) and "qrh-full" in str(info.value)  # the known names are listed
    assert [v.name for v in choose_variants(["qrh"], layers=4)][-1] == "qrh-full"  # a mixer name picks its variants
    out = tmp_path / "typo"
    argv = ["ablate", "--data", str(tmp_path / "none.txt"), "--steps", "1", "--only", "atention", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 2
    assert "no variant or causal mixer is named atention" in capsys.readouterr().err
    assert not (out / "ablation.csv").exists()


def test_heads_option_reaches_only_mixers_with_heads():
    from qtransformers.train.ablation import with_heads

    assert with_heads(Variant("t", "attention"), 4).options == {"num_heads": 4}
    assert with_heads(Variant("q", "qrh", {"rotation": False}), 4).options == {"rotation": False}


def test_saved_activation_bytes_scales_with_batch():
    import torch

    from qtransformers.models import ByteLM
    from qtransformers.train.ablation import saved_activation_bytes

    model = ByteLM(ByteLMConfig(mixer="attention", dim=32, layers=2, max_seq_len=32))
    one = saved_activation_bytes(model, torch.randint(0, 256, (1, 32)))
    four = saved_activation_bytes(model, torch.randint(0, 256, (4, 32)))
    assert one >= 32 * 256 * 4  # at least the float32 logits of one sequence
    assert 3.5 * one <= four <= 4.5 * one
    assert all(p.grad is None for p in model.parameters())
