"""Recall: train 2-layer models of each mixer on MQAR, selective copying and induction; held-out accuracy.

For every (mixer or pattern, task, length) a small causal model (:class:`ByteLM` blocks with the
task's vocabulary) is trained on fresh batches from :mod:`qtransformers.train.synthetic`, for each
learning rate of a small sweep, with AdamW (weight decay 0.1), linear warm-up then cosine decay
(laid out over ``--steps`` or, when it comes first, ``--time-limit``) and gradient clipping at 1;
the loss and the accuracy count only the scored positions (MQAR's queries). With ``--length-mix``
the training batches cycle through N/4, N/2 and N (pairs scaled alike), as Zoology trains MQAR on
a mix of lengths and pair counts; validation and test stay at N. Positions are rotary
by default: MQAR needs a previous-token head (the value's position must carry its key), which
RoPE gives every attention layer directly; with a learned table attention stayed on MQAR's
plateau (about 1/pairs) for 3,000 steps at N = 64 in our trials. A pattern with more entries than
``--layers`` gets one layer per entry (``hyena,hyena,hyena,attention`` is a 4-layer model; the
``layers`` column says so). A run stops early once its accuracy on a validation set reaches ``--stop-at``, and the
sweep stops at the first learning rate that does; the reported accuracy is on a separate
held-out test set of fresh sequences, and the best learning rate's row is kept. ``train_seconds``
is wall time, ``cpu_seconds`` the process's CPU time (all its threads) over the same interval:
on a shared machine the second is the fairer measure of the work done.
Writes ``results.csv``, ``results.md`` and ``recall_<task>.png`` (accuracy against length), rewritten
after every finished sweep, so a long run that is stopped keeps what it measured, and
``progress.csv``, one line per validation of every run (step, loss, validation accuracy) as it trains.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qtransformers import mixers
from qtransformers.bench.common import header, invocation
from qtransformers.bench.report import format_markdown, format_table, plot_lines, read_csv, write_csv
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.mixers.hybrid import parse_pattern
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.models.bytelm import POSITIONS
from qtransformers.train.synthetic import IGNORE, TASKS, make_batch

COLUMNS = [
    "mixer",
    "task",
    "seq_len",
    "dim",
    "layers",
    "accuracy",
    "valid_accuracy",
    "params",
    "train_seconds",
    "cpu_seconds",
    "lr",
    "steps",
    "items",
    "train_lengths",
]
TABLE_COLUMNS = [*COLUMNS, "train_seconds_sweep"]  # the CSV and tables: each row plus its sweep's total time
PROGRESS_COLUMNS = ["mixer", "task", "seq_len", "lr", "step", "loss", "valid_accuracy", "train_seconds"]
"""Columns of ``progress.csv``: one line per validation of every run, written as training goes."""
LR_GRID = (3e-3, 1e-3, 1e-2, 3e-4)
WARMUP_STEPS = 200
TEST_SEED_OFFSET, VALID_SEED_OFFSET = 1_000_003, 2_000_003


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qtransformers bench recall``."""
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated tasks (default {','.join(TASKS)})")
    parser.add_argument(
        "--mixers",
        nargs="+",
        default=None,
        metavar="MIXER",
        help="one model per argument: a causal mixer name or a pattern such as hyena,attention or hyena+quantum "
        "(default: every causal mixer)",
    )
    parser.add_argument("--lengths", default="64", help="comma-separated sequence lengths N (default 64)")
    parser.add_argument("--dim", type=int, default=64, help="model width (default 64)")
    parser.add_argument(
        "--layers", type=int, default=2, help="number of blocks (default 2; a longer pattern gets one per entry)"
    )
    parser.add_argument("--heads", type=int, default=1, help="num_heads of every mixer that has heads (default 1)")
    parser.add_argument("--position", default="rope", choices=list(POSITIONS), help="position scheme (default rope)")
    parser.add_argument("--vocab", type=int, default=512, help="task vocabulary size (default 512)")
    parser.add_argument("--pairs", type=int, default=None, help="MQAR pairs / copied tokens (default N/8, >= 2)")
    parser.add_argument(
        "--length-mix",
        action="store_true",
        help="train a run of length N on batches cycling through N/4, N/2 and N (pairs scaled alike), "
        "as Zoology trains MQAR on a mix of lengths; tested at N only",
    )
    parser.add_argument("--steps", type=int, default=4000, help="training steps per run at most (default 4000)")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per step (default 64)")
    parser.add_argument("--lr-sweep", type=int, default=3, help=f"how many of the rates {LR_GRID} to try (default 3)")
    parser.add_argument(
        "--lrs", default=None, help="comma-separated learning rates to sweep instead of --lr-sweep's (e.g. 1e-2)"
    )
    parser.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (default 0.1)")
    parser.add_argument("--stop-at", type=float, default=0.995, help="validation accuracy that ends a run (0.995)")
    parser.add_argument("--eval-every", type=int, default=100, help="validation interval in steps (default 100)")
    parser.add_argument("--test-sequences", type=int, default=512, help="held-out test sequences (default 512)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per run at most (default none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and data (default 0)")
    parser.add_argument("--out", default="qtransformers-bench", help="output folder (default ./qtransformers-bench)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="CSV",
        help="train nothing: merge these results.csv files into --out's table, goals and plots",
    )


