"""``QRHTransformerBlock``: a pre-norm residual block where ΨQRH replaces attention, the FFN, or both."""

from __future__ import annotations

from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.mixers.attention import SelfAttentionMixer
from qtransformers.mixers.qrh import QRHLayer

MODES = ("attention", "ffn", "hybrid")


class QRHTransformerBlock(nn.Module):
    """Pre-norm block on (B, T, 4·embed_dim): ``x + A(LN x)`` then ``x + B(LN x)``.

    ``mode="attention"``: A = QRHLayer, B = FFN (QRH replaces attention);
    ``"ffn"``: A = SDPA self-attention, B = QRHLayer (QRH replaces the FFN);
    ``"hybrid"``: A = B = QRHLayer (two independent layers). ``qrh_options`` go to every QRHLayer.
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        mode: str = "attention",
        causal: bool = False,
        num_heads: int = 8,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        **qrh_options,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.dim = mode, 4 * embed_dim
        dim = self.dim

        def qrh() -> QRHLayer:
            return QRHLayer(embed_dim, causal=causal, **qrh_options)

        def ffn() -> nn.Module:
            return nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))

        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mix = SelfAttentionMixer(dim, causal=causal, num_heads=num_heads) if mode == "ffn" else qrh()
        self.feed = ffn() if mode == "attention" else qrh()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, 4·embed_dim) -> (B, T, 4·embed_dim)."""
        if x.dim() != 3 or x.size(-1) != self.dim:
            raise ShapeError(f"expected input (B, T, {self.dim}), got {tuple(x.shape)}")
        x = x + self.drop(self.mix(self.norm1(x)))
        return x + self.drop(self.feed(self.norm2(x)))
