"""``qtransformers ablate``: the ΨQRH ablation and every causal mixer at an equal parameter budget.

Each model trains for ``--steps`` steps or, with ``--time-budget``, for the same training time.
``--preset`` picks a named configuration (nanoGPT's CPU configuration and the same at contexts 1024
and 4096); explicit size options override it. Writes ``ablation.csv``, ``ablation.md`` (the table,
with nanoGPT's published figure beside it for the ``nanogpt-cpu`` preset), ``samples.md`` (a
sample from each trained model), ``ablation_val_bpb.png``, ``ablation_curves.png`` and
``ablation_step_time.png`` into ``--out``, one run folder per variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qtransformers.bench.common import header
from qtransformers.bench.report import format_markdown, format_table, plot_lines, write_csv
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.models import ByteLMConfig
from qtransformers.train.ablation import (
    BASELINE,
    COLUMNS,
    NANOGPT_CPU_LOSS,
    PRESETS,
    SAMPLE_BYTES,
    SAMPLE_PROMPT,
    goal_report,
    run_ablation,
    variants,
)
from qtransformers.train.train_command import add_model_arguments
from qtransformers.train.trainer import METRICS_FILE, TrainConfig

# Size options a preset fills when they are not given, and their values without a preset.
SIZE_DEFAULTS = {"layers": 4, "heads": 4, "dim": 128, "seq_len": 128, "batch_size": 12, "steps": None}
# CSV columns that hold text (the others are numbers).
TEXT_COLUMNS = {"variant", "mixer", "options", "position", "status"}
# Steps cap of a --time-budget run without --steps or a preset.
TIME_BUDGET_STEP_CAP = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qtransformers ablate``."""
    parser.add_argument("--data", required=True, help="any text file (read as raw bytes)")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per variant (a cap with --time-budget)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_model_arguments(parser)
    parser.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="named size and schedule: " + "; ".join(f"{p.name}: {p.note}" for p in PRESETS.values()),
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="equal wall-clock mode: train each model for this many seconds of training steps",
    )
    parser.add_argument(
        "--budget-clock",
        default="wall",
        choices=["wall", "process"],
        help="clock of --time-budget: elapsed time, or this process's CPU time (robust on a shared CPU)",
    )
    parser.add_argument("--eval-every", type=int, default=None, help="validation interval (default steps/5)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up steps (default min(100, steps/10); set it with --time-budget)"
    )
    parser.add_argument("--long-context", type=int, default=1024, help="context of the step-time column (0: skip)")
    parser.add_argument("--heads", type=int, default=None, help="num_heads of every mixer that has heads (default 4)")
    parser.add_argument("--only", default=None, help="comma-separated mixer or variant names to run (default all)")
    parser.add_argument(
        "--hybrids",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="extra variants, one per mixer pattern (e.g. qrh,qrh,qrh,attention hyena+quantum)",
    )
    parser.add_argument(
        "--rope",
        action="store_true",
        help="add a '<variant>-rope' row (RoPE, no position table) for every variant with an attention-based mixer",
    )
    parser.add_argument(
        "--same-width",
        action="store_true",
        help="every variant keeps the baseline's width and matches its parameter count through the MLP hidden "
        "size only (default: the closest width, then the MLP)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rewrite the table, samples and plots from --out's ablation.csv and run folders "
        "(same size options as the study)",
    )
    parser.add_argument("--prompt", default=SAMPLE_PROMPT, help=f"prompt of the samples (default {SAMPLE_PROMPT!r})")
    # Size options are filled from --preset (or SIZE_DEFAULTS) in resolve_size, so an explicit value always wins.
    parser.set_defaults(**dict.fromkeys(SIZE_DEFAULTS))


