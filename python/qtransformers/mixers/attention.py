"""The SDPA self-attention mixer: the baseline every other mixer is measured against."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.mixers.registry import register


@register("attention")
class SelfAttentionMixer(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``; (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, *, causal: bool = True, num_heads: int = 8, bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise InvalidArgumentError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.causal = dim, num_heads, causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of ``x`` (B, T, D)."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(b, t, self.dim))
