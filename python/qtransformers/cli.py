"""The ``qtransformers`` command line: bench, train, generate and ablate.

Each command (and each bench suite) lives in a module with ``add_arguments(parser)``
and ``run(args)``; this file only wires them into argparse.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qtransformers import __version__
from qtransformers.bench import DEFAULT_SUITE, SUITES
from qtransformers.exceptions import QTransformersError

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("qtransformers.train.train_command", "train a byte-level language model on a text file"),
    "generate": ("qtransformers.train.generate_command", "generate text from a trained checkpoint"),
    "ablate": ("qtransformers.train.ablate_command", "train every causal mixer at an equal parameter budget"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="qtransformers",
        description="Quantum-inspired and spectral sequence mixers: benchmarks, training, generation.",
    )
    parser.add_argument("--version", action="version", version=f"qtransformers {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run a benchmark suite (default: speed)")
    suites = bench.add_subparsers(dest="suite")
    for name, module in SUITES.items():
        suite = importlib.import_module(module)
        sub = suites.add_parser(name, help=(suite.__doc__ or name).splitlines()[0].replace("``", ""))
        suite.add_arguments(sub)
        sub.set_defaults(_module=module)
    # `qtransformers bench [options]` runs the default suite with its options.
    importlib.import_module(SUITES[DEFAULT_SUITE]).add_arguments(bench)
    bench.set_defaults(_module=SUITES[DEFAULT_SUITE])
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qtransformers`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args._argv = argv  # the command line, for reports that record it
    try:
        importlib.import_module(args._module).run(args)
    except QTransformersError as exc:
        print(f"qtransformers: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
