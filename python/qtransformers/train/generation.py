"""Text generation from a ByteLM: temperature, top-k, top-p, repetition penalty, QLLM's sampler.

Decoding is incremental (a cache per layer) when every mixer of the model has a cached forward
(attention's KV cache, the phase mixer's), and recomputes the window otherwise; both give the
same logits. ``attention_cache="sampled"`` decodes a model of attention mixers through a
:class:`~qtransformers.attention.SampledKVCache` per layer (an estimate, not exact attention). Contexts longer than ``max_seq_len`` keep the newest ``max_seq_len`` bytes.

QLLM's quantum-inspired sampler reads a *phase stability* s in [0, 1] at every step: the cosine
similarity of the last two final hidden states, mapped to [0, 1] (1 = the state stopped moving).
The temperature is annealed by it, ``T_eff = T_min + (T - T_min) (1 - s)``, and the repetition
penalty is made coherence-aware, ``p_eff = 1 + (p - 1) (1 + s)``: a state locked into a loop
(high s, like the "[ [ [ [" the original produced) is penalised twice as hard for repeating.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.models import ByteLM
from qtransformers.models.sampled_decoding import ATTENTION_CACHES, sampled_decode_cache


@dataclass
class SamplingConfig:
    """How to pick the next byte; ``quantum`` switches on QLLM's stability-annealed sampler."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    penalty_window: int = 64
    quantum: bool = False
    min_temperature: float = 0.3

    def validate(self) -> None:
        """Raise InvalidArgumentError for values outside their ranges."""
        if self.temperature < 0:
            raise InvalidArgumentError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise InvalidArgumentError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty < 1.0:
            raise InvalidArgumentError(f"repetition_penalty must be >= 1, got {self.repetition_penalty}")
        if not 0.0 <= self.min_temperature:
            raise InvalidArgumentError(f"min_temperature must be >= 0, got {self.min_temperature}")


def phase_stability(previous: Tensor, current: Tensor) -> Tensor:
    """(1 + cos(previous, current)) / 2 per row for hidden states (B, D) -> (B,), in [0, 1]."""
    return (1.0 + F.cosine_similarity(previous.float(), current.float(), dim=-1)) / 2.0


def apply_repetition_penalty(logits: Tensor, recent: Tensor, penalty: Tensor) -> Tensor:
    """CTRL-style penalty: logits (B, V) of bytes in ``recent`` (B, n) divided (if > 0) or multiplied by penalty (B,)."""
    if recent.numel() == 0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, recent, True)
    p = penalty.view(-1, 1).to(logits.dtype)
    penalised = torch.where(logits > 0, logits / p, logits * p)
    return torch.where(seen, penalised, logits)


def filter_top_k_top_p(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Logits (B, V) with everything outside the top-k and outside the top-p nucleus set to -inf."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # keeps the token crossing top_p
        drop_unsorted = torch.zeros_like(drop).scatter(1, order, drop)
        logits = logits.masked_fill(drop_unsorted, float("-inf"))
    return logits


def next_byte(
    logits: Tensor, recent: Tensor, config: SamplingConfig, stability: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Sample next bytes (B,) from last-position logits (B, 256) given recent bytes (B, n) and stability (B,)."""
    logits = logits.float()
    s = stability if config.quantum else torch.zeros_like(stability)
    penalty = 1.0 + (config.repetition_penalty - 1.0) * (1.0 + s)
    logits = apply_repetition_penalty(logits, recent, penalty)
    temperature = torch.full_like(s, config.temperature)
    if config.quantum:
        low = min(config.min_temperature, config.temperature)
        temperature = low + (config.temperature - low) * (1.0 - s)
    if config.temperature == 0 or config.top_k == 1:
        return logits.argmax(-1)
    logits = logits / temperature.clamp_min(1e-4).view(-1, 1)
    logits = filter_top_k_top_p(logits, config.top_k, config.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate(
    model: ByteLM,
    prompt: Tensor,
    max_new_bytes: int,
    config: SamplingConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    attention_cache: str = "exact",
    cache_options: dict | None = None,
) -> Tensor:
    """Bytes (B, T0 + max_new_bytes) continuing ``prompt`` (B, T0) int64, T0 >= 1.

    ``attention_cache`` = "exact" (tensor KV caches) or "sampled" (a SampledKVCache per layer built
    with ``cache_options``; needs ``use_cache`` and a model whose mixer is the attention mixer).
    """
    config = config or SamplingConfig()
    config.validate()
    if prompt.dim() != 2 or prompt.size(1) < 1:
        raise ShapeError(f"expected a non-empty prompt (B, T0), got {tuple(prompt.shape)}")
    if max_new_bytes < 0:
        raise InvalidArgumentError(f"max_new_bytes must be >= 0, got {max_new_bytes}")
    if attention_cache not in ATTENTION_CACHES:
        raise InvalidArgumentError(f"attention_cache must be one of {ATTENTION_CACHES}, got {attention_cache!r}")
    sampled = attention_cache == "sampled"
    if sampled and not use_cache:
        raise InvalidArgumentError("attention_cache='sampled' decodes through a cache; it needs use_cache=True")
    model.eval()
    window = model.config.max_seq_len
    cached = use_cache and (sampled or model.supports_cache())
    seq = prompt
    cache = None

    def full(tokens: Tensor) -> tuple[Tensor, Tensor]:
        if cached:
            nonlocal cache
            cache = sampled_decode_cache(model, **(cache_options or {})) if sampled else model.new_cache()
            return model.forward_cached(tokens, cache)
        hidden = model.hidden(tokens)
        return model.logits(hidden[:, -2:]), hidden[:, -2:]

    logits, hidden = full(seq[:, -window:])
    previous = hidden[:, -2] if hidden.size(1) > 1 else hidden[:, -1]
    current = hidden[:, -1]
    for _ in range(max_new_bytes):
        stability = phase_stability(previous, current)
        recent = seq[:, -config.penalty_window :] if config.repetition_penalty > 1.0 else seq[:, :0]
        token = next_byte(logits[:, -1], recent, config, stability, generator).view(-1, 1)
        seq = torch.cat([seq, token], dim=1)
        if cached and cache.length < window:
            logits, hidden = model.forward_cached(token, cache)
        else:
            logits, hidden = full(seq[:, -window:])
        previous, current = current, hidden[:, -1]
    return seq