def resolve_size(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the size options not given filled from ``--preset`` (else their defaults) and validated."""
    preset = vars(PRESETS[args.preset]) if args.preset else SIZE_DEFAULTS
    filled = {k: getattr(args, k) if getattr(args, k) is not None else preset[k] for k in SIZE_DEFAULTS}
    if filled["steps"] is None:
        if args.time_budget is None:
            raise InvalidArgumentError("ablate needs --steps, --time-budget or --preset")
        filled["steps"] = TIME_BUDGET_STEP_CAP
    return argparse.Namespace(**{**vars(args), **filled})


def _bar_chart(rows: list[dict], key: str, ylabel: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "ok" and not math.isnan(r.get(key, math.nan))]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(done)), 4.5))
    ax.bar([r["variant"] for r in done], [r[key] for r in done], color="tab:blue")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=7, wrap=True)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def goal_lines(rows: list[dict], long_context: int) -> list[str]:
    """The issue's goal, checked: full QRH val loss within 5 % of the transformer's; faster step at long context."""
    by_name = {r["variant"]: r for r in rows if r.get("status") == "ok"}
    base, qrh = by_name.get(next((v.name for v in variants() if v.mixer == BASELINE), "")), by_name.get("qrh-full")
    if base is None or qrh is None:
        return ["goal: not evaluated (the transformer baseline or full QRH did not run)"]
    ratio = qrh["val_loss"] / base["val_loss"]
    lines = [
        f"goal 1: QRH full val loss / transformer val loss = {ratio:.4f} "
        f"({'within' if ratio <= 1.05 else 'NOT within'} 5 %)"
    ]
    if long_context:
        speed = base["long_ctx_ms_per_step"] / qrh["long_ctx_ms_per_step"]
        lines.append(
            f"goal 2: at context {long_context} a QRH training step is {speed:.2f}x the transformer's speed "
            f"({'faster' if speed > 1 else 'NOT faster'})"
        )
    return lines


UNITS_NOTE = (
    "val_loss: validation nats per byte, val_bpb: bits per byte (held-out last 10 % of the file); steps, train_s and "
    "cpu_s: steps trained and their summed elapsed and process CPU time; wall_s: the whole run with evaluation; "
    "ms_per_step and cpu_ms_per_step: median training step, elapsed and CPU."
)
NANOGPT_NOTE = (
    "The nanoGPT row is nanoGPT's published figure for its CPU configuration (its README: 'gets us a loss of only "
    "1.88'; 4 layers, 4 heads, width 128, context 64, batch 12, 2,000 steps), not measured here. It is nats per "
    "character of Tiny Shakespeare with a 65-character vocabulary; the file is ASCII, so one character is one byte "
    "and the same last 10 % is held out: the same units as val_loss (nats per byte) here, on the same text (their "
    "model, vocabulary and run differ; see the docs)."
)


def nanogpt_row(columns: list[str]) -> dict:
    """The table row of nanoGPT's published CPU figure, labelled as theirs (every other column blank)."""
    row: dict[str, object] = dict.fromkeys(columns, "")
    row.update(
        variant="nanoGPT, published (theirs, not measured here)",
        val_loss=NANOGPT_CPU_LOSS,
        val_bpb=NANOGPT_CPU_LOSS / math.log(2),
        status="published",
    )
    return row


def samples_markdown(rows: list[dict], prompt: str) -> str:
    """One section per trained model with the text it generated from ``prompt``."""
    parts = [
        f"Samples: {SAMPLE_BYTES} generated bytes after the prompt {prompt!r}, temperature 0.8, top-k 40, seed = --seed."
    ]
    for row in rows:
        if row.get("status") == "ok":
            parts.append(f"### {row['variant']}\n\n```text\n{row['sample']}\n```")
    return "\n\n".join(parts) + "\n"


def run(args: argparse.Namespace) -> list[dict]:
    """Run the study, print the table and write CSV, Markdown and PNGs into ``args.out``."""
    args = resolve_size(args)
    out = Path(args.out)
    base = ByteLMConfig(
        mixer=BASELINE, dim=args.dim, layers=args.layers, max_seq_len=args.seq_len, position=args.position
    )
    train = TrainConfig(
        data=args.data,
        out=str(out),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        ckpt_every=args.steps,
        warmup_steps=args.warmup,
        time_budget=args.time_budget,
        budget_clock=args.budget_clock,
    )
    if args.report_only:
        rows = load_rows(out, args.position)
        write_report(rows, args, out)
        return rows
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    bar = tqdm(desc="ablation", unit="variant", disable=not args.progress)
    out.mkdir(parents=True, exist_ok=True)
    done: list[dict] = []

    def progress(row: dict) -> None:
        done.append(row)
        write_csv(done, COLUMNS, out / "ablation.csv")  # rows so far survive an interrupted study
        bar.update(1)

    rows = run_ablation(
        base,
        train,
        long_ctx=args.long_context,
        only=only,
        heads=args.heads,
        hybrids=args.hybrids,
        rope=args.rope,
        prompt=args.prompt,
        progress=progress,
        same_width=args.same_width,
    )
    bar.close()
    write_csv(rows, COLUMNS, out / "ablation.csv")
    write_report(rows, args, out)
    return rows


def load_rows(out: Path, position: str) -> list[dict]:
    """The rows of a finished or interrupted study in ``out``: its CSV (numbers parsed) plus each run's curve
    (``metrics.jsonl``) and sample; a CSV without a position column gets ``position`` ("rope" for ``-rope`` rows)."""
    path = out / "ablation.csv"
    if not path.is_file():
        raise InvalidArgumentError(f"--report-only needs {path}, which does not exist")
    rows = []
    for raw in csv.DictReader(open(path)):
        row: dict = {k: v if k in TEXT_COLUMNS else _number(v) for k, v in raw.items() if v != ""}
        row.setdefault("position", "rope" if row["variant"].endswith("-rope") else position)
        run = out / row["variant"]
        if row.get("status") == "ok":
            metrics = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines() if line.strip()]
            row["curve"] = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
            row["sample"] = (run / "sample.txt").read_text()
        rows.append(row)
    return rows


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def write_report(rows: list[dict], args: argparse.Namespace, out: Path) -> None:
    """Print the table and write ``ablation.md``, ``samples.md`` and the PNGs of ``rows`` into ``out``."""
    device = torch.device(args.device)
    budget = (
        f"{args.time_budget:g} s ({args.budget_clock} clock) of training per model (steps cap {args.steps})"
        if args.time_budget
        else ""
    )
    title = header(
        device,
        torch.float32 if args.dtype in ("auto", "float32") and device.type == "cpu" else torch.bfloat16,
        f"{budget or f'{args.steps} steps'}, ctx {args.seq_len}, batch {args.batch_size}, {args.layers} layers, "
        f"baseline dim {args.dim}, {args.heads} heads"
        + (", every variant at the baseline's width (MLP matched)" if args.same_width else "")
        + (f", preset {args.preset}" if args.preset else ""),
    )
    shown = [c for c in COLUMNS if c not in ("mixer", "options") and any(c in r for r in rows)]
    table = format_table(rows, shown)
    goals = goal_lines(rows, args.long_context) + goal_report(rows, args.layers, time_budget=args.time_budget)
    shown_rows = rows + [nanogpt_row(shown)] if args.preset == "nanogpt-cpu" else rows
    notes = [UNITS_NOTE] + ([NANOGPT_NOTE] if args.preset == "nanogpt-cpu" else [])
    (out / "ablation.md").write_text(
        "\n\n".join([title, format_markdown(shown_rows, shown), *notes, "\n".join(goals)]) + "\n"
    )
    (out / "samples.md").write_text(samples_markdown(rows, args.prompt))
    _bar_chart(rows, "val_bpb", "validation bits per byte", out / "ablation_val_bpb.png", title)
    time_key, time_label = (
        ("long_ctx_ms_per_step", f"ms per training step at context {args.long_context} (batch 1)")
        if args.long_context
        else ("cpu_ms_per_step", f"CPU ms per training step at context {args.seq_len} (batch {args.batch_size})")
    )
    _bar_chart(rows, time_key, time_label, out / "ablation_step_time.png", title)
    curves = [
        {"step": s, "val_loss": v, "variant": r["variant"]}
        for r in rows
        if r.get("status") == "ok"
        for s, v in r["curve"]
    ]
    if curves:
        plot_lines(
            curves,
            x="step",
            y="val_loss",
            series="variant",
            path=out / "ablation_curves.png",
            title="validation loss (nats/byte)",
            logx=False,
            logy=False,
        )
    print(title)
    print(table)
    print("\n".join(goals))
