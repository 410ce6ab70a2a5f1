"""QuantumMultiheadAttention backends "noisy" and "mps", built on the simulators.

Options come from the module's ``QuantumConfig``:

* ``"noisy"``: ``backend_options`` keys ``noise_model`` (default None), ``noise_level`` (0.0),
  ``shots`` (default ``num_samples``; None = exact measurement), ``method`` ("multinomial").
* ``"mps"``: ``backend_options`` keys ``max_bond_dim`` (None) and ``cutoff`` (0.0).

Dropout is applied to the simulated weights before they multiply v, as in exact attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qtransformers.attention.backends import register_backend
from qtransformers.exceptions import InvalidArgumentError
from qtransformers.quantum.simulators import MatrixProductStateSimulator, QuantumAttentionSimulator

NOISY_OPTIONS = {"noise_model", "noise_level", "shots", "method"}
MPS_OPTIONS = {"max_bond_dim", "cutoff"}


def _check_options(options: dict, allowed: set, backend: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidArgumentError(f"unknown backend_options {unknown} for {backend!r}; allowed: {sorted(allowed)}")


def _finish(weights: torch.Tensor, v, dropout_p: float, need_weights: bool):
    """Output from float64 ``weights`` (dropout applied) and the weights in v's dtype if asked."""
    w = weights.to(v.dtype)
    dropped = F.dropout(w, p=dropout_p) if dropout_p > 0.0 else w
    return torch.matmul(dropped, v), (w if need_weights else None)


@register_backend("noisy")
def noisy(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config):
    """Attention rows measured from noisy quantum states (see QuantumAttentionSimulator)."""
    options = dict(config.options)
    _check_options(options, NOISY_OPTIONS, "noisy")
    sim = QuantumAttentionSimulator(
        options.get("noise_model"),
        options.get("noise_level", 0.0),
        options.get("shots", config.num_samples),
        method=options.get("method", "multinomial"),
    )
    weights = sim.weights(q, k, attn_mask, is_causal, scale=scale, generator=generator)
    return _finish(weights, v, dropout_p, need_weights)


@register_backend("mps")
def mps(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config):
    """Attention whose weight matrices are truncated MPS (see MatrixProductStateSimulator)."""
    del generator
    options = dict(config.options)
    _check_options(options, MPS_OPTIONS, "mps")
    sim = MatrixProductStateSimulator(options.get("max_bond_dim"), options.get("cutoff", 0.0))
    weights = sim.weights(q, k, attn_mask, is_causal, scale=scale)
    return _finish(weights, v, dropout_p, need_weights)
