"""CPTP noise channels: complete positivity, closed forms, conventions, Rust vs numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.quantum import (
    Channel,
    amplitude_damping,
    apply_channel_ref,
    depolarizing,
    phase_damping,
    thermal_relaxation,
)

unit = st.floats(0.0, 1.0)


def random_density(n: int, rng: np.random.Generator, batch: tuple[int, ...] = ()) -> np.ndarray:
    """Random full-rank mixed states (..., 2^n, 2^n): G G^dagger / Tr."""
    d = 1 << n
    g = rng.normal(size=(*batch, d, d)) + 1j * rng.normal(size=(*batch, d, d))
    rho = g @ np.swapaxes(g.conj(), -1, -2)
    return rho / np.trace(rho, axis1=-2, axis2=-1)[..., None, None]


def full_operator(op: np.ndarray, qubits: list[int], n: int) -> np.ndarray:
    """The 2^n x 2^n matrix of ``op`` acting with its qubit t on qubit qubits[t] (little-endian)."""
    d = 1 << n
    mask = sum(1 << q for q in qubits)

    def local(i):
        return sum(((i >> q) & 1) << t for t, q in enumerate(qubits))

    full = np.zeros((d, d), dtype=complex)
    for i in range(d):
        for j in range(d):
            if i & ~mask == j & ~mask:
                full[i, j] = op[local(i), local(j)]
    return full


def kraus_dense(rho: np.ndarray, ch: Channel, qubits: list[int]) -> np.ndarray:
    """sum_k F_k rho F_k^dagger with the full operators F_k (independent of the superoperator path)."""
    n = rho.shape[-1].bit_length() - 1
    fulls = [full_operator(k, qubits, n) for k in ch.kraus]
    return sum(f @ rho @ f.conj().T for f in fulls)


def all_channels(p, g, lam, p1, t1, t2_frac, time):
    """One channel of each family from parameters in [0, 1] (and t1 > 0)."""
    return [
        depolarizing(p * 4 / 3, 1),
        depolarizing(p * 16 / 15, 2),
        amplitude_damping(g, p1),
        phase_damping(lam),
        thermal_relaxation(t1, max(t2_frac * 2 * t1, 1e-3 * t1), time, p1),
    ]


@settings(max_examples=300, deadline=None)
@given(unit, unit, unit, unit, st.floats(0.1, 10.0), unit, st.floats(0.0, 20.0))
def test_every_channel_is_cptp_over_parameter_grid(p, g, lam, p1, t1, t2_frac, time):
    for ch in all_channels(p, g, lam, p1, t1, t2_frac, time):
        assert ch.is_cptp(atol=1e-10), ch
        tp = np.einsum("kai,kaj->ij", ch.kraus.conj(), ch.kraus)
        assert np.abs(tp - np.eye(ch.dim)).max() < 1e-10
        assert np.linalg.eigvalsh(ch.choi).min() > -1e-10
        assert ch.kraus.dtype == np.complex128 and ch.kraus.shape[1:] == (ch.dim, ch.dim)


@settings(max_examples=200, deadline=None)
@given(unit, unit, unit, unit, st.integers(0, 2**31 - 1))
def test_outputs_are_hermitian_positive_and_unit_trace(p, g, lam, p1, seed):
    rng = np.random.default_rng(seed)
    rho = random_density(3, rng)
    for ch in all_channels(p, g, lam, p1, 1.0, 0.8, 0.5):
        qubits = list(rng.permutation(3)[: ch.num_qubits])
        out = ch.apply(rho, qubits)
        assert np.abs(out - out.conj().T).max() < 1e-12
        assert np.linalg.eigvalsh(out).min() > -1e-12
        assert abs(np.trace(out) - 1) < 1e-12


def test_is_cptp_detects_a_map_that_is_not_trace_preserving():
    assert not Channel([0.5 * np.eye(2)]).is_cptp()
    assert Channel([np.eye(2)]).is_cptp()


@pytest.mark.parametrize("qubits", [[0], [2], [3, 1], [0, 2], [2, 0]])
def test_rust_matches_numpy_reference_and_dense_kraus(qubits):
    rng = np.random.default_rng(0)
    rho = random_density(4, rng, batch=(3,))
    if len(qubits) == 1:
        # A complex superoperator (phase gate, then damping) exercises the complex kernel.
        phase = np.diag([1.0, np.exp(0.7j)])
        ch = Channel([phase]).compose(thermal_relaxation(1.0, 0.6, 0.4, 0.3))
        assert np.abs(ch.superoperator.imag).max() > 0.1
    else:
        # A non-symmetric 2-qubit channel: CNOT (control = its qubit 0) then amplitude damping of its qubit 1.
        cnot = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=complex)
        damp = [np.kron(k, np.eye(2)) for k in amplitude_damping(0.3).kraus]  # kron(A, B): A on qubit 1
        ch = Channel([k @ cnot for k in damp])
        assert ch.is_cptp()
    # A diagonal 2-qubit phase unitary has a sparse complex superoperator (the sparse complex kernel).
    phases = Channel([np.diag(np.exp(1j * np.array([0.0, 0.4, 1.1, 2.5])))])
    for channel in [ch] if len(qubits) == 1 else [ch, phases]:
        fast = channel.apply(rho, qubits)
        ref = apply_channel_ref(rho, channel.kraus, qubits)
        assert np.abs(fast - ref).max() < 1e-13
        for b in range(3):
            assert np.abs(fast[b] - kraus_dense(rho[b], channel, qubits)).max() < 1e-13


def test_little_endian_convention_like_qiskit():
    # |0><0| on 2 qubits; amplitude damping is trivial on |0>, so use bit flips: X on qubit 0 maps
    # basis index 0 -> 1 (bit 0), X on qubit 1 maps 0 -> 2.
    x = Channel([np.array([[0, 1], [1, 0]], dtype=complex)])
    rho = np.zeros((4, 4), dtype=complex)
    rho[0, 0] = 1
    assert x.apply(rho, [0])[1, 1] == 1
    assert x.apply(rho, [1])[2, 2] == 1


def test_amplitude_damping_populations_closed_form():
    rng = np.random.default_rng(1)
    rho = random_density(2, rng)
    g, p1 = 0.35, 0.15
    out = amplitude_damping(g, p1).apply(rho, [1])
    # Qubit 1 is bit 1: its excited population is rho[2,2] + rho[3,3].
    before, after = rho[2, 2] + rho[3, 3], out[2, 2] + out[3, 3]
    assert abs(after - ((1 - g) * before + g * p1)) < 1e-13
    assert abs(out[0, 2] - np.sqrt(1 - g) * rho[0, 2]) < 1e-13  # coherence within qubit 1
    # Repeated damping converges to the bath population.
    ch, state = amplitude_damping(0.5, p1), rho
    for _ in range(60):
        state = ch.apply(state, [1])
    assert abs(state[2, 2] + state[3, 3] - p1) < 1e-12


def test_phase_damping_coherence_decay():
    rng = np.random.default_rng(2)
    rho = random_density(1, rng)
    g = 0.4
    out = phase_damping(g).apply(rho)
    assert np.allclose(np.diag(out), np.diag(rho), atol=1e-14)
    assert abs(out[0, 1] - np.sqrt(1 - g) * rho[0, 1]) < 1e-14
    many = rho
    for _ in range(5):
        many = phase_damping(g).apply(many)
    assert abs(many[0, 1] - (1 - g) ** 2.5 * rho[0, 1]) < 1e-14


@pytest.mark.parametrize("t1,t2,p1", [(1.0, 2.0, 0.0), (2.0, 0.5, 0.2), (1.0, 1.0, 0.5)])
def test_thermal_relaxation_t1_t2_closed_forms(t1, t2, p1):
    rng = np.random.default_rng(3)
    rho = random_density(1, rng)
    for time in (0.0, 0.3, 1.7):
        out = thermal_relaxation(t1, t2, time, p1).apply(rho)
        assert abs(out[1, 1] - (p1 + (rho[1, 1] - p1) * np.exp(-time / t1))) < 1e-13
        assert abs(out[0, 1] - rho[0, 1] * np.exp(-time / t2)) < 1e-13
    # Semigroup: relaxing for s then t equals relaxing for s + t.
    a, b = thermal_relaxation(t1, t2, 0.4, p1), thermal_relaxation(t1, t2, 0.9, p1)
    assert np.abs(a.compose(b).superoperator - thermal_relaxation(t1, t2, 1.3, p1).superoperator).max() < 1e-13


def test_depolarizing_closed_form_on_chosen_qubits():
    rng = np.random.default_rng(4)
    rho = random_density(3, rng)
    p = 0.9
    out = depolarizing(p, 2).apply(rho, [2, 0])
    t = rho.reshape(2, 2, 2, 2, 2, 2)  # axes: q2 q1 q0 (rows), q2 q1 q0 (cols)
    reduced = np.einsum("aibajb->ij", t)  # trace out qubits 2 and 0
    expect = (1 - p) * rho + p * np.einsum("ij,ac,bd->aibcjd", reduced, np.eye(2), np.eye(2)).reshape(8, 8) / 4
    assert np.abs(out - expect).max() < 1e-13
    full = depolarizing(1.0, 3).apply(rho)
    assert np.abs(full - np.eye(8) / 8).max() < 1e-13


def test_compose_applies_self_first():
    h = Channel([np.array([[1, 1], [1, -1]], dtype=complex) / np.sqrt(2)])
    damp = amplitude_damping(0.6)
    rho = random_density(2, np.random.default_rng(5))
    both = h.compose(damp).apply(rho, [1])
    assert np.abs(both - damp.apply(h.apply(rho, [1]), [1])).max() < 1e-13
    assert np.abs(both - h.apply(damp.apply(rho, [1]), [1])).max() > 1e-3
    assert (
        np.abs(
            amplitude_damping(0.2).compose(amplitude_damping(0.5)).superoperator - amplitude_damping(0.6).superoperator
        ).max()
        < 1e-14
    )


def test_apply_each_and_kinds_of_input():
    rng = np.random.default_rng(6)
    rho = random_density(3, rng, batch=(2, 2))
    ch = depolarizing(0.3)
    each = ch.apply_each(rho)
    step = rho
    for q in range(3):
        step = ch.apply(step, [q])
    assert each.shape == rho.shape and np.abs(each - step).max() < 1e-13
    t = torch.from_numpy(rho).to(torch.complex64)
    out = ch.apply_each(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.complex64 and out.shape == t.shape
    assert np.abs(out.numpy() - each).max() < 1e-5
    real = ch.apply(np.eye(2) / 2)
    assert real.dtype == np.complex128


def test_invalid_parameters_raise_with_the_allowed_range():
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1.3333333333333333\]"):
        depolarizing(1.34)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1.0666666666666667\]"):
        depolarizing(1.1, num_qubits=2)
    depolarizing(16 / 15, num_qubits=2)  # the largest CP value is allowed
    with pytest.raises(InvalidArgumentError, match=r"num_qubits must be in \[1, 5\]"):
        depolarizing(0.1, num_qubits=0)
    with pytest.raises(InvalidArgumentError, match=r"gamma must be in \[0, 1\]"):
        amplitude_damping(1.2)
    with pytest.raises(InvalidArgumentError, match=r"excited_state_population must be in \[0, 1\]"):
        amplitude_damping(0.2, -0.1)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
        phase_damping(float("nan"))
    with pytest.raises(InvalidArgumentError, match=r"t2 must be in \(0, 2 \* t1\] = \(0, 2\]"):
        thermal_relaxation(1.0, 2.5, 0.1)
    with pytest.raises(InvalidArgumentError, match="t1 must be"):
        thermal_relaxation(0.0, 0.0, 0.1)
    with pytest.raises(InvalidArgumentError, match="time must be"):
        thermal_relaxation(1.0, 1.0, -1.0)


def test_bad_shapes_and_qubits():
    ch = phase_damping(0.1)
    with pytest.raises(ShapeError, match="2\\^n"):
        ch.apply(np.eye(3))
    with pytest.raises(ShapeError, match="needs qubits"):
        ch.apply(np.eye(4) / 4)
    with pytest.raises(InvalidArgumentError, match="in \\[0, 1\\]"):
        ch.apply(np.eye(4) / 4, [2])
    with pytest.raises(ShapeError, match="needs 1 qubits"):
        ch.apply(np.eye(4) / 4, [0, 1])
    with pytest.raises(InvalidArgumentError, match="distinct"):
        depolarizing(0.1, 2).apply(np.eye(4) / 4, [1, 1])
    with pytest.raises(ShapeError):
        Channel(np.zeros((1, 3, 3)))
    with pytest.raises(ShapeError, match="compose"):
        ch.compose(depolarizing(0.1, 2))
