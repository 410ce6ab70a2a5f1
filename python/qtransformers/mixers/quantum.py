"""The "quantum" mixer: multi-head self-attention estimated from measurement shots."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.quantum import quantum_attention
from qtransformers.mixers.attention import check_heads, rotate_qk
from qtransformers.mixers.registry import register


@register("quantum")
class QuantumAttentionMixer(nn.Module):
    """Self-attention whose rows are estimated by :func:`quantum_attention`; (B, T, D) -> (B, T, D).

    Causal mode lays keys out in position order and keys each row's random stream by its
    position, so an earlier row's shots never depend on later tokens nor on how many follow
    (prefix consistency). ``adaptive`` (which splits shots across rows) needs ``causal=False``.
    The block control variate uses blocks of ``cv_block`` keys, fixed at construction so the
    operator does not change with the sequence length. ``seed`` seeds the mixer's generator;
    each forward draws fresh shots from it. ``backend_options`` go to :func:`quantum_attention`
    as keywords (for ``backend="lsh"``: epsilon, delta, bits, tables, sinks, window). ``rope=True``
    applies rotary positions to q and k (as the attention mixer does); the mixer has no cached
    decode, so generation recomputes the window.
    """

    def __init__(
        self,
        dim: int,
        *,
        causal: bool = True,
        num_heads: int = 8,
        backend: str = "stratified",
        num_samples: int = 32,
        control_variate: bool = False,
        adaptive: bool = False,
        top_k: int | None = None,
        cv_block: int = 4,
        seed: int = 0,
        bias: bool = True,
        backend_options: dict | None = None,
        rope: bool = False,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        check_heads(dim, num_heads, rope)
        if causal and adaptive:
            raise InvalidArgumentError("the causal quantum mixer does not support adaptive=True (it couples rows)")
        self.dim, self.num_heads, self.causal = dim, num_heads, causal
        self.rope_base = rope_base if rope else None
        self.options: dict[str, Any] = dict(
            backend=backend,
            num_samples=num_samples,
            control_variate=control_variate,
            adaptive=adaptive,
            top_k=top_k,
            cv_block=cv_block if control_variate else None,  # the block size matters only with the control variate
            **(backend_options or {}),
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        """Mix tokens of ``x`` (B, T, D)."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        if self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(int(self.generator.initial_seed()))
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate_qk(q, k, self.rope_base)
        y = quantum_attention(q, k, v, is_causal=self.causal, generator=self.generator, **self.options)
        assert isinstance(y, Tensor)  # need_weights=False: the output alone
        return self.out(y.transpose(1, 2).reshape(b, t, self.dim))
