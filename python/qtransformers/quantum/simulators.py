"""Attention simulated as a noisy quantum measurement, and attention compressed as an MPS.

Both take SDPA's layout: q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev), an optional mask
broadcastable to (B, H, L, S) (bool True = takes part, or additive float), and return
(output (B, H, L, Ev), weights (B, H, L, S)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.attention import safe_softmax, scaled_scores
from qtransformers.functional.metrics import relative_error
from qtransformers.functional.sampling import METHODS, sample_rows
from qtransformers.quantum import channels
from qtransformers.quantum.channels import Channel
from qtransformers.quantum.mps import MPS

NOISE_MODELS = ("depolarizing", "amplitude_damping", "phase_damping", "thermal_relaxation")


def noise_channel(noise_model: str | Channel | None, noise_level: float) -> Channel | None:
    """The 1-qubit channel of a named noise model at ``noise_level`` (None: no noise).

    depolarizing: p = level; amplitude_damping / phase_damping: gamma = level;
    thermal_relaxation: time = level in units of t1, with t2 = t1 and no excited population.
    A :class:`Channel` is returned as is.
    """
    if noise_model is None:
        return None
    if isinstance(noise_model, Channel):
        if noise_model.num_qubits != 1:
            raise InvalidArgumentError(f"noise_model must be a 1-qubit channel, got {noise_model}")
        return noise_model
    level = float(noise_level)
    if noise_model == "depolarizing":
        return channels.depolarizing(level)
    if noise_model == "amplitude_damping":
        return channels.amplitude_damping(level)
    if noise_model == "phase_damping":
        return channels.phase_damping(level)
    if noise_model == "thermal_relaxation":
        return channels.thermal_relaxation(1.0, 1.0, level)
    raise InvalidArgumentError(f"noise_model must be None, a Channel or one of {NOISE_MODELS}, got {noise_model!r}")


def attention_probabilities(q: Tensor, k: Tensor, attn_mask, is_causal: bool, scale) -> tuple[Tensor, Tensor]:
    """Exact softmax weights in float64 (B, H, L, S) and the boolean mask of keys taking part."""
    scores = scaled_scores(q.double(), k.double(), attn_mask, is_causal, scale)
    return safe_softmax(scores), ~torch.isneginf(scores)


class QuantumAttentionSimulator:
    """Each attention row as the pure state sum_j sqrt(p_j)|j> on ceil(log2 S) qubits, noised, measured.

    The state's density matrix goes through ``noise_model`` on every qubit (Rust channel
    application), then is measured in the computational basis: with ``shots=None`` the exact
    outcome distribution is used, otherwise ``shots`` draws of the Rust sampler give empirical
    frequencies. Outcomes on padding (j >= S) or masked keys are discarded and the rest
    renormalised (post-selection), so masked keys, and future keys under a causal mask, never
    receive weight. Without noise and with ``shots=None`` the result equals exact attention.
    Cost with noise: O(rows * 4^n * n) time for n qubits, rows processed in chunks of
    ``max_chunk_bytes``; without noise the outcome law is p itself and no density matrix is built.
    """

    def __init__(
        self,
        noise_model: str | Channel | None = None,
        noise_level: float = 0.0,
        shots: int | None = 1024,
        *,
        method: str = "multinomial",
        max_chunk_bytes: int = 64 * 2**20,
    ) -> None:
        if shots is not None and (not isinstance(shots, int) or shots < 1):
            raise InvalidArgumentError(f"shots must be None (exact measurement) or a positive int, got {shots!r}")
        if method not in METHODS:
            raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
        self.channel = noise_channel(noise_model, noise_level)
        self.shots = shots
        self.method = method
        self.max_chunk_bytes = int(max_chunk_bytes)

    def outcome_probabilities(self, probs: Tensor, allowed: Tensor | None = None) -> Tensor:
        """Post-selected measurement distribution (..., S) float64 of the noised states of ``probs`` (..., S)."""
        size = probs.size(-1)
        n = max(1, math.ceil(math.log2(size)))
        dim = 1 << n
        flat = probs.detach().double().cpu().reshape(-1, size)
        keep = (
            torch.ones_like(flat, dtype=torch.bool)
            if allowed is None
            else allowed.expand(probs.shape).cpu().reshape(-1, size)
        )
        out = flat.clone()
        chunk = max(1, self.max_chunk_bytes // (16 * dim * dim))
        # Without noise diag(|psi><psi|) is p itself: no density matrix is needed.
        for start in range(0, flat.size(0) if self.channel is not None else 0, chunk):
            assert self.channel is not None  # the range is empty without a channel
            psi = torch.zeros(min(chunk, flat.size(0) - start), dim, dtype=torch.float64)
            psi[:, :size] = flat[start : start + chunk].clamp(min=0).sqrt()
            rho = self.channel.apply_each((psi[:, :, None] * psi[:, None, :]).to(torch.complex128))
            out[start : start + chunk] = torch.diagonal(rho, dim1=-2, dim2=-1).real[:, :size]
        out = out.clamp(min=0).masked_fill(~keep, 0.0)
        total = out.sum(dim=-1, keepdim=True)
        out = torch.where(total > 0, out / total.clamp(min=1e-300), torch.zeros_like(out))
        return out.reshape(probs.shape).to(probs.device)

    def measure(self, outcome: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Empirical frequencies of ``shots`` draws per row of ``outcome`` (..., S) (exact when shots is None)."""
        if self.shots is None:
            return outcome
        size = outcome.size(-1)
        flat = outcome.reshape(-1, size)
        idx = sample_rows(flat, self.shots, self.method, generator=generator)
        counts = torch.zeros_like(flat)
        valid = idx >= 0
        counts.scatter_add_(1, idx.clamp(min=0), valid.to(flat.dtype))
        return (counts / self.shots).reshape(outcome.shape)

    def weights(self, q, k, attn_mask=None, is_causal=False, *, scale=None, generator=None) -> Tensor:
        """Measured attention weights (B, H, L, S) in float64."""
        probs, allowed = attention_probabilities(q, k, attn_mask, is_causal, scale)
        return self.measure(self.outcome_probabilities(probs, allowed), generator)

    def __call__(self, q, k, v, attn_mask=None, is_causal=False, *, scale=None, generator=None):
        """(output (B, H, L, Ev) in v's dtype, weights (B, H, L, S) float64)."""
        w = self.weights(q, k, attn_mask, is_causal, scale=scale, generator=generator)
        return torch.matmul(w.to(v.dtype), v), w


