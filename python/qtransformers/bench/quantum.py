"""``qtransformers bench quantum``: noisy-attention error, MPS error/compression, Rust vs numpy speed.

Three tables, each also written as CSV into ``--out``:

* ``noise.csv``: relative Frobenius error of the simulated attention output against exact
  float64 attention (mean over batch and heads), per channel, noise level and shot count.
* ``mps.csv``: MPS of attention matrices (and of a random state, which does not compress)
  against the bond dimension: error bound, weight and output errors, honest compression ratio.
* ``speed.csv``: median wall time of the Rust channel application and TT-SVD against the numpy
  references (``apply_channel_ref``, ``tt_svd_ref``) on the same inputs, timed alternately, their
  ratio, and the median process CPU time (all threads) of each. CPU only, float64/complex128.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from qtransformers.bench import common
from qtransformers.bench.report import format_table, plot_lines, write_csv
from qtransformers.functional import exact_attention
from qtransformers.quantum import (
    MPS,
    NOISE_MODELS,
    MatrixProductStateSimulator,
    QuantumAttentionSimulator,
    amplitude_damping,
    apply_channel_ref,
    depolarizing,
    relative_error,
    thermal_relaxation,
    tt_svd_ref,
)

NOISE_COLUMNS = ["channel", "N", "noise_level", "shots", "rel_error"]
MPS_COLUMNS = ["input", "N", "max_bond", "bond_used", "bound_rel", "weights_rel_err", "output_rel_err", "compression"]
SPEED_COLUMNS = ["op", "size", "rust_ms", "numpy_ms", "numpy/rust", "rust_cpu_ms", "numpy_cpu_ms"]
CPU = torch.device("cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the quantum suite."""
    common.add_common_arguments(parser, default_lengths="16,64", quick_lengths="8")
    parser.add_argument("--levels", default="0,0.01,0.03,0.1,0.3", help="noise levels (default 0,0.01,0.03,0.1,0.3)")
    parser.add_argument("--shots", default="64,256,1024,inf", help="shot counts, inf = exact (default 64,256,1024,inf)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads (default 2)")
    parser.add_argument(
        "--mps-length", type=int, default=256, help="attention length N for the MPS table (default 256)"
    )
    parser.add_argument("--bonds", default="1,2,4,8,16,32,64,full", help="bond dimensions (default 1,...,64,full)")
    parser.add_argument("--qubits", default="8,10", help="register sizes n for channel speed (default 8,10)")
    parser.add_argument("--svd-qubits", default="14,18", help="log2 sizes of TT-SVD speed vectors (default 14,18)")


def _attention_inputs(length: int, heads: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (1, heads, length, 32)
    q, k, v = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(3))
    return 2 * q, k, v  # sharper softmax than unit scores, so rows are not near-uniform


def noise_rows(lengths, levels, shots_list, heads, progress) -> list[dict]:
    """Attention error per channel, noise level and shot count."""
    rows = []
    jobs = [(n, m, lv) for n in lengths for m in NOISE_MODELS for lv in levels]
    for n, model, level in tqdm(jobs, desc="noise", disable=not progress):
        q, k, v = _attention_inputs(n, heads)
        exact, _ = exact_attention(q, k, v)
        outcome = QuantumAttentionSimulator(model, level, shots=None).weights(q, k)
        for shots in shots_list:
            sim = QuantumAttentionSimulator(shots=shots)
            w = sim.measure(outcome, generator=torch.Generator().manual_seed(0))
            err = relative_error(torch.matmul(w, v), exact)
            rows.append({"channel": model, "N": n, "noise_level": level, "shots": shots or "inf", "rel_error": err})
    return rows


def mps_rows(length, heads, bonds, progress) -> list[dict]:
    """MPS error and compression of attention matrices and of a random state, per bond dimension."""
    q, k, v = _attention_inputs(length, heads)
    rows = []
    for r in tqdm(MatrixProductStateSimulator.sweep(q, k, v, bonds), desc="mps", disable=not progress):
        rows.append(
            {
                "input": "attention",
                "N": length,
                "max_bond": r["max_bond_dim"] or "full",
                "bond_used": r["bond_dim_used"],
                "bound_rel": r["truncation_bound_rel"],
                "weights_rel_err": r["weights_rel_error"],
                "output_rel_err": r["output_rel_error"],
                "compression": r["compression_ratio"],
            }
        )
    state = np.random.default_rng(0).normal(size=length * length)
    state /= np.linalg.norm(state)
    for chi in bonds:
        mps = MPS.from_dense(state, max_bond=chi)
        rows.append(
            {
                "input": "random-state",
                "N": length,
                "max_bond": chi or "full",
                "bond_used": max(mps.bond_dims),
                "bound_rel": mps.truncation_error,
                "weights_rel_err": float(np.linalg.norm(mps.to_dense() - state)),
                "output_rel_err": float("nan"),
                "compression": mps.compression_ratio,
            }
        )
    return rows


