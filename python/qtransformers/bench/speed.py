"""``qtransformers bench`` (suite ``speed``): forward and forward+backward time and memory.

Every case of :mod:`qtransformers.bench.cases` runs on the same synthetic input, in one process, on
one device and dtype. For each length and mode, after one untimed warm-up round, every timed round
calls each case once in turn (the order rotated from round to round; elapsed time, synchronised on
CUDA), so a shared machine's slow drifts fall on all cases alike. Each row reports its median time
and its ratio to the SDPA reference: the median over rounds of case time / reference time in the same
round, with a 0.95 distribution-free interval of that median (order statistics,
:func:`qtransformers.bench.timing.median_interval`; from 6 rounds on). Peak memory is measured on one
further call of each case alone.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from qtransformers.bench import common
from qtransformers.bench.cases import FORWARD_ONLY, REFERENCE, available_cases, make_input, select_cases
from qtransformers.bench.report import format_table, plot_lines, write_csv
from qtransformers.bench.timing import MIN_ROUNDS, interleaved_times, median_interval, median_ms, peak_memory_bytes

COLUMNS = ["impl", "mode", "N", "rounds", "median_ms", "peak_mem_MiB", "ratio_to_sdpa", "ratio_low", "ratio_high"]
CONFIDENCE = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the speed suite."""
    common.add_common_arguments(parser, default_lengths="128,256,512,1024", quick_lengths="64,128,256", repeats=(7, 9))
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--dim", type=int, default=128, help="model width D (default 128; 64 with --quick)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--non-causal", action="store_true", help="time non-causal variants instead")
    parser.add_argument("--only", default=None, help="comma-separated case names to run (default all)")


def step_function(module, x: torch.Tensor, mode: str) -> Callable[[], None]:
    """One call of ``module`` on ``x`` (B, T, D): forward without grad (``fwd``) or forward+backward (``fwd+bwd``)."""
    xg = x.detach().requires_grad_(True)

    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module(xg).float().square().mean().backward()

    return forward if mode == "fwd" else forward_backward


def time_case(module, x: torch.Tensor, mode: str, repeats: int) -> tuple[float, int]:
    """(median ms, median peak bytes) over ``repeats`` calls each of forward (no grad) or forward+backward of
    ``module`` on ``x``, timed alone (the peaks in calls of their own, after the timed ones)."""
    step = step_function(module, x, mode)
    ms = median_ms(step, x.device, warmup=1, repeats=repeats)
    return ms, peak_memory_bytes(step, x.device, calls=repeats)


def paired_ratio(times: list[float], reference: list[float]) -> tuple[float, float, float]:
    """(median, low, high) of the per-round ratios ``times[r] / reference[r]``; NaN bounds below 6 rounds."""
    ratios = [t / r for t, r in zip(times, reference)]
    if len(ratios) < MIN_ROUNDS:
        return statistics.median(ratios), math.nan, math.nan
    ratio, low, high, _ = median_interval(ratios, CONFIDENCE)
    return ratio, low, high


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite and write its outputs into ``args.out``; returns the rows."""
    device, dtype, lengths = common.resolve(args)
    dim = 64 if args.quick and args.dim == 128 else args.dim
    causal = not args.non_causal
    cases = select_cases(available_cases(causal=causal), args.only)
    rows = []
    groups = [(n, mode) for n in lengths for mode in ("fwd", "fwd+bwd")]
    torch.manual_seed(0)
    for n, mode in tqdm(groups, desc="bench", disable=not args.progress):
        x = make_input(args.batch, n, dim, device, dtype)
        names = [name for name in cases if mode == "fwd" or name not in FORWARD_ONLY]
        steps = {name: step_function(cases[name](dim, args.heads, device, dtype, n), x, mode) for name in names}
        times = interleaved_times(steps, args.repeats, device, cpu_time=False)
        for name in names:
            ratio = paired_ratio(times[name], times[REFERENCE]) if REFERENCE in times else (math.nan,) * 3
            rows.append(
                {
                    "impl": name,
                    "mode": mode,
                    "N": n,
                    "rounds": args.repeats,
                    "median_ms": statistics.median(times[name]),
                    "peak_mem_MiB": peak_memory_bytes(steps[name], device) / 2**20,
                    **dict(zip(("ratio_to_sdpa", "ratio_low", "ratio_high"), ratio)),
                }
            )
        del steps
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
    print(
        f"ratio_to_sdpa: median over {args.repeats} interleaved rounds of time / SDPA time in the same round"
        + (f"; ratio_low, ratio_high: its {CONFIDENCE:g} interval" if args.repeats >= MIN_ROUNDS else "")
    )
    print(f"wrote {out / 'results.csv'} and {out / 'time.png'}")
    return rows