class MatrixProductStateSimulator:
    """Attention whose (L, S) weight matrix is stored as an MPS with bond dimension <= ``max_bond_dim``.

    The matrix, zero-padded to (2^a, 2^b), is split into a + b sites of dimension 2 (row bits,
    then column bits; the middle bond is the matrix rank), truncated by TT-SVD, and the output is
    computed from the MPS's contraction. ``last_report`` holds the truncation error bound, the
    relative weight error and the compression ratio (float64 dense L*S bytes / MPS bytes, padding
    not counted as savings) of the last call.
    """

    def __init__(self, max_bond_dim: int | None = None, cutoff: float = 0.0) -> None:
        if max_bond_dim is not None and (not isinstance(max_bond_dim, int) or max_bond_dim < 1):
            raise InvalidArgumentError(f"max_bond_dim must be None or an int >= 1, got {max_bond_dim!r}")
        if not (math.isfinite(cutoff) and cutoff >= 0):
            raise InvalidArgumentError(f"cutoff must be finite and >= 0, got {cutoff}")
        self.max_bond_dim = max_bond_dim
        self.cutoff = float(cutoff)
        self.last_report: dict = {}

    def compress_weights(self, probs: Tensor) -> tuple[Tensor, dict]:
        """MPS approximation of each (L, S) matrix of ``probs`` (..., L, S) and a summary report."""
        rows, cols = probs.shape[-2:]
        a, b = max(1, math.ceil(math.log2(rows))), max(1, math.ceil(math.log2(cols)))
        flat = probs.detach().double().cpu().reshape(-1, rows, cols)
        out = torch.empty_like(flat)
        mps_bytes, bound_sq, max_bond = 0, 0.0, 1
        for i, mat in enumerate(flat):
            padded = torch.zeros(1 << a, 1 << b, dtype=torch.float64)
            padded[:rows, :cols] = mat
            mps = MPS.from_dense(padded, max_bond=self.max_bond_dim, cutoff=self.cutoff, dims=[2] * (a + b))
            out[i] = torch.from_numpy(mps.to_dense()[:rows, :cols])
            mps_bytes += mps.nbytes
            bound_sq += mps.truncation_error**2
            max_bond = max(max_bond, *mps.bond_dims)
        dense_norm = float(flat.norm())
        report = {
            "max_bond_dim": self.max_bond_dim,
            "bond_dim_used": max_bond,
            "compression_ratio": flat.numel() * 8 / mps_bytes,
            "truncation_error": math.sqrt(bound_sq),
            "weights_rel_error": float((out - flat).norm()) / max(dense_norm, 1e-300),
            "truncation_bound_rel": math.sqrt(bound_sq) / max(dense_norm, 1e-300),
        }
        return out.reshape(probs.shape).to(probs.device), report

    def weights(self, q, k, attn_mask=None, is_causal=False, *, scale=None) -> Tensor:
        """MPS-compressed attention weights (B, H, L, S) in float64; fills ``last_report``."""
        probs, _ = attention_probabilities(q, k, attn_mask, is_causal, scale)
        approx, self.last_report = self.compress_weights(probs)
        return approx

    def __call__(self, q, k, v, attn_mask=None, is_causal=False, *, scale=None):
        """(output (B, H, L, Ev) in v's dtype, weights (B, H, L, S) float64)."""
        w = self.weights(q, k, attn_mask, is_causal, scale=scale)
        return torch.matmul(w.to(v.dtype), v), w

    @staticmethod
    def sweep(q, k, v, bond_dims: Sequence[int | None], attn_mask=None, is_causal=False, *, scale=None) -> list[dict]:
        """One report per bond dimension, with ``output_rel_error`` against exact float64 attention."""
        probs, _ = attention_probabilities(q, k, attn_mask, is_causal, scale)
        v64 = v.double()
        exact = torch.matmul(probs, v64)
        rows = []
        for chi in bond_dims:
            approx, report = MatrixProductStateSimulator(chi).compress_weights(probs)
            rows.append({**report, "output_rel_error": relative_error(torch.matmul(approx, v64), exact)})
        return rows
