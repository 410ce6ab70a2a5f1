"""The block control variate: each shot's block of neighbouring keys, scored classically.

Keys are laid out in the sampler's key order (value order or positions) and cut into blocks of
``b`` consecutive keys. For a drawn key J in block B the estimator scores B's ``b`` keys itself
(b·E multiply-adds: classical side information) and forms the block mean
μ_B = Σ_{j∈B} softmax_B(s)_j v_j. Given its block, a shot's key is distributed as p restricted
to the block, so g = v_J - μ_B has known expectation 0 under every design used here, and

    Ô_cv = Σ_s w_s^B [v_{J_s} - β_i (v_{J_s} - μ_{B(J_s)})]

with block-level weights w^B (1/m for i.i.d. shots; P_B / (min(1, m·P_B)·count_B) for systematic
shots, where P_B = p_J · Σ_{j∈B} exp(s_j - s_J) comes from the drawn p_J and the block's scores)
and β_i estimated from the head's other rows. β = 1 is the Rao-Blackwellised estimator; the
estimate is unbiased for any β independent of the row's shots. Side-information cost per row:
m·b·(E + Ev) multiply-adds, a fraction m·b/S of exact attention (``default_block`` keeps it <= 1/4).
"""

from __future__ import annotations

import torch
from torch import Tensor

from qtransformers.functional.masks import sdpa_mask_to_additive
from qtransformers.functional.shots import gather_rows, horvitz_thompson, leave_one_row_out_beta

ROW_CHUNK = 256


def default_block(source: int, num_samples: int) -> int:
    """Block size b = min(8, S // (4m)) (at least 1): block scoring costs at most 1/4 of exact attention."""
    return max(1, min(8, source // (4 * num_samples)))


@torch.no_grad()
def block_control_variate(q, k, v, attn_mask, is_causal, scale, probs, plan, block: int) -> Tensor:
    """Ô_cv (B,H,L,Ev) of the block control variate for the shots in ``plan`` (see module docstring)."""
    b, h, length, source = probs.shape
    idx, weights, shots = plan["idx"], plan["weights"], plan["shots"]
    order = plan["order"]
    order = torch.arange(source, device=idx.device).expand(b, h, source) if order is None else order.view(b, h, source)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(source, device=idx.device).expand_as(order))
    additive = sdpa_mask_to_additive(attn_mask, torch.float32)
    outs = []
    for start in range(0, length, ROW_CHUNK):
        rows = slice(start, min(start + ROW_CHUNK, length))
        mask_rows = None if additive is None else additive.expand(b, h, length, source)[:, :, rows]
        outs.append(_chunk(q[:, :, rows].float(), k.float(), v.float(), mask_rows, is_causal, start, scale,
                           probs[:, :, rows], idx[:, :, rows], weights[:, :, rows], shots[:, :, rows],
                           order, rank, block, plan["systematic"]))
    return torch.cat(outs, dim=2)


def _chunk(q, k, v, additive, is_causal, row0, scale, probs, idx, weights, shots, order, rank, block, systematic):
    b, h, rows, m = idx.shape
    source = k.size(-2)
    valid = weights > 0
    first = torch.div(rank.gather(-1, idx.reshape(b, h, -1)), block, rounding_mode="floor").view(b, h, rows, m) * block
    pos = first.unsqueeze(-1) + torch.arange(block, device=idx.device)  # (B,H,R,M,b) positions on the order
    inside = pos < source
    keys = order.gather(-1, pos.clamp(max=source - 1).reshape(b, h, -1)).view(b, h, rows, m, block)
    k_block = gather_rows(k, keys.view(b, h, rows, m * block)).view(b, h, rows, m, block, -1)
    scores = (q.unsqueeze(-2).unsqueeze(-2) * k_block).sum(-1) * scale
    if additive is not None:
        scores = scores + additive.gather(-1, keys.view(b, h, rows, -1)).view_as(scores)
    if is_causal:
        query_pos = torch.arange(row0, row0 + rows, device=idx.device).view(1, 1, rows, 1, 1)
        scores = scores.masked_fill(keys > query_pos, float("-inf"))
    scores = scores.masked_fill(~inside, float("-inf"))
    drawn = (keys == idx.unsqueeze(-1)) & inside
    s_drawn = torch.where(drawn, scores, 0.0).sum(-1)
    p_drawn = probs.gather(-1, idx)
    norm = torch.logsumexp(scores, dim=-1)
    block_mass = torch.where(valid, p_drawn * torch.exp(norm - s_drawn), 0.0)  # P_B from p_J and the block scores
    within = torch.softmax(torch.where(valid.unsqueeze(-1), scores, 0.0), dim=-1)
    mu = (within.unsqueeze(-1) * gather_rows(v, keys.view(b, h, rows, -1)).view(b, h, rows, m, block, -1)).sum(-2)
    m_row = shots.clamp_min(1).to(probs.dtype).unsqueeze(-1)
    if systematic:
        flat = lambda t: t.reshape(-1, m)  # noqa: E731
        w = horvitz_thompson(flat(first), flat(valid), flat(block_mass), m_row.reshape(-1, 1)).view_as(idx)
    else:
        w = valid / m_row
    v_drawn = gather_rows(v, idx)
    y = w.unsqueeze(-1) * v_drawn
    x = w.unsqueeze(-1) * (v_drawn - mu)
    beta = leave_one_row_out_beta(y, x, w)
    return y.sum(-2) - beta * x.sum(-2)
