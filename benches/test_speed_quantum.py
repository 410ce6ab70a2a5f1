"""Quantum simulation: a noise channel on an 8-qubit density matrix and TT-SVD of a 2^14 vector (Rust vs numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from qtransformers.quantum import MPS, apply_channel_ref, depolarizing, tt_svd_ref

QUBITS = 8
SVD_QUBITS = 14


def _density(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    psi = rng.normal(size=1 << n) + 1j * rng.normal(size=1 << n)
    psi /= np.linalg.norm(psi)
    return np.outer(psi, psi.conj())


@pytest.mark.benchmark(group=f"2-qubit depolarizing on (0, {QUBITS - 1}) of an {QUBITS}-qubit rho")
@pytest.mark.parametrize("impl", ["rust", "numpy reference"])
def test_channel_apply(benchmark, impl):
    rho, channel, qubits = _density(QUBITS), depolarizing(0.1, 2), [0, QUBITS - 1]
    if impl == "rust":
        out = benchmark(channel.apply, rho, qubits)
    else:
        out = benchmark(apply_channel_ref, rho, channel.kraus, qubits)
    assert np.allclose(out, apply_channel_ref(rho, channel.kraus, qubits), atol=1e-12)
    assert abs(np.trace(out) - 1) < 1e-12


@pytest.mark.benchmark(group=f"TT-SVD of a random 2^{SVD_QUBITS} vector, max bond 16")
@pytest.mark.parametrize("impl", ["rust", "numpy reference"])
def test_tt_svd(benchmark, impl):
    vec = np.random.default_rng(0).normal(size=1 << SVD_QUBITS)
    vec /= np.linalg.norm(vec)
    if impl == "rust":
        error = benchmark(MPS.from_dense, vec, 16).truncation_error
    else:
        error = benchmark(tt_svd_ref, vec, [2] * SVD_QUBITS, 16)[1]
    assert 0.0 < error < 1.0  # bond 16 truncates a random unit vector, but keeps part of it
    assert error == pytest.approx(tt_svd_ref(vec, [2] * SVD_QUBITS, 16)[1], rel=1e-9)
