"""``qtransformers bench decode``: per-token decode latency of SampledKVCache.attend against SDPA.

For each cache kind and size S (B = 1, ``--heads`` heads of width ``--dim``, one query per
head), the same keys and values go into a :class:`qtransformers.attention.SampledKVCache` and
into torch tensors; each timed call is one decode step: ``cache.attend(q)`` against
``F.scaled_dot_product_attention(q, K, V)`` on the same cache, in one process, after a warm-up,
the median over ``--repeats`` rounds of all queries. Also reported: the Rust exact path
(``attend(q, exact=True)``), the relative output error ‖Õ - O‖_F / ‖O‖_F against SDPA (mean over
queries), keys scored as a fraction of S, the estimated error from the CLT bound, hashes per
token and the multiply-add fraction from :func:`side_information_cost`. Hashes per token count
the query's codes and the new key's codes (2·tables); appending is timed by the criterion bench.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qtransformers.attention import SampledKVCache
from qtransformers.bench import decode_caches
from qtransformers.bench.report import format_markdown, format_table, plot_lines, write_csv
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.cost import side_information_cost
from qtransformers.functional.metrics import relative_error

KINDS = ("trained", "clustered", "needle")
COLUMNS = [
    "kind",
    "S",
    "sdpa_ms",
    "lsh_ms",
    "exact_rust_ms",
    "speedup",
    "rel_error",
    "est_rel_error",
    "scored_frac",
    "hashes_per_token",
    "mac_frac",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the decode suite."""
    parser.add_argument("--sizes", default=None, help="cache sizes S (default 4096,16384,65536,131072)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"cache kinds (default {','.join(KINDS)})")
    parser.add_argument("--quick", action="store_true", help="small run: S = 1024,2048, 2 s of training, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7; 3 with --quick)")
    parser.add_argument("--queries", type=int, default=4, help="decode queries per head (default 4)")
    parser.add_argument("--heads", type=int, default=8, help="heads (default 8)")
    parser.add_argument("--dim", type=int, default=64, help="head width E (default 64)")
    parser.add_argument("--budget", type=int, default=512, help="tail draws per row (default 512)")
    parser.add_argument("--epsilon", type=float, default=None, help="use the (epsilon, delta) mode instead")
    parser.add_argument("--delta", type=float, default=0.05, help="failure probability of the bound (default 0.05)")
    parser.add_argument("--bits", type=int, default=12, help="SimHash bits per table (default 12)")
    parser.add_argument("--tables", type=int, default=16, help="SimHash tables (default 16)")
    parser.add_argument("--sinks", type=int, default=4, help="attention sinks (default 4)")
    parser.add_argument("--window", type=int, default=16, help="local window (default 16)")
    parser.add_argument("--data", default=None, help="text file the trained kind trains on (e.g. Tiny Shakespeare)")
    parser.add_argument("--train-seconds", type=float, default=None, help="training time (default 180; 2 quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the caches and the estimator (default 0)")
    parser.add_argument("--out", default="qtransformers-bench/decode", help="output folder")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def _median_ms(fn, queries, repeats: int) -> float:
    for q in queries:  # warm-up
        fn(q)
    times = []
    for _ in range(repeats):
        for q in queries:
            t0 = time.perf_counter()
            fn(q)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _measure(kind: str, k, v, queries, args) -> dict:
    cache = SampledKVCache(
        args.heads,
        args.dim,
        seed=args.seed,
        budget=args.budget,
        epsilon=args.epsilon,
        delta=args.delta,
        bits=args.bits,
        tables=args.tables,
        sinks=args.sinks,
        window=args.window,
    )
    cache.append(k, v)
    cache.attend(queries[0])  # bills the bulk key hashes once; steady-state calls follow
    sdpa_ms = _median_ms(lambda q: F.scaled_dot_product_attention(q, k, v), queries, args.repeats)
    lsh_ms = _median_ms(lambda q: cache.attend(q), queries, args.repeats)
    exact_ms = _median_ms(lambda q: cache.attend(q, exact=True), queries, args.repeats)
    errors, estimates, scored = [], [], []
    for q in queries:
        exact = F.scaled_dot_product_attention(q, k, v)
        errors.append(relative_error(cache.attend(q), exact))
        estimates.append(float(cache.stats["rel_error"].nan_to_num(nan=float("inf")).mean()))
        scored.append(float(cache.stats["keys_scored"].double().mean()))
    size = k.size(2)
    mean_scored = statistics.fmean(scored)
    cost = side_information_cost(
        1,
        size,
        args.dim,
        args.dim,
        backend="lsh",
        keys_scored=mean_scored,
        hashes=2 * args.tables,
        hash_bits=args.bits,
    )
    return {
        "kind": kind,
        "S": size,
        "sdpa_ms": sdpa_ms,
        "lsh_ms": lsh_ms,
        "exact_rust_ms": exact_ms,
        "speedup": sdpa_ms / lsh_ms,
        "rel_error": statistics.fmean(float(e) for e in errors),
        "est_rel_error": statistics.fmean(estimates),
        "scored_frac": mean_scored / size,
        "hashes_per_token": 2 * args.tables,
        "mac_frac": cost["fraction"],
    }


def _caches(kinds, sizes, args):
    """Yield (kind, k, v, queries) for every kind and size; the trained model is trained once."""
    gen = torch.Generator().manual_seed(args.seed)
    model = None
    for kind in kinds:
        for size in sizes:
            if kind == "trained":
                if model is None:
                    model, args.train_loss = decode_caches.train_decode_model(args.data, args.train_seconds)
                k, v, q = decode_caches.trained(model, args.data, size, args.queries)
            else:
                make = decode_caches.clustered if kind == "clustered" else decode_caches.needle
                k, v, q = make(size, args.heads, args.dim, args.queries, gen)
            yield kind, k, v, list(q)


def plot(rows: list[dict], out: Path) -> None:
    """time.png (SDPA and SampledKVCache ms/token against S, one panel per kind) and error.png."""
    timed = [
        {"kind": r["kind"], "S": r["S"], "path": path, "ms": float(r[column])}
        for r in rows
        for path, column in (("SDPA", "sdpa_ms"), ("SampledKVCache", "lsh_ms"))
    ]
    plot_lines(timed, x="S", y="ms", series="path", panels="kind", path=out / "time.png", title="ms per decode token")
    plot_lines(rows, x="S", y="rel_error", series="kind", path=out / "error.png", title="relative error vs SDPA")


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite; print the table and write results.csv, results.md, time.png and error.png into ``args.out``."""
    sizes_text = args.sizes or ("1024,2048" if args.quick else "4096,16384,65536,131072")
    try:
        sizes = [int(s) for s in sizes_text.split(",") if s.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--sizes must be comma-separated integers, got {sizes_text!r}") from None
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not sizes or min(sizes) < 1 or set(kinds) - set(KINDS) or not kinds:
        raise InvalidArgumentError(f"bad --sizes {sizes_text!r} or --kinds {args.kinds!r} (kinds: {KINDS})")
    if "trained" in kinds and (args.heads != 8 or args.dim != 64 or args.data is None):
        raise InvalidArgumentError(
            "the trained kind needs --data FILE and has 8 heads of width 64 (--heads 8 --dim 64)"
        )
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.train_seconds = args.train_seconds if args.train_seconds is not None else (2.0 if args.quick else 180.0)
    args.train_loss = float("nan")
    rows = []
    total = len(kinds) * len(sizes)
    for kind, k, v, queries in tqdm(_caches(kinds, sizes, args), total=total, disable=not args.progress):
        with torch.no_grad():
            rows.append(_measure(kind, k, v, queries, args))
        del k, v
    out = Path(args.out)
    write_csv(rows, COLUMNS, out / "results.csv")
    plot(rows, out)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    setting = (
        f"B=1, heads={args.heads}, E={args.dim}, budget={args.budget}, epsilon={args.epsilon}, delta={args.delta}, "
        f"bits={args.bits}, tables={args.tables}, sinks={args.sinks}, window={args.window}, repeats={args.repeats}, "
        f"queries={args.queries}, seed={args.seed}"
    )
    if "trained" in kinds:
        setting += f", trained for {args.train_seconds:g} s (last loss {args.train_loss:.3f} nats/byte)"
    header = f"# decode, cpu ({machine}); load average {load:.2f}; {setting}"
    print(header)
    print(format_table(rows, COLUMNS))
    table = format_markdown(rows, COLUMNS)
    print("\n" + table)
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'}, {out / 'time.png'} and {out / 'error.png'}")
    return rows
