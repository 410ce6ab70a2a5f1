"""``qtransformers train``: train a byte-level language model on a text file.

``--model`` is any causal mixer name from the registry or a hybrid pattern of them
(``qrh,qrh,qrh,attention``, ``hyena+quantum``; see :mod:`qtransformers.mixers.hybrid`). Run it under
``torchrun --nproc_per_node=K -m qtransformers train ...`` for data parallel training.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.distributed as dist

from qtransformers import mixers
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.models import ByteLMConfig
from qtransformers.models.bytelm import POSITIONS
from qtransformers.train.trainer import DTYPES, TrainConfig, Trainer


def parse_mixer_options(text: str | None) -> dict:
    """The ``--mixer-options`` JSON object (``{}`` when not given)."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--mixer-options must be a JSON object, got {text!r}: {exc}") from None
    if not isinstance(options, dict):
        raise InvalidArgumentError(f"--mixer-options must be a JSON object, got {text!r}")
    return options


def parse_floats(text: str, count: int, option: str) -> tuple[float, ...]:
    """``count`` comma-separated floats from ``text`` (for ``option``'s error message)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise InvalidArgumentError(f"{option} needs {count} comma-separated numbers, got {text!r}")
    return values


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model-size options shared by ``train`` and ``ablate``."""
    parser.add_argument("--seq-len", type=int, default=128, help="context length in bytes (default 128)")
    parser.add_argument("--batch-size", type=int, default=12, help="sequences per process per micro-step (default 12)")
    parser.add_argument("--dim", type=int, default=128, help="model width (default 128)")
    parser.add_argument("--layers", type=int, default=4, help="number of blocks (default 4)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    parser.add_argument(
        "--position",
        default="learned",
        choices=list(POSITIONS),
        help="learned position table, rotary positions in the attention-based mixers, or none (default learned)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", *sorted(DTYPES)], help="autocast dtype (auto: bf16 on GPU)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    parser.add_argument("--eval-batches", type=int, default=8, help="validation batches per evaluation (default 8)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qtransformers train``."""
    parser.add_argument(
        "--model",
        required=True,
        help="causal mixer name or pattern (e.g. qrh,qrh,qrh,attention or hyena+quantum), names from: "
        + ", ".join(mixers.available(causal=True)),
    )
    parser.add_argument("--data", required=True, help="any text file (read as raw bytes)")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps")
    parser.add_argument("--out", required=True, help="run folder: metrics.jsonl, loss.png, checkpoints")
    add_model_arguments(parser)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step (default 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--ckpt-every", type=int, default=None, help="checkpoint interval (default steps/5)")
    parser.add_argument("--eval-every", type=int, default=None, help="validation interval (default steps/5)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default min(100, steps/10))")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute blocks in backward")
    parser.add_argument("--mixer-options", default=None, help="JSON options for the mixer, e.g. '{\"num_heads\": 4}'")
    parser.add_argument(
        "--energy-weights", default="0.01,0.01,0.01", help="final weights of the local,global,entanglement energies"
    )
    parser.add_argument("--curriculum", default="staged", choices=["staged", "constant"], help="energy-weight schedule")


def run(args: argparse.Namespace) -> list[dict]:
    """Train as the options say; prints a one-line summary on rank 0."""
    model_config = ByteLMConfig(
        mixer=args.model,
        dim=args.dim,
        layers=args.layers,
        max_seq_len=args.seq_len,
        mixer_options=parse_mixer_options(args.mixer_options),
        activation_checkpointing=args.activation_checkpointing,
        position=args.position,
    )
    config = TrainConfig(
        data=args.data,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        grad_accum=args.grad_accum,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
        seed=args.seed,
        ckpt_every=args.ckpt_every,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        energy_weights=parse_floats(args.energy_weights, 3, "--energy-weights"),
        curriculum=args.curriculum,
        resume=args.resume,
        progress=args.progress,
    )
    trainer = Trainer(model_config, config)
    try:
        history = trainer.run()
        if dist.is_initialized():
            dist.barrier()  # every rank is past its last collective before any closes its gloo connections
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if trainer.rank == 0 and history:
        last_val = next((r for r in reversed(history) if "val_loss" in r), None)
        summary = f"{args.model}: {trainer.model.num_parameters():,} parameters, step {history[-1]['step']}"
        if last_val is not None:
            summary += f", val_loss {last_val['val_loss']:.4f} nats/byte ({last_val['val_bpb']:.4f} bits/byte)"
        print(summary + f"; outputs in {args.out}")
    return history
