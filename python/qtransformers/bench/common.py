"""Options and helpers every benchmark suite shares (device, dtype, lengths, output folder)."""

from __future__ import annotations

import argparse
import os
import platform
import shlex

import torch

from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_common_arguments(
    parser: argparse.ArgumentParser, *, default_lengths: str, quick_lengths: str, repeats: tuple[int, int] = (3, 5)
) -> None:
    """Add --device, --dtype, --lengths, --quick, --repeats, --out, --no-progress; ``repeats``: (quick, full) defaults."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="dtype (default float32)")
    parser.add_argument("--lengths", default=None, help=f"comma-separated sequence lengths (default {default_lengths})")
    parser.add_argument("--quick", action="store_true", help=f"small run: lengths {quick_lengths}, fewer repeats")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed runs per point, the median is reported (default {repeats[1]}; {repeats[0]} with --quick)",
    )
    parser.add_argument("--out", default="qtransformers-bench", help="output folder (default ./qtransformers-bench)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    parser.set_defaults(_default_lengths=default_lengths, _quick_lengths=quick_lengths, _repeats=repeats)


def resolve(args: argparse.Namespace) -> tuple[torch.device, torch.dtype, list[int]]:
    """Validated (device, dtype, lengths) from the common options; fills ``args.repeats``."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked for but torch.cuda.is_available() is False")
    text = args.lengths or (args._quick_lengths if args.quick else args._default_lengths)
    try:
        lengths = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--lengths must be comma-separated integers, got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise InvalidArgumentError(f"--lengths must be positive integers, got {text!r}")
    if args.repeats is None:
        args.repeats = args._repeats[0] if args.quick else args._repeats[1]
    if args.repeats < 1:
        raise InvalidArgumentError(f"--repeats must be >= 1, got {args.repeats}")
    return device, DTYPES[args.dtype], lengths


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


def header(device: torch.device, dtype: torch.dtype, extra: str) -> str:
    """One line naming the machine, device, dtype and torch version for a results table."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
        )
    return f"# {device.type} ({where}), {dtype_name(dtype)}, torch {torch.__version__}; {extra}"


def invocation(args: argparse.Namespace) -> str:
    """The command line of ``args`` as ``qtransformers ...`` ("" when it was not parsed from one)."""
    argv = getattr(args, "_argv", None)
    return "qtransformers " + " ".join(shlex.quote(a) for a in argv) if argv else ""
