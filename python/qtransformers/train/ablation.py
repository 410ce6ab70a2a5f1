"""The ablation study: the ΨQRH variants and every other causal mixer at an equal parameter budget.

Variants: the SDPA transformer baseline, QRH without quaternions (complex-valued mixing), without
the spectral filter, without the rotation, full QRH, then every other causal mixer in the registry.
Each is given the width (and MLP width) whose ByteLM parameter count is closest to the baseline's, trained on the
same data with the same seed for the same steps (or, with a time budget, for the same training time), and
measured: validation nats and bits per byte, peak memory of one training step, median time per training
step, steps and seconds trained, the time and peak memory of one training step (batch 1) at a long context,
and a sample generated from a short prompt by the trained model.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from qtransformers import mixers
from qtransformers.bench.timing import median_ms, peak_memory_bytes
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.mixers.hybrid import layer_mixers, parse_pattern
from qtransformers.models import ByteLM, ByteLMConfig
from qtransformers.train.data import decode, encode
from qtransformers.train.generation import SamplingConfig, generate
from qtransformers.train.trainer import TrainConfig, Trainer, make_optimizer

BASELINE = "attention"
COLUMNS = [
    "variant",
    "mixer",
    "options",
    "dim",
    "mlp_hidden",
    "position",
    "params",
    "params_vs_baseline",
    "val_loss",
    "val_bpb",
    "steps",
    "train_s",
    "cpu_s",
    "wall_s",
    "ms_per_step",
    "cpu_ms_per_step",
    "act_MiB",
    "peak_mem_MiB",
    "long_ctx_ms_per_step",
    "long_ctx_act_MiB",
    "long_ctx_peak_mem_MiB",
    "status",
]
# Mixers whose cost grows slower than the sequence length squared (FFT convolutions); the issue's
# hybrids are these with at most one layer in four of exact attention, or with sampled attention.
SUBQUADRATIC = frozenset({"fnet", "hyena", "qrh", "spectral"})
SAMPLED_ATTENTION = "quantum"
SAMPLE_PROMPT = "ROMEO:"
SAMPLE_BYTES = 200
SAMPLING = SamplingConfig(temperature=0.8, top_k=40)


@dataclass(frozen=True)
class Preset:
    """A named model size and training schedule: the baseline's layers, heads, width, context, batch and steps."""

    name: str
    layers: int
    heads: int
    dim: int
    seq_len: int
    batch_size: int
    steps: int
    note: str


# nanoGPT's CPU configuration (karpathy/nanoGPT README, Shakespeare character model: --n_layer=4 --n_head=4
# --n_embd=128 --block_size=64 --batch_size=12 --max_iters=2000), then the same model at long contexts with
# the batch and steps cut to what a 2-core CPU can train.
PRESETS = {
    p.name: p
    for p in (
        Preset("nanogpt-cpu", 4, 4, 128, 64, 12, 2000, "nanoGPT's CPU configuration"),
        Preset("nanogpt-cpu-1024", 4, 4, 128, 1024, 4, 500, "nanoGPT's CPU model at context 1024 (batch 4, 500 steps)"),
        Preset("nanogpt-cpu-4096", 4, 4, 128, 4096, 1, 5, "nanoGPT's CPU model at context 4096 (batch 1, 5 steps)"),
    )
}
# The figure nanoGPT's README reports for its CPU configuration ("gets us a loss of only 1.88"): nats per
# character of Tiny Shakespeare, not measured here.
NANOGPT_CPU_LOSS = 1.88


@dataclass
class Variant:
    """One row of the study: a name (also its run folder), a mixer name and its options."""

    name: str
    mixer: str
    options: dict = field(default_factory=dict)
    position: str | None = None  # None: the base config's position scheme


def rope_variant(variant: Variant) -> Variant | None:
    """``variant`` with RoPE positions and no position table, named ``<name>-rope``; None if no mixer takes RoPE."""
    names = {name for entry in parse_pattern(variant.mixer) for name in entry}
    if not any("rope" in mixers.options_of(name) for name in names):
        return None
    return Variant(f"{variant.name}-rope", variant.mixer, variant.options, position="rope")


def with_heads(variant: Variant, heads: int | None) -> Variant:
    """``variant`` with ``num_heads=heads`` added if a mixer of its pattern accepts ``num_heads``."""
    if heads is None or "num_heads" in variant.options:
        return variant
    names = {name for entry in parse_pattern(variant.mixer) for name in entry}
    if not any("num_heads" in mixers.options_of(name) for name in names):
        return variant
    return Variant(variant.name, variant.mixer, {**variant.options, "num_heads": heads})


