"""Exact scaled-dot-product attention with SDPA's layout and mask polarity.

Shapes: q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev); ``attn_mask`` broadcastable to
(B, H, L, S), boolean (True = takes part) or float (added to the scores). Returns the
output (B, H, L, Ev) and, with ``need_weights``, the attention weights (B, H, L, S).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from qtransformers.functional.masks import causal_keep_mask, sdpa_mask_to_additive


def scaled_scores(q: Tensor, k: Tensor, attn_mask: Tensor | None, is_causal: bool, scale: float | None) -> Tensor:
    """Masked attention logits q·kᵀ·scale + mask, (B, H, L, S); masked entries are -inf."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = torch.matmul(q * scale, k.transpose(-2, -1))
    if is_causal:  # in place on the fresh product: the same values as adding causal_additive_mask
        scores = scores.masked_fill_(~causal_keep_mask(q.size(-2), k.size(-2), scores.device), float("-inf"))
    additive = sdpa_mask_to_additive(attn_mask, scores.dtype)
    if additive is not None:
        scores = scores + additive
    return scores


def safe_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last axis that returns zeros (not NaN) for rows that are all -inf."""
    row_max = scores.amax(dim=-1, keepdim=True)
    dead = torch.isneginf(row_max)
    probs = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)
    return probs.masked_fill(dead, 0.0)


def exact_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    need_weights: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Exact softmax attention; calls ``F.scaled_dot_product_attention`` when no weights are needed.

    With ``need_weights`` the weights are computed explicitly (fully masked rows give zeros,
    where SDPA and nn.MultiheadAttention give NaN) and, as in nn.MultiheadAttention, the
    returned weights are the ones applied to ``v``: after dropout.
    ``generator`` is unused: exact attention draws no random numbers except dropout,
    which follows torch's global RNG exactly as SDPA does.
    """
    del generator
    if not need_weights:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        return out, None
    weights = safe_softmax(scaled_scores(q, k, attn_mask, is_causal, scale))
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v), weights
