"""Cached incremental decoding for mixers that allow it (KV caches for attention-like mixers).

``forward_incremental(mixer, x_new, cache)`` maps the newest positions x_new (B, t, D) to the
same outputs a full causal forward over all positions so far would give there, updating
``cache`` (a dict owned by the caller) in place. Mixers opt in with ``@register_incremental``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.mixers.attention import SelfAttentionMixer, rotate_qk

_STEPPERS: dict[type, Callable[[nn.Module, Tensor, dict], Tensor]] = {}
_SUPPORTED: dict[type, Callable[[nn.Module], bool]] = {}


def register_incremental(cls: type, supported: Callable[[Any], bool] | None = None):
    """Decorator registering ``fn(mixer, x_new, cache) -> y_new`` as the cached forward of ``cls``.

    ``supported(mixer)``, if given, says whether a particular instance can use it (e.g. a parallel
    hybrid only when each of its branches can).
    """

    def decorate(fn):
        _STEPPERS[cls] = fn
        if supported is not None:
            _SUPPORTED[cls] = supported
        return fn

    return decorate


def supports_incremental(mixer: nn.Module) -> bool:
    """Whether ``mixer`` has a cached forward and is causal (otherwise decode by recomputing)."""
    kind = type(mixer)
    if kind not in _STEPPERS or not getattr(mixer, "causal", False):
        return False
    return kind not in _SUPPORTED or _SUPPORTED[kind](mixer)


def forward_incremental(mixer: nn.Module, x: Tensor, cache: dict) -> Tensor:
    """Outputs (B, t, D) at the newest ``t`` positions ``x`` (B, t, D), extending ``cache``."""
    if not supports_incremental(mixer):
        raise InvalidArgumentError(f"mixer {type(mixer).__name__} has no causal cached forward")
    return _STEPPERS[type(mixer)](mixer, x, cache)


def cached_attention(q: Tensor, k: Tensor, v: Tensor, cache: dict) -> Tensor:
    """Causal SDPA of new queries q (B, H, t, E) over cached plus new keys/values; appends k, v to ``cache``.

    A cache holding a SampledKVCache under ``"sampled"`` (see ``qtransformers.models.sampled_decoding``)
    attends through it instead (its estimate, the newest rows causal among themselves).
    """
    sampled = cache.get("sampled")
    if sampled is not None:
        sampled.append(k, v)
        return sampled.attend(q)
    if "k" in cache:
        k = torch.cat([cache["k"], k], dim=2)
        v = torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = k, v
    t, s = q.size(2), k.size(2)
    mask = None
    if t > 1:
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@register_incremental(SelfAttentionMixer)
def _attention_incremental(mixer: SelfAttentionMixer, x: Tensor, cache: dict) -> Tensor:
    b, t, _ = x.shape
    q, k, v = mixer.qkv(x).view(b, t, 3, mixer.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = rotate_qk(q, k, mixer.rope_base, offset=cache["k"].size(2) if "k" in cache else 0)
    y = cached_attention(q, k, v, cache)
    return mixer.out(y.transpose(1, 2).reshape(b, t, mixer.dim))
