"""``qtransformers bench`` (suite ``speed``): forward and forward+backward time and memory.

Every case of :mod:`qtransformers.bench.cases` runs on the same synthetic input, in one
process, on one device and dtype, with warm-up and the median of several runs; each row
reports its ratio to the SDPA reference at the same length and mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qtransformers.bench import common
from qtransformers.bench.cases import FORWARD_ONLY, REFERENCE, available_cases, make_input, select_cases
from qtransformers.bench.report import format_table, plot_lines, write_csv
from qtransformers.bench.timing import median_ms, peak_memory_bytes

COLUMNS = ["impl", "mode", "N", "median_ms", "peak_mem_MiB", "ratio_to_sdpa"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the speed suite."""
    common.add_common_arguments(parser, default_lengths="128,256,512,1024", quick_lengths="64,128,256")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--dim", type=int, default=128, help="model width D (default 128; 64 with --quick)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--non-causal", action="store_true", help="time non-causal variants instead")
    parser.add_argument("--only", default=None, help="comma-separated case names to run (default all)")


def time_case(module, x: torch.Tensor, mode: str, repeats: int) -> tuple[float, int]:
    """(median ms, peak bytes) of forward (no grad) or forward+backward of ``module`` on ``x``."""
    device = x.device
    if mode == "fwd":

        def step():
            with torch.no_grad():
                module(x)

    else:
        xg = x.detach().requires_grad_(True)

        def step():
            module(xg).float().square().mean().backward()

    ms = median_ms(step, device, warmup=1, repeats=repeats)
    return ms, peak_memory_bytes(step, device)


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite and write its outputs into ``args.out``; returns the rows."""
    device, dtype, lengths = common.resolve(args)
    dim = 64 if args.quick and args.dim == 128 else args.dim
    causal = not args.non_causal
    cases = select_cases(available_cases(causal=causal), args.only)
    rows = []
    modes = ("fwd", "fwd+bwd")
    jobs = [
        (n, name, mode)
        for n in lengths
        for name in cases
        for mode in modes
        if not (mode != "fwd" and name in FORWARD_ONLY)
    ]
    torch.manual_seed(0)
    for n, name, mode in tqdm(jobs, desc="bench", disable=not args.progress):
        module = cases[name](dim, args.heads, device, dtype, n)
        x = make_input(args.batch, n, dim, device, dtype)
        ms, peak = time_case(module, x, mode, args.repeats)
        rows.append({"impl": name, "mode": mode, "N": n, "median_ms": ms, "peak_mem_MiB": peak / 2**20})
    for row in rows:
        ref = next(
            (r for r in rows if r["impl"] == REFERENCE and r["N"] == row["N"] and r["mode"] == row["mode"]), None
        )
        row["ratio_to_sdpa"] = row["median_ms"] / ref["median_ms"] if ref else float("nan")
    out = Path(args.out)
    write_csv(rows, COLUMNS, out / "results.csv")
    plot_lines(
        rows,
        x="N",
        y="median_ms",
        series="impl",
        panels="mode",
        path=out / "time.png",
        title=f"time ({device.type}, {common.dtype_name(dtype)}, D={dim})",
    )
    print(common.header(device, dtype, f"B={args.batch} D={dim} heads={args.heads} causal={causal}"))
    print(format_table(rows, COLUMNS))
    print(f"wrote {out / 'results.csv'} and {out / 'time.png'}")
    return rows