def variants(available: list[str] | None = None) -> list[Variant]:
    """The five ΨQRH variants (if ``qrh`` is registered) followed by every other causal mixer."""
    available = mixers.available(causal=True) if available is None else available
    out = [Variant("transformer-sdpa", BASELINE)]
    if "qrh" in available:
        out += [
            Variant("qrh-no-quaternions", "qrh", {"quaternion": False}),
            Variant("qrh-no-spectral-filter", "qrh", {"spectral_filter": False}),
            Variant("qrh-no-rotation", "qrh", {"rotation": False}),
            Variant("qrh-full", "qrh", {}),
        ]
    out += [Variant(name, name) for name in available if name not in (BASELINE, "qrh")]
    return out


def count_parameters(config: ByteLMConfig) -> int:
    """Parameters of a ByteLM built from ``config`` (on the meta device when the mixer allows it)."""
    try:
        with torch.device("meta"):
            return ByteLM(config).num_parameters()
    except (RuntimeError, NotImplementedError):
        return ByteLM(config).num_parameters()


def match_size(
    base: ByteLMConfig, variant: Variant, target: int, *, multiple: int = 4, same_width: bool = False
) -> ByteLMConfig:
    """Config of ``variant`` whose parameter count is closest to ``target``.

    First the width (a multiple of ``multiple`` that the mixer accepts; with ``same_width`` the
    base's width only) with the closest count at the default MLP, then the MLP hidden width is moved
    to absorb the remainder (each hidden unit is ``layers * (2 * dim + 1)`` parameters), so counts
    match to a fraction of a percent.
    """
    best: tuple[float, ByteLMConfig] | None = None
    for dim in [base.dim] if same_width else range(multiple, 4 * base.dim + 1, multiple):
        config = _variant_config(base, variant, dim=dim)
        try:
            params = count_parameters(config)
        except (ValueError, RuntimeError, TypeError, NotImplementedError):
            continue
        gap = abs(params - target) / target
        if best is None or gap < best[0]:
            best = (gap, config)
        if params > 2 * target:
            break
    if best is None:
        widths = f"width {base.dim}" if same_width else f"no width up to {4 * base.dim}"
        raise ValueError(f"{widths} builds mixer {variant.mixer!r} with {variant.options}")
    config = best[1]
    hidden = config.mlp_ratio * config.dim
    per_unit = config.layers * (2 * config.dim + 1)
    hidden = max(1, hidden + round((target - count_parameters(config)) / per_unit))
    return _variant_config(base, variant, dim=config.dim, mlp_hidden=hidden)


def _variant_config(base: ByteLMConfig, variant: Variant, **changes) -> ByteLMConfig:
    position = {"position": variant.position} if variant.position else {}
    return ByteLMConfig(
        **{**base.to_dict(), "mixer": variant.mixer, "mixer_options": variant.options, **position, **changes}
    )


def matched_config(base: ByteLMConfig, variant: Variant, target: int, *, same_width: bool = False) -> ByteLMConfig:
    """Config of ``variant`` at the baseline's parameter count ``target`` (:func:`match_size`).

    A variant that drops the baseline's learned position table (``position`` other than the base's
    ``"learned"``) is matched to ``target`` minus that table, so its mixers and MLPs are as large as the
    baseline's. ``same_width``: keep the base's width, matching the count through the MLP only.
    """
    table = base.max_seq_len * base.dim if base.position == "learned" else 0
    drops_table = variant.position is not None and variant.position != "learned"
    return match_size(base, variant, target - table if drops_table else target, same_width=same_width)


def baseline_parameters(base: ByteLMConfig) -> int:
    """Parameter count of the attention baseline built from ``base``: the target every variant is matched to."""
    return count_parameters(_variant_config(base, Variant(BASELINE, BASELINE)))


def choose_variants(
    only: list[str] | None = None, hybrids: list[str] = (), heads: int | None = None, *, rope: bool = False, layers: int
) -> list[Variant]:
    """The study's variants: those named in ``only`` (mixer or variant names; None: all), then one per pattern
    of ``hybrids``, each with ``num_heads=heads`` where it applies; with ``rope``, each attention-based
    variant followed by its RoPE copy (:func:`rope_variant`). A bad pattern or an unknown name raises here, before
    any work."""
    for pattern in hybrids:
        layer_mixers(pattern, layers)
    known = variants()
    unknown = sorted(set(only or ()) - {v.mixer for v in known} - {v.name for v in known})
    if unknown:
        names = ", ".join(sorted({v.mixer for v in known} | {v.name for v in known}))
        raise InvalidArgumentError(f"no variant or causal mixer is named {', '.join(unknown)}; known: {names}")
    chosen = [v for v in known if only is None or v.mixer in only or v.name in only]
    chosen = [with_heads(v, heads) for v in chosen + [Variant(p, p) for p in hybrids]]
    if rope:
        chosen = [w for v in chosen for w in (v, rope_variant(v)) if w is not None]
    return chosen


