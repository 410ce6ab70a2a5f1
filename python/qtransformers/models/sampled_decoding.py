"""Decoding a ByteLM through a :class:`~qtransformers.attention.SampledKVCache` per attention layer.

``sampled_decode_cache(model, **options)`` returns a :class:`~qtransformers.models.bytelm.DecodeCache`
whose layer caches each hold a ``SampledKVCache`` under the key ``"sampled"``; the attention mixer's
cached forward (:func:`qtransformers.mixers.incremental.cached_attention`) then appends the new keys
and values to it and attends through it (the newest rows causal among themselves) instead of
running exact SDPA over a tensor cache. Only models whose every mixer is the ``attention`` mixer
qualify.
"""

from __future__ import annotations

from typing import Any

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.mixers.attention import SelfAttentionMixer
from qtransformers.models.bytelm import ByteLM, DecodeCache

ATTENTION_CACHES = ("exact", "sampled")


def sampled_decode_cache(model: ByteLM, *, seed: int = 0, **options: Any) -> DecodeCache:
    """An empty decoding cache for ``model`` with one SampledKVCache per layer (layer i seeded ``seed + i``).

    ``options`` are :class:`~qtransformers.attention.SampledKVCache`'s (method, budget, epsilon, delta,
    bits, tables, sinks, window). Raises InvalidArgumentError unless every mixer is the attention mixer.
    """
    from qtransformers.attention import SampledKVCache

    others = sorted({type(b.mixer).__name__ for b in model.blocks if not isinstance(b.mixer, SelfAttentionMixer)})
    if others:
        raise InvalidArgumentError(
            f"a sampled attention cache needs a model whose mixer is 'attention'; this model's is "
            f"{model.config.mixer!r} ({', '.join(others)})"
        )
    cache = DecodeCache(len(model.blocks))
    for i, (block, layer) in enumerate(zip(model.blocks, cache.layers)):
        mixer = block.mixer
        layer["sampled"] = SampledKVCache(mixer.num_heads, mixer.dim // mixer.num_heads, seed=seed + i, **options)
    return cache


def cache_stats(cache: DecodeCache) -> list[dict]:
    """The ``stats`` of each layer's SampledKVCache after its latest call (one dict per layer)."""
    return [dict(layer["sampled"].stats) for layer in cache.layers if "sampled" in layer]
