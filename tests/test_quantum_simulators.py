"""Attention simulators (noisy measurement, MPS) and their QuantumMultiheadAttention backends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import qtransformers
from qtransformers import QuantumMultiheadAttention
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional import exact_attention
from qtransformers.quantum import (
    NOISE_MODELS,
    Channel,
    MatrixProductStateSimulator,
    QuantumAttentionSimulator,
    amplitude_damping,
    relative_error,
)


def qkv(b=2, h=2, length=7, s=None, e=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = length if s is None else s
    shape = lambda n: (b, h, n, e)  # noqa: E731
    return (
        torch.randn(*shape(length), generator=g, dtype=torch.float64),
        torch.randn(*shape(s), generator=g, dtype=torch.float64),
        torch.randn(*shape(s), generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize("s", [1, 5, 8, 13])
@pytest.mark.parametrize("causal", [False, True])
def test_noiseless_infinite_shots_equals_exact_attention(s, causal):
    q, k, v = qkv(length=s, s=s)
    mask = torch.rand(1, 1, s, s, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 0] = True
    identity = Channel([np.eye(2)])  # runs the full density-matrix path with a noiseless channel
    for attn_mask, is_causal in [(None, causal), (mask, False)]:
        ref, ref_w = exact_attention(q, k, v, attn_mask, is_causal=is_causal, need_weights=True)
        for noise in (None, identity):
            out, w = QuantumAttentionSimulator(noise, shots=None)(q, k, v, attn_mask, is_causal)
            assert torch.allclose(out, ref, atol=1e-12) and torch.allclose(w, ref_w, atol=1e-12)


def bit_flip_convolution(p: torch.Tensor, flip_up: float, flip_down: float, n: int) -> torch.Tensor:
    """Outcome law when each bit independently flips 0->1 w.p. flip_up and 1->0 w.p. flip_down."""
    d = 1 << n
    out = torch.zeros(p.shape[:-1] + (d,), dtype=torch.float64)
    padded = torch.zeros_like(out)
    padded[..., : p.size(-1)] = p
    for i, j in itertools.product(range(d), range(d)):
        prob = 1.0
        for t in range(n):
            a, b = (i >> t) & 1, (j >> t) & 1
            prob *= {(0, 0): 1 - flip_up, (0, 1): flip_up, (1, 0): flip_down, (1, 1): 1 - flip_down}[(a, b)]
        out[..., j] += padded[..., i] * prob
    return out


@pytest.mark.parametrize("model,level", [("depolarizing", 0.2), ("amplitude_damping", 0.3), ("phase_damping", 0.7)])
def test_noisy_outcomes_match_closed_forms(model, level):
    q, k, v = qkv(length=6, s=6)
    sim = QuantumAttentionSimulator(model, level, shots=None)
    probs = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(8), dim=-1)
    got = sim.outcome_probabilities(probs)
    # Measured in Z, depolarizing flips each bit w.p. p/2; amplitude damping sends 1 -> 0 w.p. gamma;
    # phase damping leaves the outcome law unchanged. Padded outcomes (6, 7) are post-selected away.
    flips = {"depolarizing": (level / 2, level / 2), "amplitude_damping": (0.0, level), "phase_damping": (0.0, 0.0)}
    law = bit_flip_convolution(probs, *flips[model], n=3)[..., :6]
    assert torch.allclose(got, law / law.sum(-1, keepdim=True), atol=1e-13)


def test_noise_never_leaks_to_masked_or_future_keys():
    q, k, v = qkv(length=8, s=8)
    sim = QuantumAttentionSimulator("depolarizing", 0.5, shots=64)
    out, w = sim(q, k, v, is_causal=True, generator=torch.Generator().manual_seed(0))
    assert (w.triu(diagonal=1) == 0).all()
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 5:] += 3.0
    v2[:, :, 5:] -= 2.0
    out2, _ = sim(q, k2, v2, is_causal=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :5], out2[:, :, :5])


def test_finite_shots_are_unbiased_within_four_standard_errors():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64).expand(4000, 4)
    sim = QuantumAttentionSimulator(shots=16)
    freq = sim.measure(probs, generator=torch.Generator().manual_seed(3))
    assert torch.all((freq * 16).round() == freq * 16) and torch.allclose(
        freq.sum(-1), torch.ones(4000, dtype=torch.float64)
    )
    se = torch.sqrt(probs[0] * (1 - probs[0]) / (16 * 4000))
    assert torch.all((freq.mean(0) - probs[0]).abs() < 4 * se)


def test_error_shrinks_with_shots_and_seed_is_reproducible():
    q, k, v = qkv(b=2, h=2, length=16, s=16)
    ref, _ = exact_attention(q, k, v)
    errs = [
        relative_error(QuantumAttentionSimulator(shots=s)(q, k, v, generator=torch.Generator().manual_seed(0))[0], ref)
        for s in (16, 1024)
    ]
    assert errs[1] < errs[0] / 3  # 1/sqrt(shots): 8x expected, 3x asserted
    a = QuantumAttentionSimulator("amplitude_damping", 0.1, shots=32)(
        q, k, v, generator=torch.Generator().manual_seed(5)
    )
    b = QuantumAttentionSimulator("amplitude_damping", 0.1, shots=32)(
        q, k, v, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(a[0], b[0])


def test_simulator_accepts_channels_and_rejects_bad_options():
    sim = QuantumAttentionSimulator(amplitude_damping(0.2, 0.1), shots=None)
    assert sim.channel.num_qubits == 1
    with pytest.raises(InvalidArgumentError, match="shots"):
        QuantumAttentionSimulator(shots=0)
    with pytest.raises(InvalidArgumentError, match="noise_model"):
        QuantumAttentionSimulator("bogus", 0.1)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\]"):
        QuantumAttentionSimulator("phase_damping", 1.5)
    assert set(NOISE_MODELS) == {"depolarizing", "amplitude_damping", "phase_damping", "thermal_relaxation"}


def test_mps_simulator_exact_at_full_bond_and_reports_honest_ratio():
    q, k, v = qkv(b=1, h=2, length=16, s=16)
    ref, ref_w = exact_attention(q, k, v, need_weights=True)
    sim = MatrixProductStateSimulator()
    out, w = sim(q, k, v)
    assert torch.allclose(out, ref, atol=1e-10) and torch.allclose(w, ref_w, atol=1e-10)
    rows = MatrixProductStateSimulator.sweep(q, k, v, [1, 2, 4, None])
    errs = [r["output_rel_error"] for r in rows]
    assert errs[-1] < 1e-10 and errs[0] > 1e-3 and errs[0] >= errs[1] >= errs[2]
    for r in rows:
        assert r["weights_rel_error"] <= r["truncation_bound_rel"] * (1 + 1e-9) + 1e-12
    small = MatrixProductStateSimulator(2)
    small(q, k, v)
    # Per head: 8 sites of dimension 2, all bonds 2: cores 2 * (1*2*2) + 6 * (2*2*2) = 56 float64 numbers.
    assert small.last_report["bond_dim_used"] == 2
    assert small.last_report["compression_ratio"] == pytest.approx((2 * 16 * 16 * 8) / (2 * 56 * 8))


def test_backends_work_after_import_qtransformers():
    assert {"noisy", "mps"} <= set(qtransformers.attention.available_backends())
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(2, 9, 16)
    want, want_w = ref(x, x, x)
    for backend, options in [
        ("noisy", {"shots": None}),
        ("mps", {}),
        ("noisy", {"noise_model": "phase_damping", "noise_level": 0.4, "shots": None}),
    ]:
        m = QuantumMultiheadAttention.from_torch(ref, quantum_backend=backend, backend_options=options)
        out, w = m(x, x, x)
        assert torch.allclose(out, want, atol=1e-5) and torch.allclose(w, want_w, atol=1e-5), backend
    m = QuantumMultiheadAttention(
        16,
        2,
        batch_first=True,
        quantum_backend="noisy",
        num_samples=8,
        seed=1,
        backend_options={"noise_model": "depolarizing", "noise_level": 0.1},
    )
    out, w = m(x, x, x, need_weights=True, average_attn_weights=False)
    assert out.shape == x.shape and w.shape == (2, 2, 9, 9)
    assert torch.all(((w * 8).round() - w * 8).abs() < 1e-5)  # empirical frequencies of 8 shots
    with pytest.raises(InvalidArgumentError, match="unknown backend_options"):
        QuantumMultiheadAttention(16, 2, quantum_backend="mps", backend_options={"bond": 2})(x, x, x)
