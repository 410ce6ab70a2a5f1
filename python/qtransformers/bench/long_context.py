"""``qtransformers bench long-context``: time and memory of every mixer as the sequence grows.

For N = 256, 512, ... (doubling) it times forward (no grad) and forward+backward of every
registered mixer, nn.MultiheadAttention and the SDPA "attention" mixer (the reference of
every ratio), plus ``qrh-torchfft`` (the qrh mixer with its causal convolution on torch.fft
instead of the Rust core, to decide the CPU default) and ``spectral-torchfft`` (the spectral mixer's
bands as FFT convolutions on torch.fft instead of the Rust core's recurrence). Same input, device, dtype, warm-up and
median in one process. A case stops growing once one step exceeds ``--max-seconds`` or runs
out of memory ("while memory allows"). Outputs: results.csv, slopes.csv (least-squares
log-log slopes of time and peak memory against N over N >= --slope-from), time.png, memory.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qtransformers import mixers
from qtransformers.bench import common
from qtransformers.bench.cases import REFERENCE, available_cases, make_input, select_cases
from qtransformers.bench.report import format_markdown, format_table, loglog_slope, plot_lines, write_csv
from qtransformers.bench.speed import time_case

COLUMNS = ["impl", "mode", "N", "median_ms", "peak_mem_MiB", "ratio_to_sdpa"]
SLOPE_COLUMNS = ["impl", "mode", "time_slope", "mem_slope", "points"]
TORCH_FFT_CASES = {"qrh-torchfft": "qrh", "spectral-torchfft": "spectral"}
"""Extra cases: a mixer on ``backend="torch"`` (torch.fft) instead of its CPU default, the Rust core."""
MHA_CASE = "nn.MultiheadAttention"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the long-context suite."""
    common.add_common_arguments(parser, default_lengths="256,512,1024,2048,4096,8192,16384", quick_lengths="64,128,256")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--dim", type=int, default=512, help="model width D (default 512; 64 with --quick)")
    parser.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    parser.add_argument("--non-causal", action="store_true", help="time non-causal variants instead")
    parser.add_argument("--only", default=None, help="comma-separated case names (default: all mixers + MHA)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="stop growing N for a case once one step takes longer (default 60)",
    )
    parser.add_argument(
        "--mha-max-n",
        type=int,
        default=8192,
        help="largest N for nn.MultiheadAttention, whose float causal mask and (on CPU) "
        "attention weights are N x N (default 8192)",
    )
    parser.add_argument("--slope-from", type=int, default=1024, help="fit slopes over N >= this (default 1024)")


def cases_for(causal: bool) -> dict:
    """Mixers, nn.MultiheadAttention and the torch.fft variants of :data:`TORCH_FFT_CASES` (name -> factory)."""
    every = available_cases(causal=causal)
    cases = {name: f for name, f in every.items() if not name.startswith("qmha-")}

    def on_torch_fft(mixer: str):
        def build(dim, num_heads, device, dtype, length):
            options = {"max_len": length} if mixer == "qrh" else {}
            return mixers.build(mixer, dim, causal=causal, backend="torch", **options).to(device=device, dtype=dtype)

        return build

    for case, mixer in TORCH_FFT_CASES.items():
        if mixer in cases:
            cases[case] = on_torch_fft(mixer)
    return cases


def slopes(rows: list[dict], slope_from: int) -> list[dict]:
    """Log-log slope of time and memory against N per (impl, mode), over N >= slope_from."""
    out = []
    for key in sorted({(r["impl"], r["mode"]) for r in rows}):
        pts = sorted(
            (r["N"], r["median_ms"], r["peak_mem_MiB"])
            for r in rows
            if (r["impl"], r["mode"]) == key and r["N"] >= slope_from
        )
        ns = [p[0] for p in pts]
        out.append(
            {
                "impl": key[0],
                "mode": key[1],
                "time_slope": loglog_slope(ns, [p[1] for p in pts]),
                "mem_slope": loglog_slope(ns, [p[2] for p in pts]),
                "points": len(pts),
            }
        )
    return out


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite and write its outputs into ``args.out``; returns the rows."""
    device, dtype, lengths = common.resolve(args)
    dim = 64 if args.quick and args.dim == 512 else args.dim
    causal = not args.non_causal
    cases = select_cases(cases_for(causal), args.only)
    stopped: dict[str, str] = {}
    rows = []
    jobs = [(n, name, mode) for n in sorted(lengths) for name in cases for mode in ("fwd", "fwd+bwd")]
    torch.manual_seed(0)
    for n, name, mode in tqdm(jobs, desc="long-context", disable=not args.progress):
        if name in stopped or (name == MHA_CASE and n > args.mha_max_n):
            continue
        try:
            module = cases[name](dim, args.heads, device, dtype, n)
            x = make_input(args.batch, n, dim, device, dtype)
            ms, peak = time_case(module, x, mode, args.repeats)
            del module, x
        except (RuntimeError, MemoryError) as err:
            if "memory" not in str(err).lower():
                raise
            stopped[name] = f"stopped at N={n} ({mode}): out of memory"
            continue
        rows.append({"impl": name, "mode": mode, "N": n, "median_ms": ms, "peak_mem_MiB": peak / 2**20})
        if ms / 1e3 > args.max_seconds:
            stopped[name] = f"stopped after N={n} ({mode}): one step took {ms / 1e3:.1f}s > --max-seconds"
    for row in rows:
        ref = next(
            (r for r in rows if r["impl"] == REFERENCE and r["N"] == row["N"] and r["mode"] == row["mode"]), None
        )
        row["ratio_to_sdpa"] = row["median_ms"] / ref["median_ms"] if ref else float("nan")
    slope_from = args.slope_from if sum(n >= args.slope_from for n in lengths) >= 2 else min(lengths)
    fits = slopes(rows, slope_from)
    out = Path(args.out)
    write_csv(rows, COLUMNS, out / "results.csv")
    write_csv(fits, SLOPE_COLUMNS, out / "slopes.csv")
    where = f"{device.type}, {common.dtype_name(dtype)}, D={dim}, causal={causal}"
    plot_lines(rows, x="N", y="median_ms", series="impl", panels="mode", path=out / "time.png", title=f"time ({where})")
    plot_lines(
        rows,
        x="N",
        y="peak_mem_MiB",
        series="impl",
        panels="mode",
        path=out / "memory.png",
        title=f"peak memory ({where})",
    )
    print(common.header(device, dtype, f"B={args.batch} D={dim} heads={args.heads} causal={causal}"))
    print(format_table(rows, COLUMNS))
    print(f"\nlog-log slopes over N >= {slope_from}:")
    print(format_table(fits, SLOPE_COLUMNS))
    for name, why in stopped.items():
        print(f"{name}: {why}")
    print("\n" + format_markdown(rows, COLUMNS))
    print("\n" + format_markdown(fits, SLOPE_COLUMNS))
    print(f"wrote {out / 'results.csv'}, {out / 'slopes.csv'}, {out / 'time.png'} and {out / 'memory.png'}")
    return rows
