"""The training loop: AdamW, warm-up + cosine decay, clipping, mixed precision, DDP, exact resume.

With ``time_budget`` (seconds) a run stops after the first step at which its summed training-step
time reaches the budget (``steps`` is then a cap), the cosine decay follows the fraction of the
budget spent instead of the fraction of steps, and the last step is evaluated and checkpointed.
Evaluation and checkpoint time are not counted against the budget. ``budget_clock`` is ``"wall"``
(elapsed time) or ``"process"`` (CPU time of this process, which other processes on a shared CPU
do not inflate; CPU devices only).

Batches are a pure function of (seed, step): every step draws one global batch of
``world_size * batch_size`` windows per micro-step from a generator seeded by the step, and each
process takes its slice. So a resumed run sees exactly the batches an uninterrupted run sees, and
two processes with batch B see what one process with batch 2B sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from qtransformers.train.curriculum import ENERGY_TERMS, Curriculum
from qtransformers.train.data import VOCAB_SIZE, ByteDataset

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


@dataclass
class TrainConfig:
    """Everything a training run needs besides the model config; defaults follow the CLI."""

    data: str
    out: str
    steps: int
    batch_size: int = 12
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    device: str = "cpu"
    dtype: str = "auto"
    compile: bool = False
    seed: int = 0
    ckpt_every: int | None = None
    eval_every: int | None = None
    eval_batches: int = 8
    val_fraction: float = 0.1
    energy_weights: tuple = (0.01, 0.01, 0.01)
    curriculum: str = "staged"
    resume: bool = False
    progress: bool = False
    stop_after: int | None = None
    time_budget: float | None = None
    budget_clock: str = "wall"

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in (warm-up, checkpoint and eval intervals) and values validated."""
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise InvalidArgumentError(
                f"steps, batch_size and grad_accum must be >= 1, got {self.steps}, {self.batch_size}, {self.grad_accum}"
            )
        if self.dtype not in ("auto", *DTYPES):
            raise InvalidArgumentError(f"dtype must be auto or one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.curriculum not in ("staged", "constant"):
            raise InvalidArgumentError(f"curriculum must be 'staged' or 'constant', got {self.curriculum!r}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise InvalidArgumentError(f"time_budget must be > 0 seconds, got {self.time_budget}")
        if self.budget_clock not in ("wall", "process"):
            raise InvalidArgumentError(f"budget_clock must be 'wall' or 'process', got {self.budget_clock!r}")
        if self.budget_clock == "process" and torch.device(self.device).type != "cpu":
            raise InvalidArgumentError("budget_clock='process' counts CPU time, so it needs device='cpu'")
        if self.time_budget is not None and self.resume:
            raise InvalidArgumentError("time_budget and resume cannot be combined (the time spent is not checkpointed)")
        if len(self.energy_weights) != len(ENERGY_TERMS):
            raise InvalidArgumentError(f"energy_weights needs {len(ENERGY_TERMS)} values {ENERGY_TERMS}")
        default_every = max(1, min(1000, self.steps // 5))
        return dataclasses.replace(
            self,
            warmup_steps=self.warmup_steps if self.warmup_steps is not None else min(100, self.steps // 10),
            ckpt_every=self.ckpt_every or default_every,
            eval_every=self.eval_every or default_every,
        )


def lr_factor(step: int, warmup: int, total: int, min_ratio: float, *, fraction: float | None = None) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: linear warm-up, then cosine to ``min_ratio``.

    The cosine follows ``(step - warmup) / (total - warmup)``, or ``fraction`` (of a time budget) when given.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup) if fraction is None else fraction)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or 1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def module_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` held as an attribute by a submodule (e.g. a sampling mixer), by dotted name."""
    return {
        f"{name}.{attr}": value
        for name, module in model.named_modules()
        for attr, value in vars(module).items()
        if isinstance(value, torch.Generator)
    }


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _device(config: TrainConfig, local_rank: int, world: int) -> torch.device:
    device = torch.device(config.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError("--device cuda was asked for but torch.cuda.is_available() is False")
        if world > 1:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[config.dtype]


def _all_mean(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


class Trainer:
    """One training run of a :class:`ByteLM` on a byte file; ``run()`` trains and returns the metrics."""

    def __init__(self, model_config: ByteLMConfig, config: TrainConfig) -> None:
        self.config = config.resolved()
        self.model_config = model_config
        self.rank, self.world, local_rank = _distributed()
        if self.config.time_budget is not None and self.world > 1:
            raise InvalidArgumentError("time_budget needs a single process (ranks would stop at different steps)")
        self.device = _device(self.config, local_rank, self.world)
        self.amp_dtype = _autocast_dtype(self.config, self.device)
        self.out = Path(self.config.out)
        self.data = ByteDataset(self.config.data, val_fraction=self.config.val_fraction)
        self.seq_len = model_config.max_seq_len
        torch.manual_seed(self.config.seed)
        self.model = ByteLM(model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, self.config.lr, self.config.weight_decay)
        self.step_seconds: list[float] = []
        self.step_cpu_seconds: list[float] = []
        c = self.config
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, c.warmup_steps, c.steps, c.min_lr_ratio, fraction=self.budget_spent()),
        )
        make = Curriculum.staged if c.curriculum == "staged" else Curriculum.constant
        self.curriculum = make(*c.energy_weights)
        self.step = 0
        self.history: list[dict] = []

    def budget_spent(self) -> float | None:
        """Fraction of ``time_budget`` spent in training steps so far, on ``budget_clock`` (None without a budget)."""
        if self.config.time_budget is None:
            return None
        spent = self.step_seconds if self.config.budget_clock == "wall" else self.step_cpu_seconds
        return sum(spent) / self.config.time_budget

    def _finished(self) -> bool:
        spent = self.budget_spent()
        return self.step >= self.config.steps or (spent is not None and spent >= 1.0)

    # ----------------------------------------------------------------- state
    def _state(self) -> dict:
        generators = module_generators(self.model)
        rng = {"cpu": torch.get_rng_state(), "modules": {k: g.get_state() for k, g in generators.items()}}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng}

    def _restore(self) -> None:
        folder = find_checkpoint(self.out)
        if folder is None:
            return
        model, state, meta = load_checkpoint(folder, self.device)
        if meta["model"] != self.model_config.to_dict():
            raise InvalidArgumentError(
                f"--resume: the checkpoint in {folder} has model {meta['model']}, this run asks for "
                f"{self.model_config.to_dict()}"
            )
        self.model.load_state_dict(model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["cpu"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        generators = module_generators(self.model)
        for key, generator_state in state["rng"].get("modules", {}).items():
            if key in generators and generators[key].device.type == "cpu":
                generators[key].set_state(generator_state)
        self.step = int(state["step"])

    def _load_history(self) -> None:
        path = self.out / METRICS_FILE
        if not path.is_file():
            return
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.history = [r for r in lines if r["step"] <= self.step]

    def _save(self) -> None:
        if self.rank == 0:
            meta = {"train": dataclasses.asdict(self.config)}
            save_checkpoint(self.out, self.step, self.model, self._state(), meta)
        if self.world > 1:
            dist.barrier()

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        if self.amp_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _micro_batches(self, split: str, step_seed: int, count: int):
        generator = torch.Generator().manual_seed(step_seed)
        b = self.config.batch_size
        for _ in range(count):
            x, y = self.data.batch(split, self.world * b, self.seq_len, generator)
            sl = slice(self.rank * b, (self.rank + 1) * b)
            yield x[sl].to(self.device), y[sl].to(self.device)

    def _train_step(self, model: nn.Module) -> dict:
        c = self.config
        weights = self.curriculum.weights(self.step, c.steps)
        ce_sum = torch.zeros((), device=self.device)
        energy_sums: dict[str, torch.Tensor] = {}
        self.model.train()
        seed = c.seed * 1_000_003 + self.step + 1
        for i, (x, y) in enumerate(self._micro_batches("train", seed, c.grad_accum)):
            sync = self.world == 1 or i == c.grad_accum - 1
            ctx = contextlib.nullcontext() if sync else model.no_sync()
            with ctx:
                with self._autocast():
                    logits = model(x)
                ce = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1))
                loss = ce
                energies = self.model.energy_terms()
                if energies is not None:
                    loss = loss + sum(weights[t] * energies[t] for t in ENERGY_TERMS)
                    for name, value in energies.items():
                        energy_sums[name] = energy_sums.get(name, 0.0) + value.detach()
                (loss / c.grad_accum).backward()
            ce_sum += ce.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        record = {
            "step": self.step,
            "train_loss": _all_mean(ce_sum / c.grad_accum, self.world),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
        }
        for name, value in energy_sums.items():
            key = "phase_coherence" if name == "coherence" else f"energy_{name}"
            record[key] = _all_mean(value / c.grad_accum, self.world)
        if energy_sums:
            record.update({f"weight_{t}": w for t, w in weights.items()})
        return record

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss (nats per byte) over ``eval_batches`` fixed validation batches."""
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for x, y in self._micro_batches("val", self.config.seed * 7_919 + 17, self.config.eval_batches):
            with self._autocast():
                logits = self.model(x)
            total += F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1))
        self.model.train()
        return _all_mean(total / self.config.eval_batches, self.world)

    # -------------------------------------------------------------------- run
    def run(self) -> list[dict]:
        """Train to ``steps``, ``time_budget`` or ``stop_after`` more steps, logging and checkpointing; returns the metrics."""
        c = self.config
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(".ckpt-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
        if self.world > 1:
            dist.barrier()
        if c.resume:
            self._restore()
            self._load_history()
        model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if c.compile:
            model = torch.compile(model)
        if self.rank == 0:
            self._rewrite_metrics()
        bar = None
        if c.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.steps, initial=self.step, desc=f"train {self.model_config.mixer}", unit="step")
        run_steps = 0
        while not self._finished() and (c.stop_after is None or run_steps < c.stop_after):
            t0, cpu0 = time.perf_counter(), time.process_time()
            record = self._train_step(model)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.step_seconds.append(time.perf_counter() - t0)
            self.step_cpu_seconds.append(time.process_time() - cpu0)
            last = self._finished()
            if self.step % c.eval_every == 0 or last:
                record["val_loss"] = self.evaluate()
                record["val_bpb"] = record["val_loss"] / math.log(2)
            self.history.append(record)
            if self.rank == 0:
                with open(self.out / METRICS_FILE, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if self.step % c.ckpt_every == 0 or last:
                self._save()
            run_steps += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.3f}")
        if bar is not None:
            bar.close()
        if self.rank == 0 and self.history:
            plot_losses(self.history, self.out / PLOT_FILE, title=f"ByteLM ({self.model_config.mixer})")
        return self.history

    def _rewrite_metrics(self) -> None:
        path = self.out / METRICS_FILE
        tmp = path.with_name(f".{METRICS_FILE}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        os.replace(tmp, path)


def plot_losses(history: list[dict], path: Path, *, title: str) -> None:
    """Loss-curve PNG: train loss per step and validation loss at eval steps (nats per byte)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["step"] for r in history], [r["train_loss"] for r in history], label="train", alpha=0.8)
    val = [(r["step"], r["val_loss"]) for r in history if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/byte)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(model_config: ByteLMConfig, config: TrainConfig) -> list[dict]:
    """Train a ByteLM and return its metrics (one dict per step); see :class:`Trainer`."""
    return Trainer(model_config, config).run()
