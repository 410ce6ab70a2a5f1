"""The block control variate: each shot's block of neighbouring keys, scored classically.

Keys are laid out in the sampler's key order (value order or positions) and cut into blocks of
``b`` consecutive keys. For a drawn key J in block B the estimator scores B's ``b`` keys itself
(b·E multiply-adds: classical side information) and forms the block mean
μ_B = Σ_{j∈B} softmax_B(s)_j v_j, normalised within the block (no row normaliser needed). Then

    Ô_cv = Σ_s w_s μ_{B(J_s)}

with the design's own per-shot weights w_s (1/m for i.i.d. shots, Horvitz-Thompson for
systematic shots, dropout included). Those weights are unbiased for any function f of the key,
E[Σ_s w_s f(J_s)] = Σ_j p_j f(j), and Σ_j p_j μ_{B(j)} = Σ_B P_B μ_B = O, so Ô_cv is unbiased
under every design. It is the control variate g = v_J - μ_B (known expectation 0) with
coefficient 1, which is optimal for i.i.d. shots because E[v_J | B] = μ_B; it couples no rows.
Side-information cost per row: m·b·(E + Ev) multiply-adds, a fraction m·b/S of exact attention
(``default_block`` keeps it <= 1/4).
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.functional.masks import sdpa_mask_to_additive
from qtransformers.functional.shots import gather_rows

ROW_CHUNK = 256


def default_block(source: int, num_samples: int) -> int:
    """Block size b = min(8, S // (4m)) (at least 1): block scoring costs at most 1/4 of exact attention."""
    return max(1, min(8, source // (4 * num_samples)))


@torch.no_grad()
def block_control_variate(q, k, v, attn_mask, is_causal, scale, idx, weights, order, block: int) -> Tensor:
    """Ô_cv = Σ_s w_s μ_{B(J_s)} (B,H,L,Ev) for shots ``idx`` (B,H,L,M) with weights (B,H,L,M).

    ``order`` (B·H, S) is the key order the blocks are cut along (None: positions).
    """
    b, h, length, _ = idx.shape
    source = k.size(-2)
    work = weights.dtype
    arange = torch.arange(source, device=idx.device)
    order = arange.expand(b, h, source) if order is None else order.view(b, h, source)
    rank = torch.empty_like(order).scatter_(-1, order, arange.expand_as(order))
    additive = sdpa_mask_to_additive(attn_mask, work)
    k, v = k.to(work), v.to(work)
    outs = []
    for start in range(0, length, ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, length))
        mask_rows = None if additive is None else additive.expand(b, h, length, source)[:, :, rows]
        mu = _block_means(
            q[:, :, rows].to(work),
            k,
            v,
            mask_rows,
            is_causal,
            start,
            scale,
            idx[:, :, rows],
            weights[:, :, rows] > 0,
            order,
            rank,
            block,
        )
        outs.append((weights[:, :, rows].unsqueeze(-1) * mu).sum(-2))
    return torch.cat(outs, dim=2)


def _block_means(q, k, v, additive, is_causal, row0, scale, idx, valid, order, rank, block) -> Tensor:
    """μ_{B(J)} (B,H,R,M,Ev) for each drawn key J; shots without weight get a finite placeholder."""
    b, h, rows, m = idx.shape
    source = k.size(-2)
    first = torch.div(rank.gather(-1, idx.reshape(b, h, -1)), block, rounding_mode="floor").view(b, h, rows, m) * block
    pos = first.unsqueeze(-1) + torch.arange(block, device=idx.device)  # (B,H,R,M,b) positions on the order
    inside = pos < source
    keys = order.gather(-1, pos.clamp(max=source - 1).reshape(b, h, -1)).view(b, h, rows, m, block)
    k_block = gather_rows(k, keys.view(b, h, rows, m * block)).view(b, h, rows, m, block, k.size(-1))
    scores = (q.unsqueeze(-2).unsqueeze(-2) * k_block).sum(-1) * scale
    if additive is not None:
        scores = scores + additive.gather(-1, keys.view(b, h, rows, -1)).view_as(scores)
    if is_causal:
        query_pos = torch.arange(row0, row0 + rows, device=idx.device).view(1, 1, rows, 1, 1)
        scores = scores.masked_fill(keys > query_pos, float("-inf"))
    scores = scores.masked_fill(~inside, float("-inf"))
    # A weighted shot's own key is visible, so its block has a finite score; others get zeros.
    within = torch.softmax(torch.where(valid.unsqueeze(-1), scores, 0.0), dim=-1)
    return (
        within.unsqueeze(-1) * gather_rows(v, keys.view(b, h, rows, -1)).view(b, h, rows, m, block, v.size(-1))
    ).sum(-2)