def saved_activation_bytes(model: ByteLM, tokens: Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves for backward in ``model.loss(tokens, tokens)``.

    Exact on any device (counted through ``saved_tensors_hooks``, each storage once): the activation
    memory a training step holds between forward and backward.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.loss(tokens, tokens)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(saved.values())


def training_step(
    config: ByteLMConfig, seq_len: int, batch_size: int, device: torch.device
) -> tuple[ByteLM, Callable[[], None], Tensor]:
    """A model like ``config`` at context ``seq_len`` (seed 0), one (batch_size, seq_len) batch of random bytes,
    and ``step()``: one training step on it as the trainer takes one (forward, loss, backward, gradient clipping
    at the trainer's default norm, AdamW; bfloat16 autocast on CUDA)."""
    config = ByteLMConfig(**{**config.to_dict(), "max_seq_len": seq_len})
    torch.manual_seed(0)
    model = ByteLM(config).to(device)
    optimizer = make_optimizer(model, 1e-4, 0.0)
    x = torch.randint(0, 256, (batch_size, seq_len), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model.loss(x, x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TrainConfig.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step, x


def step_cost(config: ByteLMConfig, seq_len: int, batch_size: int, device: torch.device, repeats: int) -> dict:
    """Cost of one training step (:func:`training_step`) of a model like ``config`` on random bytes.

    ``ms``: median wall time after a warm-up step; ``peak_bytes``: peak memory above the level before
    the step (CUDA allocator peak; on CPU the RSS/tracemalloc peak of :class:`qtransformers.profile.profile`:
    resident pages, free ones the allocator keeps included); ``activation_bytes``: :func:`saved_activation_bytes`.
    """
    model, step, x = training_step(config, seq_len, batch_size, device)
    ms = median_ms(step, device, warmup=1, repeats=repeats)
    return {
        "ms": ms,
        "peak_bytes": peak_memory_bytes(step, device),
        "activation_bytes": saved_activation_bytes(model, x),
    }


def sample(model: ByteLM, prompt: str = SAMPLE_PROMPT, max_new_bytes: int = SAMPLE_BYTES, *, seed: int = 0) -> str:
    """Text continuing ``prompt``, generated by ``model`` (temperature 0.8, top-k 40, seeded)."""
    device = next(model.parameters()).device
    tokens = encode(prompt).view(1, -1).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    return decode(generate(model, tokens, max_new_bytes, SAMPLING, generator=generator)[0].tolist())


def run_variant(
    variant: Variant,
    base: ByteLMConfig,
    train: TrainConfig,
    target: int,
    long_ctx: int,
    prompt: str = SAMPLE_PROMPT,
    *,
    same_width: bool = False,
) -> dict:
    """Train one variant at the matched width and return its row of the table (with a generated ``sample``).

    ``target`` is the baseline's parameter count (:func:`matched_config`); ``params_vs_baseline``
    shows what a variant without the position table lacks.
    """
    config = matched_config(base, variant, target, same_width=same_width)
    params = count_parameters(config)
    row = {
        "variant": variant.name,
        "mixer": variant.mixer,
        "options": json.dumps(variant.options, sort_keys=True),
        "dim": config.dim,
        "mlp_hidden": config.mlp_hidden,
        "params": params,
        "params_vs_baseline": params / target,
        "position": config.position,
    }
    device = torch.device(train.device)
    trainer = Trainer(config, train)
    start = time.perf_counter()
    history = trainer.run()
    wall = time.perf_counter() - start
    last = history[-1]
    text = sample(trainer.model, prompt, seed=train.seed)
    (Path(train.out) / "sample.txt").write_text(text)
    cost = step_cost(config, config.max_seq_len, train.batch_size, device, repeats=1)
    row.update(
        val_loss=last["val_loss"],
        val_bpb=last["val_bpb"],
        steps=trainer.step,
        train_s=sum(trainer.step_seconds),
        cpu_s=sum(trainer.step_cpu_seconds),
        wall_s=wall,
        sample=text,
        peak_mem_MiB=cost["peak_bytes"] / 2**20,
        act_MiB=cost["activation_bytes"] / 2**20,
        ms_per_step=1e3 * statistics.median(trainer.step_seconds[1:] or trainer.step_seconds),
        cpu_ms_per_step=1e3 * statistics.median(trainer.step_cpu_seconds[1:] or trainer.step_cpu_seconds),
        curve=[(r["step"], r["val_loss"]) for r in history if "val_loss" in r],
        status="ok",
    )
    if long_ctx:
        cost = step_cost(config, long_ctx, 1, device, repeats=3)
        row.update(
            long_ctx_ms_per_step=cost["ms"],
            long_ctx_peak_mem_MiB=cost["peak_bytes"] / 2**20,
            long_ctx_act_MiB=cost["activation_bytes"] / 2**20,
        )
    return row


def run_ablation(
    base: ByteLMConfig,
    train: TrainConfig,
    *,
    long_ctx: int = 1024,
    only: list[str] | None = None,
    extra: list[Variant] = (),
    heads: int | None = None,
    hybrids: list[str] = (),
    rope: bool = False,
    prompt: str = SAMPLE_PROMPT,
    progress=None,
    same_width: bool = False,
) -> list[dict]:
    """Rows of the study (one per variant, then one per pattern of ``hybrids``; failures recorded in ``status``).

    With ``rope``, each chosen variant with an attention-based mixer is followed by its RoPE copy
    (:func:`rope_variant`). Each run writes into train.out/<variant name>; a hybrid's variant name is its pattern.
    """
    chosen = choose_variants(only, hybrids, heads, rope=rope, layers=base.layers)
    target = baseline_parameters(base)
    rows = []
    for variant in chosen:
        cfg = TrainConfig(**{**vars(train), "out": str(Path(train.out) / variant.name), "progress": False})
        try:
            rows.append(run_variant(variant, base, cfg, target, long_ctx, prompt, same_width=same_width))
        except Exception as exc:  # noqa: BLE001 - a failing variant is reported in the table, the study goes on
            rows.append(
                {
                    "variant": variant.name,
                    "mixer": variant.mixer,
                    "options": json.dumps(variant.options),
                    "status": f"failed: {type(exc).__name__}: {exc}",
                }
            )
        if progress is not None:
            progress(rows[-1])
    return rows


def is_hybrid(mixer: str) -> bool:
    """Whether ``mixer`` is a hybrid: a pattern of several entries, or an entry joining mixers with ``+``."""
    return len(parse_pattern(mixer)) > 1 or "+" in mixer


def is_goal_model(mixer: str, layers: int) -> bool:
    """Whether ``mixer`` (a name or pattern over ``layers`` layers) is sub-quadratic or one of the issue's hybrids.

    Hybrids: every layer is sub-quadratic except at most one in four that holds exact ``attention``,
    or sub-quadratic layers with the sampled attention (``quantum``) in some.
    """
    entries = layer_mixers(mixer, layers)
    names = {name for entry in entries for name in entry}
    if not names & SUBQUADRATIC or not names <= SUBQUADRATIC | {BASELINE, SAMPLED_ATTENTION}:
        return False
    return 4 * sum(BASELINE in entry for entry in entries) <= layers


def goal_report(rows: list[dict], layers: int, *, time_budget: float | None) -> list[str]:
    """Issue 13's goals checked on ``rows``, each against the attention row with the same position scheme.

    Speed: a hybrid (:func:`is_goal_model`, not a single mixer) trains >= 2x faster per step than
    attention (process CPU time; elapsed shown beside it). Quality, with a time budget: some
    sub-quadratic or hybrid model reaches a lower validation loss than attention.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    lines = []
    for base in (r for r in ok if r["mixer"] == BASELINE):
        group = [r for r in ok if r["position"] == base["position"] and is_goal_model(r["mixer"], layers)]
        for r in (r for r in group if is_hybrid(r["mixer"])):
            cpu = base["cpu_ms_per_step"] / r["cpu_ms_per_step"]
            wall = base["ms_per_step"] / r["ms_per_step"]
            verdict = "reached" if cpu >= 2 else "NOT reached"
            lines.append(
                f"speed: {r['variant']} trains {cpu:.2f}x as fast per step as {base['variant']} "
                f"(CPU time; {wall:.2f}x elapsed): {verdict} (goal >= 2x)"
            )
        if time_budget is not None and group:
            best = min(group, key=lambda r: r["val_loss"])
            verdict = "reached" if best["val_loss"] < base["val_loss"] else "NOT reached"
            lines.append(
                f"quality at equal time: best sub-quadratic or hybrid {best['variant']} val_loss "
                f"{best['val_loss']:.4f} vs {base['variant']} {base['val_loss']:.4f}: {verdict}"
            )
    return lines
