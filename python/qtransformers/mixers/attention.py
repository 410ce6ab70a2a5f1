"""The SDPA self-attention mixer: the baseline every other mixer is measured against."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.position import rope
from qtransformers.mixers.registry import register


def check_heads(dim: int, num_heads: int, use_rope: bool) -> None:
    """Raise unless ``dim`` splits into ``num_heads`` heads (of even size when RoPE rotates their pairs)."""
    if num_heads < 1 or dim % num_heads != 0:
        raise InvalidArgumentError(f"dim {dim} is not divisible by num_heads {num_heads}")
    if use_rope and (dim // num_heads) % 2:
        raise InvalidArgumentError(f"rope needs an even head size, got dim {dim} / num_heads {num_heads}")


def rotate_qk(q: Tensor, k: Tensor, base: float | None, offset: int = 0) -> tuple[Tensor, Tensor]:
    """q, k (B, H, T, E) with RoPE at positions offset.. applied to both (unchanged when ``base`` is None)."""
    if base is None:
        return q, k
    return rope(q, base, offset=offset), rope(k, base, offset=offset)


@register("attention")
class SelfAttentionMixer(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``; (B, T, D) -> (B, T, D).

    ``rope=True`` applies rotary positions (:func:`qtransformers.functional.rope`, base ``rope_base``)
    to q and k of every head, in the full forward and in the cached decode; defined at any length.
    """

    def __init__(
        self,
        dim: int,
        *,
        causal: bool = True,
        num_heads: int = 8,
        bias: bool = True,
        rope: bool = False,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        check_heads(dim, num_heads, rope)
        self.dim, self.num_heads, self.causal = dim, num_heads, causal
        self.rope_base = rope_base if rope else None
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of ``x`` (B, T, D)."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate_qk(q, k, self.rope_base)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(b, t, self.dim))
