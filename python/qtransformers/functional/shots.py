"""Helpers shared by the shot estimators: gathering drawn rows, Horvitz-Thompson weights, CV coefficients."""

from __future__ import annotations

import torch
from torch import Tensor


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """x (B,H,S,D) gathered at idx (B,H,L,M) -> (B,H,L,M,D)."""
    b, h, rows, m = idx.shape
    flat = idx.reshape(b, h, rows * m, 1).expand(-1, -1, -1, x.size(-1))
    return torch.gather(x.expand(b, h, -1, -1), 2, flat).view(b, h, rows, m, x.size(-1))


def horvitz_thompson(idx: Tensor, valid: Tensor, p_drawn: Tensor, m_row: Tensor) -> Tensor:
    """Per-shot weights p_J / (π_J · count_J) of systematic sampling, π_J = min(1, m·p_J)."""
    sentinel = torch.iinfo(idx.dtype).max - idx.size(1)
    keyed = torch.where(valid, idx, sentinel + torch.arange(idx.size(1), device=idx.device))
    ordered, _ = keyed.sort(dim=-1)
    count = torch.searchsorted(ordered, keyed, right=True) - torch.searchsorted(ordered, keyed, right=False)
    inclusion = (m_row * p_drawn).clamp(max=1.0)
    return torch.where(valid, p_drawn / (inclusion * count).clamp_min(1e-30), 0.0)


def leave_one_row_out_beta(y: Tensor, x: Tensor, weights: Tensor) -> Tensor:
    """Control-variate coefficient (B,H,L,1) for each row from the *other* rows of its head.

    y, x (B,H,L,M,Ev) are the per-shot terms of the estimate and of the control variate; β_i is
    the least-squares slope of y on x pooled over the head's other rows (clipped to [0, 1]).
    Rows draw independently, so β_i is independent of row i's shots and the corrected
    estimate Ô - β_i (Ĉ - E[Ĉ]) stays exactly unbiased.
    """
    n = (weights > 0).sum(-1, keepdim=True).clamp_min(1).unsqueeze(-1)
    live = (weights > 0).unsqueeze(-1)
    yc = y * n - y.sum(-2, keepdim=True)
    xc = x * n - x.sum(-2, keepdim=True)
    cov = (yc * xc * live).sum((-2, -1))
    var = (xc.square() * live).sum((-2, -1))
    cov_rest = cov.sum(-1, keepdim=True) - cov
    var_rest = var.sum(-1, keepdim=True) - var
    return torch.where(var_rest > 0, cov_rest / var_rest.clamp_min(1e-30), 0.0).clamp(0.0, 1.0).unsqueeze(-1)
