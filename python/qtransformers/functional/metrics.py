"""Approximation error of attention outputs, as DESIGN.md defines it."""

from __future__ import annotations

from torch import Tensor


def relative_errors(approx: Tensor, exact: Tensor) -> Tensor:
    """‖approx − exact‖_F / ‖exact‖_F over the last two axes, one float64 value per leading index.

    For attention outputs (B, H, L, E) this is the (B, H) tensor of per-head errors.
    """
    diff = (approx.double() - exact.double()).flatten(-2).norm(dim=-1)
    return diff / exact.double().flatten(-2).norm(dim=-1).clamp_min(1e-300)


def relative_error(approx: Tensor, exact: Tensor) -> float:
    """Mean of :func:`relative_errors` over the leading axes (mean over batch and heads)."""
    return float(relative_errors(approx, exact).mean())