def speed_rows(qubits, svd_qubits, repeats, progress) -> list[dict]:
    """Median ms of Rust vs numpy for channel application and TT-SVD on identical inputs."""
    rng = np.random.default_rng(0)
    cases = []
    for n in qubits:
        d = 1 << n
        batch = max(1, 4096 // d) if n < 10 else 1
        g = rng.normal(size=(batch, d, d)) + 1j * rng.normal(size=(batch, d, d))
        rho = np.ascontiguousarray(g @ np.swapaxes(g.conj(), -1, -2))
        size = f"{batch}x2^{n}x2^{n}"
        amp, dep, th = amplitude_damping(0.2, 0.1), depolarizing(0.1, 2), thermal_relaxation(1.0, 0.8, 0.3)

        def each_ref(rho=rho, th=th, n=n):
            out = rho
            for q in range(n):
                out = apply_channel_ref(out, th.kraus, [q])
            return out

        cases += [
            (
                "amplitude_damping on qubit 1",
                size,
                lambda r=rho, c=amp: c.apply(r, [1]),
                lambda r=rho, c=amp: apply_channel_ref(r, c.kraus, [1]),
            ),
            (
                "2-qubit depolarizing on (0, n-1)",
                size,
                lambda r=rho, c=dep, n=n: c.apply(r, [0, n - 1]),
                lambda r=rho, c=dep, n=n: apply_channel_ref(r, c.kraus, [0, n - 1]),
            ),
            ("thermal_relaxation on every qubit", size, lambda r=rho, c=th: c.apply_each(r), each_ref),
        ]
    for n in svd_qubits:
        vec = rng.normal(size=1 << n)
        cases.append(
            (
                "TT-SVD exact, random real vector",
                f"2^{n}",
                lambda a=vec: MPS.from_dense(a),
                lambda a=vec, n=n: tt_svd_ref(a, [2] * n),
            )
        )
        cases.append(
            (
                "TT-SVD max_bond=16, random real vector",
                f"2^{n}",
                lambda a=vec: MPS.from_dense(a, max_bond=16),
                lambda a=vec, n=n: tt_svd_ref(a, [2] * n, 16),
            )
        )
    rows = []
    for op, size, fast, ref in tqdm(cases, desc="speed", disable=not progress):
        (rust_ms, rust_cpu), (numpy_ms, numpy_cpu) = _paired_medians(fast, ref, repeats)
        rows.append(
            {
                "op": op,
                "size": size,
                "rust_ms": rust_ms,
                "numpy_ms": numpy_ms,
                "numpy/rust": numpy_ms / rust_ms,
                "rust_cpu_ms": rust_cpu,
                "numpy_cpu_ms": numpy_cpu,
            }
        )
    return rows


def _paired_medians(fast, ref, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall ms, process CPU ms over all threads) of ``fast()`` and ``ref()``, timed alternately.

    Alternating the two calls exposes both to the same background load on a shared machine.
    """
    times: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    fast(), ref()  # warm-up
    for _ in range(repeats):
        for key, fn in enumerate((fast, ref)):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[key].append(((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3))
    return tuple(tuple(statistics.median(t[i] for t in times[key]) for i in range(2)) for key in (0, 1))


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{name} must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Run the three parts, print their tables and write CSVs and PNGs into ``args.out``."""
    _, _, lengths = common.resolve(args)
    levels = [float(v) for v in args.levels.split(",")]
    shots = [None if v.strip() == "inf" else int(v) for v in args.shots.split(",")]
    bonds = [None if v.strip() == "full" else int(v) for v in args.bonds.split(",")]
    mps_length = 16 if args.quick and args.mps_length == 256 else args.mps_length
    qubits = [4] if args.quick and args.qubits == "8,10" else _ints(args.qubits, "qubits")
    svd_qubits = [8] if args.quick and args.svd_qubits == "14,18" else _ints(args.svd_qubits, "svd-qubits")
    tables = {
        "noise": (noise_rows(lengths, levels, shots, args.heads, args.progress), NOISE_COLUMNS),
        "mps": (mps_rows(mps_length, args.heads, bonds, args.progress), MPS_COLUMNS),
        "speed": (speed_rows(qubits, svd_qubits, args.repeats, args.progress), SPEED_COLUMNS),
    }
    out = Path(args.out)
    print(common.header(CPU, torch.float64, f"heads={args.heads}, E=32, rayon threads = cores"))
    for name, (rows, columns) in tables.items():
        write_csv(rows, columns, out / f"{name}.csv")
        print(f"\n## {name}\n{format_table(rows, columns)}")
    noise = [r for r in tables["noise"][0] if r["shots"] != "inf" and r["noise_level"] > 0 and r["N"] == max(lengths)]
    if noise:
        plot_lines(
            noise,
            x="shots",
            y="rel_error",
            series="noise_level",
            panels="channel",
            path=out / "noise.png",
            title=f"attention error vs shots (N={max(lengths)})",
        )
    attn = [r for r in tables["mps"][0] if r["max_bond"] != "full"]
    plot_lines(
        attn,
        x="max_bond",
        y="weights_rel_err",
        series="input",
        path=out / "mps.png",
        title=f"MPS error vs bond dimension (N={mps_length})",
    )
    print(f"\nwrote {', '.join(str(out / f'{n}.csv') for n in tables)} and PNG plots")
    return {name: rows for name, (rows, _) in tables.items()}
