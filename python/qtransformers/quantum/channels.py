"""CPTP noise channels in Kraus form, applied to density matrices by the Rust core.

Conventions (as Qiskit): qubit ``i`` is bit ``i`` of a basis index (little-endian), and a channel
on ``m`` qubits applied with ``qubits=[q_0, .., q_{m-1}]`` acts on the state's qubit ``q_t`` with
its own qubit ``t``. Density matrices are (..., 2^n, 2^n) numpy arrays or torch tensors; the
channel is applied through its own (4^m x 4^m) superoperator on every (2^m x 2^m) block, never
through the 4^n x 4^n superoperator of the register. :func:`apply_channel_ref` is the plain
numpy version of the same math.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError


class Channel:
    """A quantum channel E(rho) = sum_k K_k rho K_k^dagger on ``num_qubits`` qubits.

    ``kraus`` is (k, d, d) with d = 2^m; it is stored as a read-only complex128 array.
    """

    def __init__(self, kraus, name: str = "channel") -> None:
        ops = np.array(kraus, dtype=np.complex128)
        if ops.ndim == 2:
            ops = ops[None]
        if ops.ndim != 3 or ops.shape[1] != ops.shape[2] or ops.shape[0] == 0:
            raise ShapeError(f"kraus must be (k, d, d) with k >= 1, got shape {ops.shape}")
        d = ops.shape[1]
        if d < 2 or d & (d - 1):
            raise ShapeError(f"Kraus operators must be 2^m x 2^m with m >= 1, got {d} x {d}")
        if not np.isfinite(ops).all():
            raise InvalidArgumentError("Kraus operators must be finite")
        ops.flags.writeable = False
        self._kraus = ops
        self.name = name

    @property
    def kraus(self) -> np.ndarray:
        """Kraus operators, complex128 (k, d, d), read-only."""
        return self._kraus

    @property
    def dim(self) -> int:
        """d = 2^num_qubits."""
        return self._kraus.shape[1]

    @property
    def num_qubits(self) -> int:
        """Number of qubits m the channel acts on."""
        return self.dim.bit_length() - 1

    @property
    def choi(self) -> np.ndarray:
        """Choi matrix sum_ij |i><j| (x) E(|i><j|), (d^2, d^2), entry [(i, a), (j, b)] = E(|i><j|)[a, b].

        E is completely positive iff it is positive semidefinite, trace preserving iff its
        partial trace over the output factor is the identity.
        """
        vecs = self._kraus.transpose(0, 2, 1).reshape(len(self._kraus), -1)  # v_k[(i, a)] = K_k[a, i]
        return np.einsum("kp,kq->pq", vecs, vecs.conj())

    @property
    def superoperator(self) -> np.ndarray:
        """S with vec(E(rho)) = S vec(rho) for row-major vec, (d^2, d^2)."""
        return superoperator_ref(self._kraus)

    def is_cptp(self, atol: float = 1e-10) -> bool:
        """Whether the Choi matrix is PSD and sum_k K_k^dagger K_k = I, both to ``atol``."""
        d = self.dim
        tp = np.einsum("kai,kaj->ij", self._kraus.conj(), self._kraus)
        if np.abs(tp - np.eye(d)).max() > atol:
            return False
        choi = self.choi
        return bool(np.linalg.eigvalsh((choi + choi.conj().T) / 2).min() >= -atol)

    def compose(self, other: Channel) -> Channel:
        """The channel applying ``self`` first, then ``other`` (Qiskit's ``compose`` order)."""
        if not isinstance(other, Channel):
            raise DTypeError(f"compose expects a Channel, got {type(other).__name__}")
        if other.num_qubits != self.num_qubits:
            raise ShapeError(f"cannot compose a {self.num_qubits}-qubit channel with a {other.num_qubits}-qubit one")
        ops = np.einsum("jab,ibc->jiac", other.kraus, self._kraus).reshape(-1, self.dim, self.dim)
        keep = np.abs(ops).reshape(len(ops), -1).max(axis=1) > 0
        return Channel(ops[keep] if keep.any() else ops[:1], name=f"{other.name}∘{self.name}")

    def apply(self, rho, qubits: Sequence[int] | None = None):
        """E applied to (..., 2^n, 2^n) ``rho`` on ``qubits`` (default: all n, which must equal m).

        Returns the same kind (numpy array or torch tensor on the same device) with a complex
        dtype: complex64 for complex64/float32 input, complex128 otherwise.
        """
        arr, restore = _as_batch(rho)
        n = arr.shape[-1].bit_length() - 1
        targets = _targets(qubits, self.num_qubits, n)
        return restore(_core.apply_channel(arr, self._kraus, [targets]))

    def apply_each(self, rho, qubits: Sequence[int] | None = None):
        """A 1-qubit channel applied to each of ``qubits`` in turn (default: every qubit of rho)."""
        if self.num_qubits != 1:
            raise ShapeError(f"apply_each needs a 1-qubit channel, this one acts on {self.num_qubits} qubits")
        arr, restore = _as_batch(rho)
        n = arr.shape[-1].bit_length() - 1
        qubits = list(range(n)) if qubits is None else list(qubits)
        sets = [_targets([q], 1, n) for q in qubits]
        return restore(_core.apply_channel(arr, self._kraus, sets) if sets else arr)

    def __repr__(self) -> str:
        return f"Channel({self.name}, num_qubits={self.num_qubits}, kraus={len(self._kraus)})"


def depolarizing(p: float, num_qubits: int = 1) -> Channel:
    """rho -> (1 - p) rho + p Tr(rho) I/d on ``num_qubits`` qubits (N&C Eq. 8.100), 0 <= p <= 4^n/(4^n - 1)."""
    return Channel(_core.depolarizing_kraus(float(p), int(num_qubits)), name=f"depolarizing(p={p})")


def amplitude_damping(gamma: float, excited_state_population: float = 0.0) -> Channel:
    """Generalized amplitude damping: rho_11 -> (1 - gamma) rho_11 + gamma p1, coherences x sqrt(1 - gamma)."""
    kraus = _core.amplitude_damping_kraus(float(gamma), float(excited_state_population))
    return Channel(kraus, name=f"amplitude_damping(gamma={gamma}, p1={excited_state_population})")


def phase_damping(gamma: float) -> Channel:
    """Phase damping: coherences x sqrt(1 - gamma), populations unchanged, 0 <= gamma <= 1."""
    return Channel(_core.phase_damping_kraus(float(gamma)), name=f"phase_damping(gamma={gamma})")


def thermal_relaxation(t1: float, t2: float, time: float, excited_state_population: float = 0.0) -> Channel:
    """Relaxation for ``time``: populations -> p1 with rate 1/t1, coherences x exp(-time/t2); needs t2 <= 2 t1."""
    kraus = _core.thermal_relaxation_kraus(float(t1), float(t2), float(time), float(excited_state_population))
    return Channel(kraus, name=f"thermal_relaxation(t1={t1}, t2={t2}, time={time})")


def _targets(qubits: Sequence[int] | None, m: int, n: int) -> list[int]:
    """Validated target qubits of an m-qubit channel inside an n-qubit state."""
    if qubits is None:
        if m != n:
            raise ShapeError(f"a {m}-qubit channel on a {n}-qubit state needs qubits=[...] naming {m} of its qubits")
        return list(range(n))
    targets = [int(q) for q in qubits]
    if len(targets) != m:
        raise ShapeError(f"a {m}-qubit channel needs {m} qubits, got {targets}")
    if len(set(targets)) != m or min(targets) < 0 or max(targets) >= n:
        raise InvalidArgumentError(f"qubits must be distinct and in [0, {n - 1}] for a {n}-qubit state, got {targets}")
    return targets


def _as_batch(rho):
    """(B, D, D) contiguous complex128 numpy view of ``rho`` and a function restoring its kind/shape."""
    is_torch = isinstance(rho, torch.Tensor)
    if is_torch:
        device, host = rho.device, rho.detach().to("cpu").resolve_conj()
        host = host.float() if host.dtype in (torch.float16, torch.bfloat16) else host
        arr, single = host.numpy(), host.dtype in (torch.complex64, torch.float32)
    elif isinstance(rho, np.ndarray):
        arr, single = rho, rho.dtype in (np.complex64, np.float32, np.float16)
    else:
        raise DTypeError(f"rho must be a numpy array or torch tensor, got {type(rho).__name__}")
    if not (np.issubdtype(arr.dtype, np.complexfloating) or np.issubdtype(arr.dtype, np.floating)):
        raise DTypeError(f"rho must be complex or floating point, got dtype {arr.dtype}")
    shape = arr.shape
    if arr.ndim < 2 or shape[-1] != shape[-2] or shape[-1] < 2 or shape[-1] & (shape[-1] - 1):
        raise ShapeError(f"rho must be (..., 2^n, 2^n) with n >= 1, got shape {shape}")
    batch = np.ascontiguousarray(arr, dtype=np.complex128).reshape(-1, shape[-1], shape[-1])

    def restore(out: np.ndarray):
        out = out.reshape(shape).astype(np.complex64 if single else np.complex128, copy=False)
        return torch.from_numpy(out).to(device) if is_torch else out

    return batch, restore


def superoperator_ref(kraus: np.ndarray) -> np.ndarray:
    """S[(i, j), (a, b)] = sum_k K[i, a] conj(K[j, b]) of (k, d, d) Kraus operators, (d^2, d^2)."""
    k, d, _ = kraus.shape
    return np.einsum("kia,kjb->ijab", kraus, kraus.conj()).reshape(d * d, d * d)


def apply_channel_ref(rho: np.ndarray, kraus: np.ndarray, qubits: Sequence[int]) -> np.ndarray:
    """Numpy reference of :meth:`Channel.apply`: the channel's superoperator on the chosen axes.

    ``rho`` is a (..., 2^n, 2^n) array; the row and column axes of the target qubits are moved
    to the end, multiplied by the (d^2, d^2) superoperator and moved back.
    """
    rho = np.asarray(rho, dtype=np.complex128)
    lead, dim = rho.shape[:-2], rho.shape[-1]
    n, m = dim.bit_length() - 1, len(qubits)
    t = rho.reshape(-1, *([2] * (2 * n)))  # axis 1 + (n - 1 - q) is row qubit q; + n for columns
    row_axes = [1 + n - 1 - q for q in reversed(qubits)]  # most significant local bit first
    col_axes = [a + n for a in row_axes]
    src = row_axes + col_axes
    dst = list(range(t.ndim - 2 * m, t.ndim))
    moved = np.moveaxis(t, src, dst)
    d = 1 << m
    flat = moved.reshape(*moved.shape[: -2 * m], d * d)
    out = (flat @ superoperator_ref(np.asarray(kraus, dtype=np.complex128)).T).reshape(moved.shape)
    return np.moveaxis(out, dst, src).reshape(*lead, dim, dim)