def items_for(seq_len: int, pairs: int | None) -> int:
    """MQAR pairs (and selective-copy tokens) at length N: ``pairs`` if given, else max(2, N // 8).

    N / 8 gives 8 pairs at N = 64 and 64 at N = 512 (Zoology's largest setting); more queries per
    sequence give more signal per step, and attention left MQAR's plateau sooner with 8 pairs than
    with 4 at N = 64 in our trials.
    """
    return pairs if pairs is not None else max(2, seq_len // 8)


def training_lengths(seq_len: int, items: int, mix: bool) -> list[tuple[int, int]]:
    """(length, items) of the training batches, used in turn: ``(seq_len, items)`` alone, or with ``mix``
    also N/4 and N/2 (those of at least 16) with the items scaled by the same factor (at least 2)."""
    if not mix:
        return [(seq_len, items)]
    shorter = [seq_len // d for d in (4, 2) if seq_len // d >= 16]
    return [(n, max(2, items * n // seq_len)) for n in shorter] + [(seq_len, items)]


def depth_of(pattern: str, layers: int) -> int:
    """Layers of a run: ``layers``, or the number of entries of a longer ``pattern``."""
    return max(layers, len(parse_pattern(pattern)))


def build_model(pattern: str, seq_len: int, *, dim: int, layers: int, heads: int, vocab: int, position: str) -> ByteLM:
    """The model of one run: ``depth_of(pattern, layers)`` blocks of ``pattern`` at width ``dim``,
    ``num_heads=heads`` where accepted."""
    names = {n for entry in parse_pattern(pattern) for n in entry}
    with_heads = any("num_heads" in mixers.options_of(n) for n in names)
    config = ByteLMConfig(
        mixer=pattern,
        dim=dim,
        layers=depth_of(pattern, layers),
        max_seq_len=seq_len,
        vocab_size=vocab,
        position=position,
        mixer_options={"num_heads": heads} if with_heads else {},
    )
    return ByteLM(config)


def scored_logits(model: ByteLM, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (M, V) and targets (M,) at the M scored positions only (the output layer runs there only)."""
    keep = targets != IGNORE
    return model.logits(model.hidden(inputs)[keep]), targets[keep]


@torch.no_grad()
def accuracy(model: ByteLM, data: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Fraction of scored positions of ``data`` (batches of inputs, targets) whose argmax is the target."""
    was_training = model.training
    model.eval()
    hits = total = 0
    for inputs, targets in data:
        logits, wanted = scored_logits(model, inputs, targets)
        hits += int((logits.argmax(-1) == wanted).sum())
        total += wanted.numel()
    model.train(was_training)
    return hits / max(total, 1)


def fixed_set(task: str, seq_len: int, sequences: int, batch: int, seed: int, **task_args) -> list:
    """``sequences`` sequences of ``task`` in batches, from their own seed (disjoint from the training stream)."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [min(batch, sequences - i) for i in range(0, sequences, batch)]
    return [make_batch(task, n, seq_len, generator=generator, **task_args) for n in sizes]


def lr_at(
    step: int, steps: int, peak: float, warmup: int, elapsed: float = 0.0, time_limit: float | None = None
) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10 % of ``peak`` at the end of the run.

    The end is ``steps`` or, when it comes first, ``time_limit`` seconds: progress is the larger of
    the step fraction and the time fraction (``elapsed / time_limit``).
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    if time_limit is not None:
        progress = max(progress, elapsed / time_limit)
    return peak * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def check_training(
    *,
    steps: int,
    batch_size: int,
    layers: int,
    weight_decay: float,
    stop_at: float,
    eval_every: int,
    test_sequences: int,
    time_limit: float | None,
) -> None:
    """Raise :class:`InvalidArgumentError` naming every training option of a run that is out of range."""
    bad = [
        f"{name} must be {rule}, got {value}"
        for name, value, ok, rule in (
            ("steps", steps, steps >= 1, ">= 1"),
            ("batch_size", batch_size, batch_size >= 1, ">= 1"),
            ("layers", layers, layers >= 1, ">= 1"),
            ("weight_decay", weight_decay, math.isfinite(weight_decay) and weight_decay >= 0, "finite and >= 0"),
            ("stop_at", stop_at, 0 < stop_at <= 1, "in (0, 1]"),
            ("eval_every", eval_every, eval_every >= 1, ">= 1"),
            ("test_sequences", test_sequences, test_sequences >= 1, ">= 1"),
            ("time_limit", time_limit, time_limit is None or time_limit > 0, "None or > 0"),
        )
        if not ok
    ]
    if bad:
        raise InvalidArgumentError("; ".join(bad))


def train_run(
    pattern: str,
    task: str,
    seq_len: int,
    *,
    lr: float,
    steps: int,
    batch_size: int = 64,
    dim: int = 64,
    layers: int = 2,
    heads: int = 1,
    vocab: int = 512,
    items: int = 4,
    length_mix: bool = False,
    position: str = "rope",
    weight_decay: float = 0.1,
    stop_at: float = 0.995,
    eval_every: int = 100,
    test_sequences: int = 512,
    time_limit: float | None = None,
    seed: int = 0,
    make_targets=None,
    log: Path | None = None,
) -> dict:
    """Train one model at one learning rate; its row (test ``accuracy``, ``steps`` run, ``train_seconds``, ...).

    ``make_targets(inputs, targets) -> targets``, if given, replaces the training targets (a test
    uses it to shuffle the answers: nothing is then learnable and accuracy must stay at chance).
    ``length_mix``: the training batches cycle through :func:`training_lengths` (validation and test
    stay at ``seq_len``).
    ``log``, if given, is a CSV file that gets one line per validation (every ``eval_every`` steps):
    :data:`PROGRESS_COLUMNS`, so a long run that is stopped still shows how far it got.
    """
    check_training(
        steps=steps,
        batch_size=batch_size,
        layers=layers,
        weight_decay=weight_decay,
        stop_at=stop_at,
        eval_every=eval_every,
        test_sequences=test_sequences,
        time_limit=time_limit,
    )
    torch.manual_seed(seed)
    model = build_model(pattern, seq_len, dim=dim, layers=layers, heads=heads, vocab=vocab, position=position)
    task_args = {"items": items, "vocab": vocab}
    test = fixed_set(task, seq_len, test_sequences, batch_size, seed + TEST_SEED_OFFSET, **task_args)
    valid = fixed_set(task, seq_len, min(test_sequences, 256), batch_size, seed + VALID_SEED_OFFSET, **task_args)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    generator = torch.Generator().manual_seed(seed)
    schedule = training_lengths(seq_len, items, length_mix)
    warmup = max(1, min(steps // 10, WARMUP_STEPS))
    start, cpu_start = time.perf_counter(), time.process_time()
    step = 0
    model.train()

    def validate(loss: float) -> bool:  # logs a progress line; True once validation reaches stop_at
        valid_accuracy = accuracy(model, valid)
        if log is not None:
            elapsed = time.perf_counter() - start
            line = [pattern, task, seq_len, lr, step, f"{loss:.5g}", f"{valid_accuracy:.4f}", f"{elapsed:.1f}"]
            with log.open("a", newline="") as f:
                csv.writer(f).writerow(line)
        return valid_accuracy >= stop_at

    while step < steps:
        n, n_items = schedule[step % len(schedule)]
        inputs, targets = make_batch(task, batch_size, n, generator=generator, items=n_items, vocab=vocab)
        if make_targets is not None:
            targets = make_targets(inputs, targets)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, time.perf_counter() - start, time_limit)
        logits, wanted = scored_logits(model, inputs, targets)
        loss = F.cross_entropy(logits.float(), wanted)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        out_of_time = time_limit is not None and time.perf_counter() - start > time_limit
        if out_of_time or (step % eval_every == 0 and (not math.isfinite(loss.item()) or validate(loss.item()))):
            break
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "mixer": pattern,
        "task": task,
        "seq_len": seq_len,
        "dim": dim,
        "layers": len(model.blocks),
        "accuracy": accuracy(model, test),
        "valid_accuracy": accuracy(model, valid),
        "params": model.num_parameters(),
        "train_seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "lr": lr,
        "steps": step,
        "items": items,
        "train_lengths": "/".join(str(n) for n, _ in schedule),
    }


def sweep(pattern: str, task: str, seq_len: int, lrs: list[float], progress=None, **options) -> dict:
    """Best row over the learning rates ``lrs`` (stops at the first that reaches ``stop_at`` on validation)."""
    best: dict | None = None
    total = 0.0
    for lr in lrs:
        row = train_run(pattern, task, seq_len, lr=lr, **options)
        total += row["train_seconds"]
        if best is None or row["accuracy"] > best["accuracy"]:
            best = row
        if progress is not None:
            progress()
        if row["valid_accuracy"] >= options.get("stop_at", 0.995):
            break
    if best is None:
        raise InvalidArgumentError("the learning-rate sweep needs at least one learning rate")
    return {**best, "train_seconds_sweep": total}


def goal_lines(rows: list[dict], mixers_run: list[str], tasks: list[str], lengths: list[int]) -> list[str]:
    """The issue's goals, checked on ``rows``.

    A hybrid's share of attention's MQAR accuracy at N = 256 is judged only where attention itself
    solved the task there (>= 0.99): a ratio of two chance-level accuracies says nothing.
    """
    acc = {(r["mixer"], r["task"], r["seq_len"]): r["accuracy"] for r in rows}
    lines = []
    for n in sorted({min(lengths), 256}):
        if ("attention", "mqar", n) in acc:
            a = acc[("attention", "mqar", n)]
            lines.append(
                f"attention MQAR accuracy at N = {n}: {a:.4f} ({'reached' if a >= 0.99 else 'NOT reached'} 0.99)"
            )
    causal = [m for m in mixers_run if m in mixers.available(causal=True)]
    missing = [(m, t, n) for m in causal for t in tasks for n in lengths if (m, t, n) not in acc]
    lines.append(f"rows for every mixer, task and length: {'complete' if not missing else f'missing {missing}'}")
    reference = acc.get(("attention", "mqar", 256))
    for m in mixers_run:
        if ("," not in m and "+" not in m) or (m, "mqar", 256) not in acc or reference is None:
            continue
        h = acc[(m, "mqar", 256)]
        if reference < 0.99:
            lines.append(
                f"hybrid {m} MQAR at N = 256: {h:.4f} against attention's {reference:.4f}: not judged "
                "(attention did not solve MQAR at N = 256 in this run)"
            )
        else:
            ratio = h / reference
            lines.append(
                f"hybrid {m} MQAR at N = 256: {ratio:.3f} of attention's ({'>=' if ratio >= 0.9 else '<'} 0.9)"
            )
    return lines


def _parse(args: argparse.Namespace) -> tuple[list[str], list[str], list[int], list[float]]:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise InvalidArgumentError(f"--tasks must name tasks from {', '.join(TASKS)}, got {args.tasks!r}")
    try:
        lengths = [int(v) for v in args.lengths.split(",") if v.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--lengths must be comma-separated integers, got {args.lengths!r}") from None
    if not lengths or min(lengths) < 4:
        raise InvalidArgumentError(f"--lengths must be integers >= 4, got {args.lengths!r}")
    if not 1 <= args.lr_sweep <= len(LR_GRID):
        raise InvalidArgumentError(f"--lr-sweep must be in 1..{len(LR_GRID)}, got {args.lr_sweep}")
    lrs = list(LR_GRID[: args.lr_sweep])
    if args.lrs is not None:
        try:
            lrs = [float(v) for v in args.lrs.split(",") if v.strip()]
        except ValueError:
            raise InvalidArgumentError(f"--lrs must be comma-separated numbers, got {args.lrs!r}") from None
        if not lrs or not all(math.isfinite(v) and v > 0 for v in lrs):
            raise InvalidArgumentError(f"--lrs must be positive finite rates, got {args.lrs!r}")
    names = args.mixers or mixers.available(causal=True)
    for pattern in names:  # validate every pattern before any training
        build_model(
            pattern,
            max(lengths),
            dim=args.dim,
            layers=args.layers,
            heads=args.heads,
            vocab=args.vocab,
            position=args.position,
        )
    return names, tasks, lengths, lrs


def run_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`train_run` (all but ``lr`` and ``items``) from the parsed options."""
    return dict(
        steps=args.steps,
        batch_size=args.batch_size,
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        vocab=args.vocab,
        position=args.position,
        weight_decay=args.weight_decay,
        stop_at=args.stop_at,
        eval_every=args.eval_every,
        test_sequences=args.test_sequences,
        time_limit=args.time_limit,
        seed=args.seed,
        length_mix=args.length_mix,
    )


def source_of(csv_path: Path) -> str:
    """The machine line and command of the run that wrote ``csv_path``, from the results.md beside it."""
    md = csv_path.with_name("results.md")
    if not md.is_file():
        return "no results.md beside it"
    lines = md.read_text().splitlines()
    machine = lines[0].lstrip("# ") if lines else ""
    command = next((line for line in lines if line.startswith("command: ")), "command: unknown")
    return f"{machine}; {command}"


def merge(args: argparse.Namespace) -> list[dict]:
    """``--merge``: the rows of several results.csv files, written into ``args.out`` as one table with its plots."""
    rows: list[dict] = []
    origin: dict[tuple, Path] = {}  # (mixer, task, seq_len) -> the file its row came from
    for path in map(Path, args.merge):
        if not path.is_file():
            raise InvalidArgumentError(f"--merge: {path} is not a file")
        if path.parent.resolve() == Path(args.out).resolve():
            raise InvalidArgumentError(f"--merge: --out {args.out} holds {path}; write the merge to another folder")
        for row in read_csv(path)[0]:
            key = (str(row["mixer"]), str(row["task"]), int(row["seq_len"]))
            if key in origin:
                raise InvalidArgumentError(
                    f"--merge: {path} and {origin[key]} both have a row for mixer {key[0]}, task {key[1]}, "
                    f"N = {key[2]}; merge one run of each (the table and the goal lines keep one row per model)"
                )
            origin[key] = path
            rows.append(row)
    if not rows:
        raise InvalidArgumentError(f"--merge: no rows in {', '.join(args.merge)}")
    names = list(dict.fromkeys(str(r["mixer"]) for r in rows))
    tasks = list(dict.fromkeys(str(r["task"]) for r in rows))
    lengths = sorted({int(r["seq_len"]) for r in rows})
    title = "# merged results\n\n" + "\n".join(f"- {path}: {source_of(Path(path))}" for path in args.merge)
    command = invocation(args)
    widths = ", ".join(str(d) for d in sorted({int(r["dim"]) for r in rows}))  # merged runs may differ
    goals = write_outputs(rows, Path(args.out), title, command, widths, names, tasks, lengths)
    print(format_table(rows, TABLE_COLUMNS))
    print("\n".join(goals))
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    """Run the bench, print the table and write results.csv, results.md and one PNG per task into ``args.out``."""
    if args.merge:
        return merge(args)
    names, tasks, lengths, lrs = _parse(args)
    out = Path(args.out)
    options = run_options(args)
    bar = tqdm(
        total=len(names) * len(tasks) * len(lengths) * len(lrs), desc="recall", unit="run", disable=not args.progress
    )
    title = header(
        torch.device("cpu"),
        torch.float32,
        f"{args.layers} layers (or one per entry of a longer pattern), width {args.dim}, {args.heads} head(s), "
        f"vocab {args.vocab}, batch {args.batch_size}, <= {args.steps} steps"
        + (f" and <= {args.time_limit:g} s" if args.time_limit is not None else "")
        + f" per run, lr sweep {lrs}, position {args.position}, seed {args.seed}"
        + (", training lengths N/4, N/2, N in turn" if args.length_mix else ""),
    )
    command = invocation(args)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "progress.csv"
    with log.open("w", newline="") as f:
        csv.writer(f).writerow(PROGRESS_COLUMNS)
    rows: list[dict] = []
    for task in tasks:
        for n in lengths:
            for pattern in names:
                items = items_for(n, args.pairs)
                rows.append(
                    sweep(pattern, task, n, lrs, progress=lambda: bar.update(1), items=items, log=log, **options)
                )
                bar.set_postfix_str(f"{pattern} {task} N={n}: {rows[-1]['accuracy']:.3f}")
                goals = write_outputs(rows, out, title, command, str(args.dim), names, tasks, lengths)
    bar.close()
    print(title)
    print(format_table(rows, TABLE_COLUMNS))
    print("\n".join(goals))
    return rows


def write_outputs(
    rows: list[dict],
    out: Path,
    title: str,
    command: str,
    width: str,
    names: list[str],
    tasks: list[str],
    lengths: list[int],
) -> list[str]:
    """(Re)write results.csv, results.md and one PNG per task of ``rows`` into ``out``; the goal lines.

    ``width`` labels the plots: the model width, or the widths of merged runs (e.g. "64, 128").
    """
    goals = goal_lines(rows, names, tasks, lengths)
    write_csv(rows, TABLE_COLUMNS, out / "results.csv")
    text = [title, "", f"command: `{command}`" if command else "", "", format_markdown(rows, TABLE_COLUMNS), ""] + goals
    (out / "results.md").write_text("\n".join(text) + "\n")
    for task in sorted({r["task"] for r in rows}):
        plot_lines(
            [r for r in rows if r["task"] == task],
            x="seq_len",
            y="accuracy",
            series="mixer",
            path=out / f"recall_{task}.png",
            title=f"{task}: held-out accuracy (width {width})",
            logy=False,
            ylim=(0.0, 1.02),
        )
    return goals
