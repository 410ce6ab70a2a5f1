"""Helpers shared by the shot estimators: the estimate and its gradient terms, Horvitz-Thompson weights, CV coefficients.

The estimate Σ_s w_s v_{J_s} and the score-function term of its q/k gradient have two forms
(:func:`shot_estimate`, :func:`leave_one_out_term`): the plain per-shot one, which gathers the
(B,H,L,M,Ev) drawn rows of v and k, and a dense one, which scatters the (B,H,L,M) weights into
(B,H,L,S) matrices and takes matrix products. They are the same function of the draws;
:func:`dense_pays` picks the cheaper (dense while S <= 2·M·Ev; timings in docs/sampled-attention.md).
"""

from __future__ import annotations

import torch
from torch import Tensor


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """x (B,H,S,D) gathered at idx (B,H,L,M) -> (B,H,L,M,D)."""
    b, h, rows, m = idx.shape
    flat = idx.reshape(b, h, rows * m, 1).expand(-1, -1, -1, x.size(-1))
    return torch.gather(x.expand(b, h, -1, -1), 2, flat).view(b, h, rows, m, x.size(-1))


def dense_weights(idx: Tensor, weights: Tensor, source: int) -> Tensor:
    """Per-shot weights (B,H,L,M) at key indices ``idx`` summed into a dense (B,H,L,S) matrix."""
    dense = torch.zeros(*idx.shape[:-1], source, dtype=weights.dtype, device=weights.device)
    return dense.scatter_add_(-1, idx, weights)


def dense_pays(source: int, shots: int, ev: int) -> bool:
    """Whether the dense form is the cheaper: S <= 2·M·Ev (measured on CPU; the gathered rows cost M·Ev per row)."""
    return source <= 2 * shots * ev


def shot_estimate(v: Tensor, idx: Tensor, weights: Tensor, *, dense: bool) -> Tensor:
    """Ô = Σ_s w_s v_{J_s} (B,H,L,Ev); v's gradient is the pathwise Σ_s w_s ∂v_{J_s}.

    v (B,H,S,Ev), idx (B,H,L,M) key indices, weights (B,H,L,M) (0 for unused shots).
    ``dense``: one product of the dense (B,H,L,S) weights with v; otherwise the plain per-shot
    form (gather the drawn rows of v, sum them weighted), which is also the reference.
    """
    if dense:
        return _DenseEstimate.apply(v, idx, weights)
    return (weights.to(v.dtype).unsqueeze(-1) * gather_rows(v, idx)).sum(-2)


class _DenseEstimate(torch.autograd.Function):
    """Ô = W v with W the dense (B,H,L,S) shot weights; v's gradient Wᵀ ḡ.

    Saves the (B,H,L,M) draws and rebuilds W in the backward, so a layer keeps M, not S, numbers per row
    for it. ``weights`` come from detached probabilities and get no gradient.
    """

    @staticmethod
    def forward(ctx, v, idx, weights):
        """W v, saving the draws."""
        ctx.save_for_backward(idx, weights)
        ctx.v_shape = v.shape
        return dense_weights(idx, weights, v.size(-2)).to(v.dtype) @ v

    @staticmethod
    def backward(ctx, grad):
        """Wᵀ ḡ, summed to v's (possibly broadcast) shape."""
        idx, weights = ctx.saved_tensors
        w = dense_weights(idx, weights, ctx.v_shape[-2]).to(grad.dtype)
        return (w.transpose(-2, -1) @ grad).sum_to_size(ctx.v_shape), None, None


def leave_one_out_term(
    q: Tensor, k: Tensor, v: Tensor, idx: Tensor, weights: Tensor, estimate: Tensor, scale: float, *, dense: bool
) -> Tensor:
    """Zero-valued term (B,H,L,Ev) whose q/k gradient is Σ_s w_s (v_{J_s} - b_s) ∂s_{J_s}.

    s_j = q·k_j·scale, and b_s = (Ô - w_s v_{J_s}) / r_s with r_s = Σ_t w_t - w_s is shot s's
    leave-one-out baseline (0 when r_s = 0). v and ``estimate`` (Ô) enter detached.
    ``dense``: expanding b_s, the term is Σ_j Δ_j [(Σ_{s→j} w_s (1 + w_s/r_s)) v_j - (Σ_{s→j} w_s/r_s) Ô]
    with Δ = s - s.detach(): two dense (B,H,L,S) weight matrices, built from the draws in the backward only.
    Otherwise the plain per-shot form on gathered rows of k and v, which is also the reference.
    """
    if dense:
        return _DenseScoreTerm.apply(q, k, v.detach(), estimate.detach(), idx, weights, scale)
    rest = weights.sum(-1, keepdim=True) - weights
    w = weights.to(v.dtype).unsqueeze(-1)
    rest = rest.to(v.dtype).unsqueeze(-1)
    s_drawn = (q.unsqueeze(-2) * gather_rows(k, idx)).sum(-1) * scale  # (B,H,L,M)
    vd = gather_rows(v.detach(), idx)
    baseline = torch.where(rest > 0, (estimate.detach().unsqueeze(-2) - w * vd) / rest.clamp_min(1e-30), 0.0)
    return ((vd - baseline) * w * (s_drawn - s_drawn.detach()).unsqueeze(-1)).sum(-2)


class _DenseScoreTerm(torch.autograd.Function):
    """Zeros (B,H,L,Ev) whose q/k gradient is Σ_j G_ij ∂s_ij, G = on_value ⊙ (ḡ vᵀ) - on_estimate ⊙ (ḡ·Ô).

    The dense form of :func:`leave_one_out_term` without its zero-valued forward products: it saves
    the (B,H,L,M) draws. The backward takes ḡ vᵀ densely, reads it at the drawn keys, forms each shot's
    term w_s (1 + w_s/r_s) ḡ_i·v_{J_s} - (w_s/r_s) ḡ_i·Ô_i and sums the terms into one dense G; then one
    product each for q and k (s = q kᵀ · scale).
    """

    @staticmethod
    def forward(ctx, q, k, v, estimate, idx, weights, scale):
        """Save the operands; the term's value is 0."""
        ctx.save_for_backward(q, k, v, estimate, idx, weights)
        ctx.scale = scale
        return estimate.new_zeros(estimate.shape)

    @staticmethod
    def backward(ctx, grad):
        """Gradients of q and k; none for the detached operands."""
        q, k, v, estimate, idx, weights = ctx.saved_tensors
        rest = weights.sum(-1, keepdim=True) - weights
        per_rest = torch.where(rest > 0, weights / rest.clamp_min(1e-30), 0.0)
        grad = grad.to(q.dtype)
        on_value = (grad @ v.to(q.dtype).transpose(-2, -1)).gather(-1, idx)  # ḡ_i·v_{J_s}, (B,H,L,M)
        on_estimate = (grad * estimate.to(q.dtype)).sum(-1, keepdim=True)  # ḡ_i·Ô_i, (B,H,L,1)
        per_shot = (weights * (1.0 + per_rest)).to(q.dtype) * on_value - per_rest.to(q.dtype) * on_estimate
        g = dense_weights(idx, per_shot, k.size(-2))
        grad_q = (g @ k) * ctx.scale if ctx.needs_input_grad[0] else None
        grad_k = (g.transpose(-2, -1) @ q) * ctx.scale if ctx.needs_input_grad[1] else None
        return grad_q, grad_k, None, None, None, None, None


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
