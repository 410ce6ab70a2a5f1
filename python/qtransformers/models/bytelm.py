"""ByteLM: a byte-level (vocabulary 256) language model over any causal mixer or hybrid pattern.

Pre-norm residual blocks ``x + mixer(LN(x))`` and ``x + MLP(LN(x))``, a position scheme (learned
absolute embeddings, rotary positions in the attention-based mixers, or none), a final LayerNorm
and an output layer tied to the byte embedding. The mixer of each layer comes from a pattern
(:mod:`qtransformers.mixers.hybrid`): a single name, ``"qrh,qrh,qrh,attention"`` (repeated to
the depth) or ``"hyena+quantum"`` (parallel mixers summed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.mixers import options_of
from qtransformers.mixers.hybrid import build_entry, check_options, layer_mixers
from qtransformers.mixers.incremental import forward_incremental, supports_incremental

VOCAB_SIZE = 256
POSITIONS = ("learned", "rope", "none")


@dataclass
class ByteLMConfig:
    """Hyper-parameters of :class:`ByteLM`; ``mixer`` is a causal mixer name or a hybrid pattern.

    ``mixer``: a name from ``mixers.available(causal=True)`` or a pattern of them
    (:mod:`qtransformers.mixers.hybrid`, which also says how ``mixer_options`` reach several mixers).
    The MLP hidden width is ``mlp_hidden`` if given, else ``mlp_ratio * dim``. A ``qrh`` mixer is
    built with ``max_len=max_seq_len`` unless ``mixer_options`` sets it (its causal kernel is
    defined on that fixed length, the same for training, evaluation and generation).
    ``position``: ``"learned"`` (a table of ``max_seq_len`` absolute embeddings, the default),
    ``"rope"`` (no table; every mixer with a ``rope`` option gets ``rope=True``: attention, quantum,
    phase) or ``"none"`` (no table; mixers keep their own defaults). Without a table the model runs
    at any length its mixers allow (:meth:`ByteLM.max_context`). ``vocab_size`` is 256 (bytes) for
    text; the synthetic recall tasks use their own vocabularies.
    """

    mixer: str = "attention"
    dim: int = 128
    layers: int = 4
    max_seq_len: int = 256
    mlp_ratio: int = 4
    mlp_hidden: int | None = None
    mixer_options: dict = field(default_factory=dict)
    activation_checkpointing: bool = False
    position: str = "learned"
    vocab_size: int = VOCAB_SIZE

    def to_dict(self) -> dict:
        """JSON-serialisable form (saved beside checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ByteLMConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def mixer_defaults(config: ByteLMConfig, names: set[str]) -> dict[str, dict]:
    """Options the model gives mixers unless ``mixer_options`` overrides them (qrh's max_len, RoPE)."""
    defaults: dict[str, dict] = {name: {} for name in names}
    if "qrh" in names:
        defaults["qrh"]["max_len"] = config.max_seq_len
    if config.position == "rope":
        for name in names:
            if "rope" in options_of(name):
                defaults[name]["rope"] = True
    return defaults


class Block(nn.Module):
    """Pre-norm residual block: token mixer (``entry``'s mixer names) then MLP; (B, T, D) -> (B, T, D)."""

    def __init__(self, config: ByteLMConfig, entry: tuple[str, ...]) -> None:
        super().__init__()
        dim, hidden = config.dim, config.mlp_hidden or config.mlp_ratio * config.dim
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = build_entry(entry, dim, config.mixer_options, mixer_defaults(config, set(entry)))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """Full causal forward over x (B, T, D)."""
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_cached(self, x: Tensor, cache: dict) -> Tensor:
        """Forward of the newest positions x (B, t, D) given the mixer's cache of earlier ones."""
        x = x + forward_incremental(self.mixer, self.norm1(x), cache)
        return x + self.mlp(self.norm2(x))


class DecodeCache:
    """Per-layer mixer caches plus the number of positions already consumed."""

    def __init__(self, layers: int) -> None:
        self.layers: list[dict] = [{} for _ in range(layers)]
        self.length = 0


class ByteLM(nn.Module):
    """Byte-level causal language model: tokens (B, T) int64 in [0, V) -> logits (B, T, V), V = vocab_size (256)."""

    def __init__(self, config: ByteLMConfig) -> None:
        super().__init__()
        if min(config.dim, config.layers, config.max_seq_len, config.vocab_size) < 1:
            raise InvalidArgumentError(
                f"dim, layers, max_seq_len and vocab_size must be >= 1, got {config.dim}, {config.layers}, "
                f"{config.max_seq_len}, {config.vocab_size}"
            )
        if config.position not in POSITIONS:
            raise InvalidArgumentError(f"position must be one of {POSITIONS}, got {config.position!r}")
        pattern = layer_mixers(config.mixer, config.layers)
        check_options(config.mixer, config.mixer_options)
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.pos = nn.Embedding(config.max_seq_len, config.dim) if config.position == "learned" else None
        self.blocks = nn.ModuleList(Block(config, entry) for entry in pattern)
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=0.02)

    def num_parameters(self) -> int:
        """Number of trainable parameters (the tied output layer counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def max_context(self) -> int | None:
        """Longest input the model accepts: ``max_seq_len`` with a learned table, else the smallest
        ``max_len`` of its mixers (a causal qrh kernel is defined up to it), None when unlimited."""
        if self.pos is not None:
            return self.config.max_seq_len
        limits: list[int] = [v for m in self.modules() if isinstance(v := getattr(m, "max_len", None), int)]
        return min(limits) if limits else None

    def _check(self, tokens: Tensor, offset: int = 0) -> None:
        if tokens.dim() != 2:
            raise ShapeError(f"expected tokens (B, T), got {tuple(tokens.shape)}")
        limit = self.max_context()
        if limit is not None and offset + tokens.size(1) > limit:
            raise ShapeError(
                f"positions up to {offset + tokens.size(1)} exceed the model's longest context {limit} "
                f"(position={self.config.position!r}, max_seq_len {self.config.max_seq_len})"
            )

    def _embed(self, tokens: Tensor, offset: int) -> Tensor:
        x = self.embed(tokens)
        if self.pos is None:
            return x
        return x + self.pos(torch.arange(offset, offset + tokens.size(1), device=tokens.device))

    def hidden(self, tokens: Tensor) -> Tensor:
        """Final normalised hidden states (B, T, D) of ``tokens`` (B, T)."""
        self._check(tokens)
        x = self._embed(tokens, 0)
        for block in self.blocks:
            if self.config.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """Next-token logits (B, T, V) from hidden states (B, T, D) via the tied embedding."""
        return F.linear(hidden, self.embed.weight)

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-byte logits (B, T, 256) of ``tokens`` (B, T)."""
        return self.logits(self.hidden(tokens))

    def loss(self, tokens: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy in nats per byte of predicting ``targets`` (B, T) from ``tokens`` (B, T)."""
        logits = self(tokens)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))

    def energy_terms(self) -> dict[str, Tensor] | None:
        """Mean over layers of the phase energies recorded by the last forward (None without phase mixers)."""
        recorded = [m.energies for m in self.modules() if getattr(m, "energies", None) is not None]
        if not recorded:
            return None
        return {name: torch.stack([r[name] for r in recorded]).mean() for name in recorded[0]}

    def supports_cache(self) -> bool:
        """Whether every mixer has a cached incremental forward."""
        return all(supports_incremental(b.mixer) for b in self.blocks)

    def new_cache(self) -> DecodeCache:
        """An empty decoding cache (requires :meth:`supports_cache`)."""
        if not self.supports_cache():
            raise InvalidArgumentError(f"mixer {self.config.mixer!r} has no cached incremental forward")
        return DecodeCache(len(self.blocks))

    def forward_cached(self, tokens: Tensor, cache: DecodeCache) -> tuple[Tensor, Tensor]:
        """(logits, hidden) at the newest positions ``tokens`` (B, t) after ``cache.length`` earlier ones."""
        self._check(tokens, cache.length)
        t = tokens.size(1)
        x = self._embed(tokens, cache.length)
        for block, layer_cache in zip(self.blocks, cache.layers):
            x = block.forward_cached(x, layer_cache)
        cache.length += t
        hidden = self.norm(x)
        return self.logits(hidden), hidden
