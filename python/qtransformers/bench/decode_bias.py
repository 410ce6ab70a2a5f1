"""``qtransformers bench decode-bias``: how fast the self-normalised estimator's bias shrinks with the budget.

One adversarial row: S keys N(0, I) with a query N(0, I), plus 8 "needle" keys along the query
that hold ``--needle-mass`` of the softmax mass; SimHash with ``bits=16, tables=1`` and no sinks
or window, so the needles are almost never candidates and the tail has to find them. The query
is repeated as ``--trials`` rows of one call: each row reads its own random stream (keyed by its
position), so the draws are independent given the (shared) hyperplanes. For each tail budget n the
suite reports the relative bias along the true output, ⟨mean(Õ) − O, O⟩ / ‖O‖², with its standard
error over the trials, and the mean relative error ‖Õ − O‖ / ‖O‖ for scale.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from qtransformers.bench.report import format_markdown, format_table, plot_lines, write_csv
from qtransformers.functional.lsh import lsh_attention

COLUMNS = ["S", "n", "bias", "bias_se", "mean_rel_error", "n_times_bias"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the bias suite."""
    parser.add_argument("--size", type=int, default=4096, help="keys S (default 4096)")
    parser.add_argument("--dim", type=int, default=64, help="head width E (default 64)")
    parser.add_argument("--budgets", default="4,8,16,32,64,128,256,512,1024", help="tail budgets n")
    parser.add_argument("--trials", type=int, default=4000, help="independent draws per budget (default 4000)")
    parser.add_argument("--needle-mass", type=float, default=0.5, help="softmax mass of the needles (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="S = 512, budgets 4,64, 4000 trials")
    parser.add_argument("--out", default="qtransformers-bench/decode-bias", help="output folder")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="(no progress bar here)")


def adversarial_row(size: int, dim: int, needle_mass: float, gen: torch.Generator):
    """q (1, 1, 1, E), k (1, 1, S, E), v (1, 1, S, E): 8 needles along q hold ``needle_mass`` of the mass."""
    scale = 1.0 / math.sqrt(dim)
    k = torch.randn(1, 1, size, dim, generator=gen)
    v = torch.randn(1, 1, size, dim, generator=gen)
    q = torch.randn(1, 1, 1, dim, generator=gen)
    rest = torch.logsumexp((k @ q.transpose(-2, -1)).flatten() * scale, 0)
    logit = rest + math.log(needle_mass / (1 - needle_mass) / 8)
    slots = torch.randperm(size, generator=gen)[:8]
    k[0, 0, slots] = q[0, 0, 0] / q.norm() * (logit / (scale * q.norm()))
    return q, k, v


def bias_rows(size: int, dim: int, budgets: list[int], trials: int, needle_mass: float, seed: int) -> list[dict]:
    """One row of :data:`COLUMNS` per budget."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = adversarial_row(size, dim, needle_mass, gen)
    exact = F.scaled_dot_product_attention(q, k, v).double().flatten()
    norm = exact.norm()
    qs = q.expand(1, 1, trials, dim).contiguous()
    rows = []
    for n in budgets:
        est = lsh_attention(
            qs, k, v, budget=n, bits=16, tables=1, sinks=0, window=0, generator=torch.Generator().manual_seed(seed)
        )
        est = est.double().reshape(trials, dim)
        along = (est - exact) @ exact / norm**2  # (trials,) relative error along O
        bias = float(along.mean())
        rows.append(
            {
                "S": size,
                "n": n,
                "bias": bias,
                "bias_se": float(along.std() / math.sqrt(trials)),
                "mean_rel_error": float(((est - exact).norm(dim=-1) / norm).mean()),
                "abs_bias": abs(bias),
                "n_times_bias": n * bias,
            }
        )
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite; print and write results.csv, results.md and bias.png into ``args.out``."""
    if args.quick:
        args.size, args.budgets, args.trials = 512, "4,64", 4000
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    with torch.no_grad():
        rows = bias_rows(args.size, args.dim, budgets, args.trials, args.needle_mass, args.seed)
    out = Path(args.out)
    write_csv(rows, COLUMNS, out / "results.csv")
    plot_lines(
        rows, x="n", y="abs_bias", series="S", path=out / "bias.png", title="relative bias of the ratio estimator"
    )
    header = (
        f"# decode-bias, cpu ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}); "
        f"S={args.size}, E={args.dim}, trials={args.trials}, needle mass={args.needle_mass}, seed={args.seed}"
    )
    print(header)
    print(format_table(rows, COLUMNS))
    (out / "results.md").write_text(f"{header}\n\n{format_markdown(rows, COLUMNS)}\n")
    return rows
