"""``qtransformers bench step-ratio``: training-step time of mixers and hybrids against attention, interleaved.

Every model is a ByteLM at the attention baseline's parameter count (the matching of ``qtransformers
ablate``: :func:`qtransformers.train.ablation.matched_config`), trained on one batch of random bytes. After
one untimed warm-up round, each round times one training step (:func:`qtransformers.train.ablation.training_step`) of every model
in turn, the order rotated from round to round, so a shared machine's slow drifts fall on all models alike
instead of on whichever ran last. On CPU the time is this process's CPU time; on CUDA, elapsed time
between synchronisations.

Each round gives a ratio, baseline step / model step (against the baseline with the same position
scheme). The table reports the median of those ratios and a distribution-free confidence interval of the
median (order statistics of the rounds' ratios, :func:`median_interval`). That interval assumes
independent rounds; the ``lag1`` column (:func:`lag1_autocorrelation`) checks it, and the report flags
models whose neighbouring rounds move together. For a hybrid (at most one layer
in four attention, the rest sub-quadratic) the ``goal`` column checks issue 13's speed goal (>= 2x):
``reached`` when the whole interval is at or above 2, ``not reached`` when it is below, ``undecided``
when it holds 2.

Writes ``results.csv`` (one row per model), ``step_times.csv`` (every timed step) and ``results.md``
into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

from qtransformers.bench.common import header, invocation
from qtransformers.bench.report import format_markdown, format_table, write_csv
from qtransformers.bench.timing import MIN_ROUNDS, interleaved_times, median_interval
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.models import ByteLMConfig
from qtransformers.train.ablation import (
    BASELINE,
    PRESETS,
    baseline_parameters,
    choose_variants,
    count_parameters,
    is_goal_model,
    is_hybrid,
    matched_config,
    training_step,
)

GOAL_SPEEDUP = 2.0
COLUMNS = [
    "variant",
    "dim",
    "mlp_hidden",
    "position",
    "params",
    "params_vs_baseline",
    "rounds",
    "median_ms",
    "ratio",
    "ratio_low",
    "ratio_high",
    "coverage",
    "lag1",
    "goal",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the step-ratio suite."""
    parser.add_argument(
        "--preset",
        default="nanogpt-cpu-4096",
        choices=sorted(PRESETS),
        help="baseline size and context (default nanogpt-cpu-4096: 4 layers, 4 heads, width 128, context 4096, batch 1)",
    )
    parser.add_argument("--seq-len", type=int, default=None, help="context length (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's)")
    parser.add_argument("--only", default=BASELINE, help=f"comma-separated mixer or variant names (default {BASELINE})")
    parser.add_argument(
        "--hybrids",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="one model per mixer pattern (qrh,qrh,qrh,attention)",
    )
    parser.add_argument("--rope", action="store_true", help="add the RoPE copy of every attention-based model")
    parser.add_argument(
        "--same-width", action="store_true", help="keep the baseline's width; match parameters through the MLP only"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=15,
        help=f"timed rounds, one step of every model each (>= {MIN_ROUNDS} at 0.95 confidence; default 15)",
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="confidence of the ratio interval (default 0.95)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    parser.add_argument("--out", default="qtransformers-bench", help="output folder (default ./qtransformers-bench)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def lag1_autocorrelation(values: list[float]) -> float:
    """Lag-1 autocorrelation of ``values`` in round order; nan with fewer than 3 values or none differing.

    For independent rounds it is about N(0, 1/n), so a value above 2/√n says that neighbouring rounds
    move together (drift the rotation did not cancel), and the interval, which assumes independent
    rounds, may be too narrow.
    """
    n = len(values)
    if n < 3:
        return math.nan
    mean = sum(values) / n
    spread = sum((v - mean) ** 2 for v in values)
    if spread == 0:
        return math.nan
    return sum((values[i] - mean) * (values[i + 1] - mean) for i in range(n - 1)) / spread


def dependent_rounds(rows: list[dict]) -> list[str]:
    """Variants whose per-round ratios have a lag-1 autocorrelation above 2/√rounds."""
    return [r["variant"] for r in rows if r.get("lag1", math.nan) > 2 / math.sqrt(r["rounds"])]


def ratio_rows(
    info: dict[str, dict], times: dict[str, list[float]], layers: int, confidence: float = 0.95
) -> list[dict]:
    """One row per model: its median step and the interval of its per-round ratio to the same-position baseline.

    ``info[name]`` holds the model's ``mixer``, ``position``, ``dim``, ``mlp_hidden``, ``params`` and
    ``params_vs_baseline``; the baseline of a position is the ``attention`` model with that position.
    """
    baselines = {i["position"]: name for name, i in info.items() if i["mixer"] == BASELINE}
    rows = []
    for name, i in info.items():
        row = {"variant": name, **{k: i[k] for k in ("dim", "mlp_hidden", "position", "params", "params_vs_baseline")}}
        row.update(rounds=len(times[name]), median_ms=statistics.median(times[name]))
        base = baselines.get(i["position"])
        if base is not None and base != name:
            ratios = [b / t for b, t in zip(times[base], times[name])]
            ratio, low, high, coverage = median_interval(ratios, confidence)
            row.update(ratio=ratio, ratio_low=low, ratio_high=high, coverage=coverage)
            row["lag1"] = lag1_autocorrelation(ratios)
            if is_hybrid(i["mixer"]) and is_goal_model(i["mixer"], layers):
                row["goal"] = speed_verdict(low, high)
        rows.append(row)
    return rows


def speed_verdict(low: float, high: float, goal: float = GOAL_SPEEDUP) -> str:
    """``reached`` if the ratio's interval lies at or above ``goal``, ``not reached`` if below it, else ``undecided``."""
    if low >= goal:
        return "reached"
    if high < goal:
        return "not reached"
    return "undecided"


def run(args: argparse.Namespace) -> list[dict]:
    """Time the models in turn, print the table and write results.csv, step_times.csv and results.md."""
    try:  # before any model is built: too few rounds for the asked confidence
        median_interval([0.0] * max(args.rounds, 0), args.confidence)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"--rounds {args.rounds} with --confidence {args.confidence:g}: {exc}") from None
    preset = PRESETS[args.preset]
    seq_len = preset.seq_len if args.seq_len is None else args.seq_len
    batch_size = preset.batch_size if args.batch_size is None else args.batch_size
    if seq_len < 1 or batch_size < 1:
        raise InvalidArgumentError(f"--seq-len and --batch-size must be >= 1, got {seq_len} and {batch_size}")
    device = torch.device(args.device)
    base = ByteLMConfig(mixer=BASELINE, dim=preset.dim, layers=preset.layers, max_seq_len=seq_len)
    only = [n.strip() for n in args.only.split(",")]
    chosen = choose_variants(
        only if BASELINE in only else [BASELINE, *only], args.hybrids, preset.heads, rope=args.rope, layers=base.layers
    )
    target = baseline_parameters(base)
    info, steps = {}, {}
    for variant in chosen:
        config = matched_config(base, variant, target, same_width=args.same_width)
        params = count_parameters(config)
        info[variant.name] = {
            "mixer": variant.mixer,
            "position": config.position,
            "dim": config.dim,
            "mlp_hidden": config.mlp_hidden,
            "params": params,
            "params_vs_baseline": params / target,
        }
        steps[variant.name] = training_step(config, seq_len, batch_size, device)[1]
    times = interleaved_times(steps, args.rounds, device, progress=args.progress)
    rows = ratio_rows(info, times, base.layers, args.confidence)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, COLUMNS, out / "results.csv")
    step_rows = [{"round": r, "variant": n, "ms": ms} for n, ts in times.items() for r, ms in enumerate(ts)]
    write_csv(step_rows, ["round", "variant", "ms"], out / "step_times.csv")
    clock = "CPU time of this process" if device.type == "cpu" else "elapsed time"
    title = header(
        device,
        torch.float32 if device.type == "cpu" else torch.bfloat16,
        f"preset {args.preset}, ctx {seq_len}, batch {batch_size}, {args.rounds} interleaved rounds, {clock}"
        + (", every model at the baseline's width (MLP matched)" if args.same_width else ""),
    )
    command = invocation(args)
    note = (
        f"median_ms: median step; ratio: median over rounds of baseline step / model step, with a "
        f"{args.confidence:g} distribution-free interval (ratio_low, ratio_high; exact coverage in `coverage`); "
        f"goal (hybrids only): >= {GOAL_SPEEDUP:g}x, reached when the whole interval is at or above it. "
        f"lag1: lag-1 autocorrelation of the per-round ratios; the interval assumes independent rounds, "
        f"and a lag1 above 2/sqrt(rounds) = {2 / math.sqrt(args.rounds):.2f} says they are not."
    )
    dependent = dependent_rounds(rows)
    if dependent:
        note += f"\n\nRounds look dependent (lag1 above 2/sqrt(rounds)), intervals may be too narrow: {', '.join(dependent)}."
        print(f"warning: rounds look dependent for {', '.join(dependent)}; their intervals may be too narrow")
    text = [title, "", f"command: `{command}`" if command else "", "", format_markdown(rows, COLUMNS), "", note]
    (out / "results.md").write_text("\n".join(text) + "\n")
    print(title)
    print(format_table(rows, COLUMNS))
    return rows
