"""``qtransformers bench attention-error``: relative error and time of sampled attention and baselines.

For each regime, length N and budget m (shots per row, or features/landmarks/projection rank for
the baselines) it reports ‖Õ − O‖_F / ‖O‖_F against exact float32 attention (mean over batch,
heads and seeds), the wall time and peak memory of one call (``qtransformers.profile``), the
error ratio to naive sampling, and the estimator's classical side information as a fraction of
exact attention's multiply-adds. "+cv" is the block control variate, "+favor-cv" the FAVOR+ one. Regimes: (a) Gaussian q, k, v (non-causal); (b) q, k, v of a
small causal byte-level transformer trained on ``--data`` (captured once and cached in
``--capture``; causal, as in the model). An estimator that refuses causal inputs with a typed
error (Nyström, Linformer, the public peers here, and the designs that couple rows: adaptive
allocation and the FAVOR+ control variate) has no regime (b) number. ``--q-scale τ`` multiplies the regime-(a) queries (sharper softmax).

When performer-pytorch, nystrom-attention or linformer are installed, their own modules run on
the same q, k, v as rows of their own (``performer-pytorch``, ``nystrom-attention``,
``linformer-pytorch``; non-causal only), each seeded like ours; when not, one line says so.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from qtransformers.bench import common
from qtransformers.bench.capture import load_or_capture
from qtransformers.bench.report import format_markdown, format_table, plot_lines, write_csv
from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError, ShapeError
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
    "performer": (performer_attention, "num_features"),
    "nystrom": (nystrom_attention, "num_landmarks"),
    "linformer": (linformer_attention, "proj_dim"),
}
# public implementation -> (module it imports, PyPI package, our baseline it is compared with)
PEERS = {
    "performer-pytorch": ("performer_pytorch", "performer-pytorch", "performer"),
    "nystrom-attention": ("nystrom_attention", "nystrom-attention", "nystrom"),
    "linformer-pytorch": ("linformer", "linformer", "linformer"),
}


def installed_peers() -> list[str]:
    """Names in ``PEERS`` whose package imports here."""
    found = []
    for name, (module, _, _) in PEERS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(name)
    return found


class _Constant(nn.Module):
    """Returns one fixed tensor whatever it is called with (stands in for a peer's input projection)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.value


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(B, H, N, E) -> (B, N, H·E), the layout of the peers' modules."""
    return t.transpose(1, 2).reshape(t.size(0), t.size(2), -1)


def peer_attention(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """Public implementation ``name`` on q (B,H,L,E), k, v (B,H,S,E), non-causal -> (B,H,L,E).

    Its input and output projections are replaced by the identity (or by the given tensors), so
    it sees exactly q, k, v; m is the features / landmarks / projection rank; its random init
    draws from torch's global generator seeded with ``seed`` (restored afterwards). Its default
    knobs stay (performer-pytorch's eps, 6 pinv iterations); Nyström's learned residual
    convolution is off.
    """
    if name not in PEERS:
        raise InvalidArgumentError(f"unknown peer {name!r}; available: {list(PEERS)}")
    if name not in installed_peers():
        raise BackendUnavailableError(f"{name} is not installed (pip install {PEERS[name][1]})")
    if name != "performer-pytorch" and not (q.shape == k.shape == v.shape):
        raise ShapeError(
            f"{name} is self-attention: q, k, v must share one shape; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    with torch.no_grad():
        return _run_peer(name, importlib.import_module(PEERS[name][0]), q, k, v, m, seed)


def _run_peer(name: str, package, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """``peer_attention`` once the package is imported."""
    heads, length, dim = q.size(1), q.size(2), q.size(3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "performer-pytorch":
            module = package.FastAttention(dim, nb_features=m)
        elif name == "nystrom-attention":
            module = package.NystromAttention(
                heads * dim, dim_head=dim, heads=heads, num_landmarks=m, pinv_iterations=6, residual=False
            )
        else:
            module = package.LinformerSelfAttention(heads * dim, seq_len=k.size(2), k=m, heads=heads, dim_head=dim)
    module = module.to(device=q.device, dtype=q.dtype)
    if name == "performer-pytorch":
        return module(q, k, v)
    if name == "nystrom-attention":
        # The module front-pads its input with zeros to a multiple of m; pad q, k, v the same way.
        pad = (-length) % m
        qkv = [torch.nn.functional.pad(t, (0, 0, pad, 0)) for t in (q, k, v)]
        module.to_qkv = _Constant(torch.cat([_merge_heads(t) for t in qkv], -1))
        module.to_out = nn.Identity()
        out = module(torch.zeros(q.size(0), length, heads * dim, dtype=q.dtype, device=q.device))
    else:
        module.to_q, module.to_out = nn.Identity(), nn.Identity()
        module.to_k, module.to_v = _Constant(_merge_heads(k)), _Constant(_merge_heads(v))
        out = module(_merge_heads(q))
    return out.reshape(q.size(0), length, heads, dim).transpose(1, 2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the attention-error suite."""
    common.add_common_arguments(parser, default_lengths="256,1024,4096", quick_lengths="256")
    parser.add_argument("--budgets", default=None, help="comma-separated m (default 8,16,32,64,128; --quick 8,32)")
    parser.add_argument("--regimes", default="gaussian,trained", help="gaussian and/or trained (default both)")
    parser.add_argument("--data", default=None, help="text file to train the regime-(b) model on")
    parser.add_argument("--capture", default=None, help="q/k/v capture file (default OUT/capture.safetensors)")
    parser.add_argument("--train-seconds", type=float, default=240.0, help="training budget of the capture model")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per sampled/random estimator (default 2)")
    parser.add_argument("--impls", default=None, help="comma-separated implementations (default all installed)")
    parser.add_argument("--q-scale", type=float, default=1.0, help="factor τ on the regime-(a) queries (default 1)")


def _gaussian(length: int, q_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + length)
    q, k, v = (torch.randn(1, 4, length, 64, generator=g) for _ in range(3))
    return q * q_scale, k, v


def _run_impl(name: str, q, k, v, causal: bool, m: int, gen: torch.Generator, seed: int) -> torch.Tensor:
    if name in PEERS:
        if causal:
            raise InvalidArgumentError(f"{name} runs here without a causal mask only")
        return peer_attention(name, q, k, v, m, seed)
    if name in SAMPLED:
        return quantum_attention(q, k, v, is_causal=causal, num_samples=m, generator=gen, **SAMPLED[name])
    fn, size = BASELINES[name]
    return fn(q, k, v, is_causal=causal, generator=gen, **{size: m})


def _measure(name: str, q, k, v, causal: bool, m: int, exact, seeds: int, device) -> dict:
    """Mean relative error over ``seeds`` seeds, and the time and peak memory of the seed-0 call."""
    errors, result = [], {}
    for seed in range(seeds):
        gen = torch.Generator(device=device).manual_seed(seed)
        with profile(device) as prof:
            approx = _run_impl(name, q, k, v, causal, m, gen, seed)
        if seed == 0:
            result = {"ms": prof.result.seconds * 1e3, "peak_MiB": prof.result.peak_bytes / 2**20}
        errors.append(relative_errors(approx.float(), exact.float()).mean())
    return {**result, "rel_err": float(torch.stack(errors).mean())}


def _side_fraction(name: str, n: int, m: int, causal: bool) -> float:
    if name not in SAMPLED:
        return float("nan")
    cfg = SAMPLED[name]
    cost = side_information_cost(
        n,
        n,
        64,
        64,
        num_samples=m,
        control_variate=cfg.get("control_variate", False),
        backend=cfg["backend"],
        adaptive=cfg.get("adaptive", False),
        key_order="position" if causal else "value",
        cv_kind=cfg.get("cv_kind", "block"),
    )
    return cost["side_information_macs"] / cost["exact_macs"]


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite, print the table and write results.csv, results.md and error.png into ``args.out``."""
    device, dtype, lengths = common.resolve(args)
    budgets = [int(b) for b in (args.budgets or ("8,32" if args.quick else "8,16,32,64,128")).split(",")]
    regimes = [r.strip() for r in args.regimes.split(",") if r.strip()]
    unknown = set(regimes) - {"gaussian", "trained"}
    if unknown:
        raise InvalidArgumentError(f"unknown regime(s) {sorted(unknown)}; use gaussian and/or trained")
    if not (args.q_scale > 0 and args.q_scale < float("inf")):
        raise InvalidArgumentError(f"--q-scale must be a positive finite number, got {args.q_scale}")
    peers = installed_peers()
    impls = list(SAMPLED) + list(BASELINES) + peers
    if args.impls:
        impls = [i.strip() for i in args.impls.split(",")]
        known = list(SAMPLED) + list(BASELINES) + list(PEERS)
        bad = sorted(set(impls) - set(known))
        if bad:
            raise InvalidArgumentError(f"unknown impl(s) {bad}; available: {known}")
        missing = sorted(set(impls) & set(PEERS) - set(peers))
        if missing:
            raise BackendUnavailableError(f"peer(s) {missing} asked for but not installed")
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
            q, k, v = _gaussian(n, args.q_scale) if regime == "gaussian" else (captured[x][:, :, :n] for x in "qkv")
            q, k, v = (t.to(device=device, dtype=dtype) for t in (q, k, v))
            causal = regime == "trained"
            cache.clear()
            cache[(regime, n)] = (q, k, v, causal, exact_attention(q, k, v, is_causal=causal)[0])
        q, k, v, causal, exact = cache[(regime, n)]
        row = {"regime": regime, "N": n, "m": m, "impl": name, "side_info_frac": _side_fraction(name, n, m, causal)}
        try:
            row.update(_measure(name, q, k, v, causal, m, exact, args.seeds, device))
        except InvalidArgumentError:
            if not causal:
                raise
            # This estimator refuses causal inputs (a typed error), so regime (b) has no number for it.
            row.update(rel_err=float("nan"), ms=float("nan"), peak_MiB=float("nan"))
        rows.append(row)
    for row in rows:
        naive = next(
            (
                r
                for r in rows
                if r["impl"] == "naive" and r["regime"] == row["regime"] and r["N"] == row["N"] and r["m"] == row["m"]
            ),
            None,
        )
        row["ratio_to_naive"] = row["rel_err"] / naive["rel_err"] if naive else float("nan")
    write_csv(rows, COLUMNS, out / "results.csv")
    (out / "results.md").write_text(format_markdown(rows, COLUMNS) + "\n")
    for regime in regimes:
        subset = [r for r in rows if r["regime"] == regime]
        plot_lines(
            subset,
            x="m",
            y="rel_err",
            series="impl",
            panels="N",
            path=out / f"error-{regime}.png",
            title=f"relative error, {regime}",
        )
    print(
        common.header(device, dtype, f"E=64, seeds={args.seeds}, regimes={','.join(regimes)}, q-scale={args.q_scale:g}")
    )
    print(format_table(rows, COLUMNS))
    absent = [name for name in PEERS if name not in peers]
    if absent:
        print(
            f"no rows for public implementations not installed here: {', '.join(absent)} "
            f"(pip install {' '.join(PEERS[name][1] for name in absent)})"
        )
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'} and error-<regime>.png")
    return rows
