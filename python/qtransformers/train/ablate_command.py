"""``qtransformers ablate``: the ΨQRH ablation and every causal mixer at an equal parameter budget.

Writes ``ablation.csv``, ``ablation.md`` (the table), ``ablation_val_bpb.png``,
``ablation_curves.png`` and ``ablation_step_time.png`` into ``--out``, one run folder per variant.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qtransformers.bench.common import header
from qtransformers.bench.report import format_markdown, format_table, plot_lines, write_csv
from qtransformers.models import ByteLMConfig
from qtransformers.train.ablation import BASELINE, COLUMNS, run_ablation, variants
from qtransformers.train.train_command import add_model_arguments
from qtransformers.train.trainer import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qtransformers ablate``."""
    parser.add_argument("--data", required=True, help="any text file (read as raw bytes)")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps per variant")
    parser.add_argument("--out", required=True, help="output folder")
    add_model_arguments(parser)
    parser.add_argument("--eval-every", type=int, default=None, help="validation interval (default steps/5)")
    parser.add_argument("--long-context", type=int, default=1024, help="context of the step-time column (0: skip)")
    parser.add_argument("--heads", type=int, default=4, help="num_heads of every mixer that has heads (default 4)")
    parser.add_argument("--only", default=None, help="comma-separated mixer or variant names to run (default all)")
    parser.add_argument(
        "--hybrids",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="extra variants, one per mixer pattern (e.g. qrh,qrh,qrh,attention hyena+quantum)",
    )


def _bar_chart(rows: list[dict], key: str, ylabel: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "ok" and not math.isnan(r.get(key, math.nan))]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(done)), 4.5))
    ax.bar([r["variant"] for r in done], [r[key] for r in done], color="tab:blue")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
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


def run(args: argparse.Namespace) -> list[dict]:
    """Run the study, print the table and write CSV, Markdown and PNGs into ``args.out``."""
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
    )
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    bar = tqdm(desc="ablation", unit="variant", disable=not args.progress)
    rows = run_ablation(
        base,
        train,
        long_ctx=args.long_context,
        only=only,
        heads=args.heads,
        hybrids=args.hybrids,
        progress=lambda row: bar.update(1),
    )
    bar.close()
    device = torch.device(args.device)
    title = header(
        device,
        torch.float32 if args.dtype in ("auto", "float32") and device.type == "cpu" else torch.bfloat16,
        f"{args.steps} steps, ctx {args.seq_len}, batch {args.batch_size}, {args.layers} layers, "
        f"baseline dim {args.dim}, {args.heads} heads",
    )
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, COLUMNS, out / "ablation.csv")
    shown = [c for c in COLUMNS if c not in ("mixer", "options")]
    table = format_table(rows, shown)
    goals = goal_lines(rows, args.long_context)
    (out / "ablation.md").write_text(title + "\n\n" + format_markdown(rows, shown) + "\n\n" + "\n".join(goals) + "\n")
    _bar_chart(rows, "val_bpb", "validation bits per byte", out / "ablation_val_bpb.png", title)
    _bar_chart(
        rows,
        "long_ctx_ms_per_step",
        f"ms per training step at context {args.long_context}",
        out / "ablation_step_time.png",
        title,
    )
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
    return rows
