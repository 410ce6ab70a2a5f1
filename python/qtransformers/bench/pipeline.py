"""``qtransformers bench all``: every benchmark with its documented settings, into ``OUT/<bench>/``.

``PIPELINE`` is the one table of what the docs quote: one line per results folder, naming the
``qtransformers`` arguments of each preset (``full``: the settings the docs quote; ``cpu``: small
enough that the whole pipeline runs in under an hour on 2 CPU cores; ``test``: toy sizes, for the
test suite). Each line runs as its own ``python -m qtransformers`` process, so its command is
exactly what a user would type. Its folder gets the files the benchmark writes (CSV, PNG), a
``results.md`` (the command, the machine, the printed output, every CSV as a table and every PNG)
and a ``machine.json`` (CPU model, cores, GPU, versions, date, command, load average). A run writes
into ``OUT/<bench>.partial`` and replaces ``OUT/<bench>`` only when it succeeds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from qtransformers.bench.report import format_markdown, format_table, read_csv
from qtransformers.exceptions import BenchmarkFailedError, InvalidArgumentError

PRESETS = ("test", "cpu", "full")
DEFAULT_DATA = "../shared/data/tinyshakespeare.txt"
TINY_LM = "--dim 16 --layers 1 --heads 2 --seq-len 16 --batch-size 2 --eval-batches 1 --long-context 0"
ABLATION = "--dim 64 --layers 4 --heads 4 --seq-len 64 --batch-size 12 --eval-batches 16"
PEERS = "performer,performer-pytorch,nystrom,nystrom-attention,linformer,linformer-pytorch"
GOAL = "bench long-context --only attention,qrh,qrh-torchfft"
# context 4096, the hybrids at the baseline's width (a width of 132 or 136 gives attention heads of 33 or 34 channels, slower)
STEP_RATIO = "bench step-ratio --hybrids spectral,attention,spectral,spectral qrh,qrh,qrh,attention --rope --same-width"


@dataclass(frozen=True)
class Entry:
    """One results folder: ``qtransformers`` arguments per preset (None: not run in that preset).

    ``{data}`` stands for the text file (``--data``), ``{cache}`` for ``OUT/.cache``; ``--out`` and
    ``--no-progress`` are appended. With ``script=True`` the arguments are a Python script (path
    relative to the repository root) and its options, run as ``python SCRIPT ...`` inside the folder. ``env`` is set for the run and recorded in its command; ``drop``
    lists glob patterns (relative to the folder) removed before it is kept, e.g. checkpoints.
    """

    name: str
    test: str | None
    cpu: str | None
    full: str | None
    needs_data: bool = False
    env: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    script: bool = False

    def arguments(self, preset: str) -> str | None:
        """The argument string of ``preset`` (placeholders not filled), or None."""
        return getattr(self, preset)


# A new suite is one line here.
# fmt: off
PIPELINE: tuple[Entry, ...] = (
    Entry("speed", "bench speed --lengths 16 --dim 16 --heads 2 --repeats 1 --only attention,qrh", "bench --quick", "bench --quick"),
    Entry("quantum", "bench quantum --quick --repeats 1 --levels 0,0.1 --shots 64,inf --bonds 1,full", "bench quantum --repeats 3", "bench quantum --repeats 9"),
    Entry("attention-error-4096", "bench attention-error --regimes gaussian --lengths 64 --budgets 4 --seeds 1 --impls naive,stratified", "bench attention-error --data {data} --lengths 1024 --budgets 8,32 --seeds 1 --train-seconds 60 --capture {cache}/capture-cpu.safetensors", "bench attention-error --data {data} --lengths 4096 --budgets 8,32,128 --seeds 1 --capture {cache}/capture.safetensors", needs_data=True),
    Entry("attention-error", "bench attention-error --regimes gaussian --lengths 32 --budgets 4 --seeds 1 --impls naive,stratified+cv,performer", "bench attention-error --data {data} --lengths 256 --budgets 8,32 --seeds 1 --train-seconds 60 --capture {cache}/capture-cpu.safetensors", "bench attention-error --data {data} --lengths 256,1024 --seeds 2 --capture {cache}/capture.safetensors", needs_data=True),
    Entry("baselines-tau1", "bench attention-error --regimes gaussian --lengths 32 --budgets 4 --seeds 1 --impls performer,nystrom,linformer", f"bench attention-error --regimes gaussian --lengths 1024 --budgets 64,256 --seeds 3 --q-scale 1 --impls {PEERS}", f"bench attention-error --regimes gaussian --lengths 1024 --budgets 64,256 --seeds 3 --q-scale 1 --impls {PEERS}"),
    Entry("baselines-tau2", "bench attention-error --regimes gaussian --lengths 32 --budgets 4 --seeds 1 --q-scale 2 --impls performer,nystrom,linformer", f"bench attention-error --regimes gaussian --lengths 1024 --budgets 64,256 --seeds 3 --q-scale 2 --impls {PEERS}", f"bench attention-error --regimes gaussian --lengths 1024 --budgets 64,256 --seeds 3 --q-scale 2 --impls {PEERS}"),
    Entry("long-context-goal", f"{GOAL} --lengths 16,32 --dim 16 --heads 2 --repeats 1", f"{GOAL} --lengths 1024,2048,4096 --repeats 3", f"{GOAL} --lengths 1024,2048,4096,8192,16384 --repeats 3"),
    Entry("long-context", "bench long-context --lengths 16,32 --dim 16 --heads 2 --repeats 1 --only attention,hyena,spectral", "bench long-context --lengths 256,512,1024 --repeats 2 --max-seconds 10", "bench long-context --repeats 3"),
    Entry("long-context-ab", "bench long-context --only qrh,qrh-torchfft --lengths 16,32 --dim 16 --heads 2 --repeats 1", "bench long-context --only qrh,qrh-torchfft --lengths 2048,4096 --repeats 3", "bench long-context --only qrh,qrh-torchfft --lengths 2048,4096,8192,16384 --repeats 5"),
    Entry("qrh-energy", "examples/qrh_energy.py", "examples/qrh_energy.py", "examples/qrh_energy.py", script=True),
    Entry("compression", "examples/compress_layers.py", "examples/compress_layers.py", "examples/compress_layers.py", script=True),
    Entry("long-context-16k", None, None, "bench long-context --only attention,qrh --lengths 16384 --repeats 3"),
    Entry("decode", "bench decode --quick --kinds clustered,needle --sizes 256,512 --repeats 1", "bench decode --data {data} --sizes 4096,16384,65536 --train-seconds 60", "bench decode --data {data}", needs_data=True),
    Entry("decode-bias", "bench decode-bias --quick --trials 100", "bench decode-bias --quick", "bench decode-bias"),
    Entry("real-model", "bench real-model --data {data} --backends exact,stratified --budgets 4 --seeds 1 --paragraphs 4", "bench real-model --data {data} --backends stratified,hybrid,lsh --budgets 32 --seeds 1 --paragraphs 32", "bench real-model --data {data} --backends naive,naive+cv,stratified,stratified+cv,stratified+adaptive,hybrid,hybrid+favor-cv,lsh --budgets 8,16,32,64 --seeds 3 --paragraphs 64", needs_data=True, env={"OMP_NUM_THREADS": "1"}),
    Entry("recall", "bench recall --tasks induction --mixers attention --lengths 16 --steps 5 --lr-sweep 1", "bench recall --tasks mqar,induction --mixers attention hyena hyena,hyena,hyena,attention spectral,attention,spectral,spectral --lengths 64 --lr-sweep 1 --time-limit 300", "bench recall --lengths 64,128,256,512 --lr-sweep 3"),
    Entry("step-ratio", "bench step-ratio --preset nanogpt-cpu --seq-len 16 --batch-size 2 --hybrids qrh,qrh,qrh,attention --rounds 6", f"{STEP_RATIO} --rounds 10", f"{STEP_RATIO} --rounds 20", env={"OMP_NUM_THREADS": "1"}),
    Entry("lm-comparison", f"ablate --data {{data}} --steps 2 {TINY_LM} --only transformer-sdpa --hybrids qrh+attention", "ablate --data {data} --preset nanogpt-cpu --steps 200 --eval-batches 4 --long-context 0 --only attention,qrh-full,hyena --hybrids qrh,qrh,qrh,attention", "ablate --data {data} --preset nanogpt-cpu --steps 2000 --eval-every 500 --eval-batches 20 --long-context 0 --only transformer-sdpa,qrh-full,hyena,spectral,phase,quantum --hybrids qrh,qrh,qrh,attention hyena,hyena,hyena,attention hyena+quantum", needs_data=True, env={"OMP_NUM_THREADS": "1"}, drop=("*/ckpt-*", "*/latest")),
    Entry("ablation", f"ablate --data {{data}} --steps 2 {TINY_LM} --only transformer-sdpa,qrh-full", f"ablate --data {{data}} --steps 200 {ABLATION} --long-context 256", f"ablate --data {{data}} --steps 1000 {ABLATION} --long-context 1024", needs_data=True, env={"OMP_NUM_THREADS": "1"}, drop=("*/ckpt-*", "*/latest")),
)
# fmt: on


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qtransformers bench all``."""
    parser.add_argument(
        "--preset",
        default="cpu",
        choices=PRESETS,
        help="test (toy sizes), cpu (default; smaller sizes for a 2-core CPU) or full (the settings the docs quote)",
    )
    parser.add_argument("--out", default="docs/results", help="results root (default docs/results)")
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help=f"text file of the LM and capture runs (default {DEFAULT_DATA})"
    )
    parser.add_argument("--only", default=None, help="comma-separated entry names (default all)")
    parser.add_argument("--list", action="store_true", help="print each entry's command and run nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def command(entry: Entry, preset: str, out: Path, data: str, folder: Path | None = None) -> list[str]:
    """The ``qtransformers`` argument list of ``entry`` in ``preset``, writing into ``folder`` (default
    ``out / entry.name``)."""
    text = entry.arguments(preset)
    if text is None:
        raise InvalidArgumentError(f"{entry.name!r} does not run in preset {preset!r}")
    filled = shlex.split(text.format(data=data, cache=out / ".cache"))
    if entry.script:
        return filled
    return [*filled, "--out", str(folder or out / entry.name), "--no-progress"]


def shell_line(entry: Entry, argv: list[str]) -> str:
    """``argv`` as the shell line a user would type (environment first)."""
    env = [f"{k}={v}" for k, v in entry.env.items()]
    return shlex.join(env + ["python" if entry.script else "qtransformers", *argv])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model and cores, GPU (None without CUDA), OS, Python, torch, numpy and qtransformers versions."""
    import numpy
    import torch

    from qtransformers import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "qtransformers": __version__,
    }


def results_markdown(name: str, record: dict, stdout: str, folder: Path) -> str:
    """``results.md`` of one run: command, machine, printed output, each CSV as a table, each PNG."""
    m = record["machine"]
    gpu = f"GPU present: {m['gpu']} (a command runs on CPU unless it says --device cuda)" if m["gpu"] else "no GPU"
    lines = [
        f"# {name}",
        "",
        f"Written by the results pipeline (`{record['pipeline_command']}`, preset `{record['preset']}`).",
        "",
        "Command:",
        "",
        "```bash",
        record["command"],
        "```",
        "",
        f"Machine: {m['cpu']} ({m['machine']}, {m['cores']} cores), {gpu}; {m['os']}; Python {m['python']}, "
        f"torch {m['torch']}, numpy {m['numpy']}, qtransformers {m['qtransformers']}.",
        "",
        f"Started {record['started_utc']}, took {record['seconds']:.0f} s; load average "
        f"{record['load_average_start']:.2f} at the start, {record['load_average_end']:.2f} at the end "
        "(other jobs on the machine inflate times: read ratios measured in one run).",
        "",
        "## Printed output",
        "",
        "```text",
        stdout.rstrip(),
        "```",
    ]
    for path in sorted(folder.glob("*.csv")):
        rows, columns = read_csv(path)
        lines += ["", f"## `{path.name}`", "", format_markdown(rows, columns)]
    for path in sorted(folder.glob("*.png")):
        lines += ["", f"![{path.stem}]({path.name})"]
    return "\n".join(lines) + "\n"


def run_entry(entry: Entry, preset: str, out: Path, data: str, pipeline_command: str) -> dict:
    """Run one entry in its own process; on success its folder replaces ``out / entry.name``."""
    argv = command(entry, preset, out, data)
    partial = out / f"{entry.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    if entry.script:
        partial.mkdir(parents=True)
        script, *options = argv
        run_argv = [sys.executable, str(Path(script).resolve()), *options]
    else:
        run_argv = [sys.executable, "-m", "qtransformers", *command(entry, preset, out, data, partial)]
    proc = subprocess.run(
        run_argv, cwd=partial if entry.script else None, env={**os.environ, **entry.env}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        return {
            "name": entry.name,
            "status": f"failed (exit {proc.returncode})",
            "seconds": seconds,
            "error": proc.stderr,
        }
    record = {
        "command": shell_line(entry, argv),
        "pipeline_command": pipeline_command,
        "preset": preset,
        "started_utc": started.isoformat(timespec="seconds"),
        "seconds": seconds,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "machine": machine_info(),
    }
    for pattern in entry.drop:
        for path in partial.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    stdout = proc.stdout.replace(str(partial), str(out / entry.name))
    (partial / "machine.json").write_text(json.dumps(record, indent=2) + "\n")
    (partial / "results.md").write_text(results_markdown(entry.name, record, stdout, partial))
    final = out / entry.name
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return {"name": entry.name, "status": "ok", "seconds": seconds}


def select(only: str | None) -> list[Entry]:
    """The entries named in ``only`` (comma-separated), in pipeline order; all when None."""
    if not only:
        return list(PIPELINE)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = [e.name for e in PIPELINE]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InvalidArgumentError(f"unknown pipeline entries {unknown}; available: {known}")
    return [e for e in PIPELINE if e.name in names]


def run(args: argparse.Namespace) -> list[dict]:
    """Run every selected entry of the preset into ``args.out``; print a summary; raise if any failed."""
    out = Path(args.out)
    entries = [e for e in select(args.only) if e.arguments(args.preset) is not None]
    if args.list:
        for e in entries:
            print(f"{e.name}: {shell_line(e, command(e, args.preset, out, args.data))}")
        return []
    options = ["--preset", args.preset, "--out", str(out)] + (["--only", args.only] if args.only else [])
    options += ["--data", args.data] if args.data != DEFAULT_DATA else []
    pipeline_command = shlex.join(["qtransformers", "bench", "all", *options])
    summary = []
    for entry in tqdm(entries, desc="bench all", disable=not args.progress):
        if entry.needs_data and not Path(args.data).is_file():
            summary.append({"name": entry.name, "status": f"skipped: no data file at {args.data}", "seconds": 0.0})
            continue
        if entry.script and not Path(command(entry, args.preset, out, args.data)[0]).is_file():
            status = "skipped: script not found (run from the repository root)"
            summary.append({"name": entry.name, "status": status, "seconds": 0.0})
            continue
        summary.append(run_entry(entry, args.preset, out, args.data, pipeline_command))
    print(format_table(summary, ["name", "status", "seconds"]))
    failed = [s for s in summary if s["status"].startswith("failed")]
    if failed:
        details = "\n".join(f"{s['name']}: {s['error'].strip().splitlines()[-1:]}" for s in failed)
        raise BenchmarkFailedError(f"{len(failed)} of {len(summary)} benchmarks failed:\n{details}")
    return summary
