"""``qtransformers bench attention-error``: relative error and time of sampled attention and baselines.

For each regime, length N and budget m (shots per row, or features/landmarks/projection rank for
the baselines) it reports ‖Õ − O‖_F / ‖O‖_F against exact float32 attention (mean over batch,
heads and seeds), the wall time and peak memory of one call (``qtransformers.profile``), the
error ratio to naive sampling, and the estimator's classical side information as a fraction of
exact attention's multiply-adds. "+cv" is the block control variate, "+favor-cv" the FAVOR+ one. Regimes: (a) Gaussian q, k, v (non-causal); (b) q, k, v of a
small causal byte-level transformer trained on ``--data`` (captured once and cached in
``--capture``; causal, as in the model). Nyström and Linformer cannot be causal, so they have
no regime (b) numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qtransformers.bench import common
from qtransformers.bench.capture import load_or_capture
from qtransformers.bench.report import format_markdown, format_table, plot_lines, write_csv
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.approximate import linformer_attention, nystrom_attention, performer_attention
from qtransformers.functional.attention import exact_attention
from qtransformers.functional.metrics import relative_errors
from qtransformers.functional.quantum import quantum_attention, side_information_cost
from qtransformers.profile import profile

COLUMNS = ["regime", "N", "m", "impl", "rel_err", "ratio_to_naive", "side_info_frac", "ms", "peak_MiB"]

SAMPLED = {
    "naive": dict(backend="naive"),
    "stratified": dict(backend="stratified"),
    "hybrid": dict(backend="hybrid"),
    "stratified+adaptive": dict(backend="stratified", adaptive=True),
    "naive+cv": dict(backend="naive", control_variate=True),
    "stratified+cv": dict(backend="stratified", control_variate=True),
    "stratified+adaptive+cv": dict(backend="stratified", adaptive=True, control_variate=True),
    "stratified+favor-cv": dict(backend="stratified", control_variate=True, cv_kind="favor"),
}
BASELINES = {
    "performer": (performer_attention, "num_features", True),
    "nystrom": (nystrom_attention, "num_landmarks", False),
    "linformer": (linformer_attention, "proj_dim", False),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the attention-error suite."""
    common.add_common_arguments(parser, default_lengths="256,1024,4096", quick_lengths="256")
    parser.add_argument("--budgets", default=None, help="comma-separated m (default 8,16,32,64,128; --quick 8,32)")
    parser.add_argument("--regimes", default="gaussian,trained", help="gaussian and/or trained (default both)")
    parser.add_argument("--data", default=None, help="text file to train the regime-(b) model on")
    parser.add_argument("--capture", default=None, help="q/k/v capture file (default OUT/capture.safetensors)")
    parser.add_argument("--train-seconds", type=float, default=240.0, help="training budget of the capture model")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per sampled/random estimator (default 2)")
    parser.add_argument("--impls", default=None, help="comma-separated implementations (default all)")


def _gaussian(length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + length)
    return tuple(torch.randn(1, 4, length, 64, generator=g) for _ in range(3))


def _run_impl(name: str, q, k, v, causal: bool, m: int, gen: torch.Generator) -> torch.Tensor:
    if name in SAMPLED:
        return quantum_attention(q, k, v, is_causal=causal, num_samples=m, generator=gen, **SAMPLED[name])
    fn, size, _ = BASELINES[name]
    return fn(q, k, v, is_causal=causal, generator=gen, **{size: m})


def _side_fraction(name: str, n: int, m: int) -> float:
    if name not in SAMPLED:
        return float("nan")
    cfg = SAMPLED[name]
    cost = side_information_cost(n, n, 64, 64, num_samples=m, control_variate=cfg.get("control_variate", False),
                                 backend=cfg["backend"], cv_kind=cfg.get("cv_kind", "block"))
    return cost["side_information_macs"] / cost["exact_macs"]


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite, print the table and write results.csv, results.md and error.png into ``args.out``."""
    device, dtype, lengths = common.resolve(args)
    budgets = [int(b) for b in (args.budgets or ("8,32" if args.quick else "8,16,32,64,128")).split(",")]
    regimes = [r.strip() for r in args.regimes.split(",") if r.strip()]
    unknown = set(regimes) - {"gaussian", "trained"}
    if unknown:
        raise InvalidArgumentError(f"unknown regime(s) {sorted(unknown)}; use gaussian and/or trained")
    impls = list(SAMPLED) + list(BASELINES)
    if args.impls:
        impls = [i.strip() for i in args.impls.split(",")]
        bad = sorted(set(impls) - set(SAMPLED) - set(BASELINES))
        if bad:
            raise InvalidArgumentError(f"unknown impl(s) {bad}; available: {list(SAMPLED) + list(BASELINES)}")
    out = Path(args.out)
    captured = None
    if "trained" in regimes:
        capture = Path(args.capture) if args.capture else out / "capture.safetensors"
        captured = load_or_capture(args.data, capture, length=max(lengths), train_seconds=args.train_seconds)
    rows: list[dict] = []
    jobs = [(r, n, m, name) for r in regimes for n in lengths for m in budgets for name in impls]
    cache: dict[tuple[str, int], tuple] = {}
    for regime, n, m, name in tqdm(jobs, desc="attention-error", disable=not args.progress):
        if (regime, n) not in cache:
            q, k, v = _gaussian(n) if regime == "gaussian" else (captured[x][:, :, :n] for x in "qkv")
            q, k, v = (t.to(device=device, dtype=dtype) for t in (q, k, v))
            causal = regime == "trained"
            cache.clear()
            cache[(regime, n)] = (q, k, v, causal, exact_attention(q, k, v, is_causal=causal)[0])
        q, k, v, causal, exact = cache[(regime, n)]
        row = {"regime": regime, "N": n, "m": m, "impl": name, "side_info_frac": _side_fraction(name, n, m)}
        if name in BASELINES and causal and not BASELINES[name][2]:
            rows.append({**row, "rel_err": float("nan"), "ms": float("nan"), "peak_MiB": float("nan")})
            continue
        errors = []
        for seed in range(args.seeds):
            gen = torch.Generator(device=device).manual_seed(seed)
            with profile(device) as prof:
                approx = _run_impl(name, q, k, v, causal, m, gen)
            if seed == 0:
                row["ms"], row["peak_MiB"] = prof.result.seconds * 1e3, prof.result.peak_bytes / 2**20
            errors.append(relative_errors(approx.float(), exact.float()).mean())
        row["rel_err"] = float(torch.stack(errors).mean())
        rows.append(row)
    for row in rows:
        naive = next((r for r in rows if r["impl"] == "naive" and r["regime"] == row["regime"]
                      and r["N"] == row["N"] and r["m"] == row["m"]), None)
        row["ratio_to_naive"] = row["rel_err"] / naive["rel_err"] if naive else float("nan")
    write_csv(rows, COLUMNS, out / "results.csv")
    (out / "results.md").write_text(format_markdown(rows, COLUMNS) + "\n")
    for regime in regimes:
        subset = [r for r in rows if r["regime"] == regime]
        plot_lines(subset, x="m", y="rel_err", series="impl", panels="N", path=out / f"error-{regime}.png",
                   title=f"relative error, {regime}")
    print(common.header(device, dtype, f"E=64, seeds={args.seeds}, regimes={','.join(regimes)}"))
    print(format_table(rows, COLUMNS))
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'} and error-<regime>.png")
    return rows
