"""Hugging Face ``generate()`` through a sampled KV cache: a transformers ``Cache`` of SampledKVCaches.

:class:`SampledCache` holds one :class:`~qtransformers.attention.SampledKVCache` per decoder layer;
its ``update`` appends each step's keys and values to that layer's index. The attention function
that :meth:`SampledCache.register` adds to transformers' ``AttentionInterface`` (under a name of
its own) answers each layer's queries from that index, the newest rows causal among themselves,
without scoring every cached key. :func:`generate_sampled` does both around one ``generate`` call::

    tokens, cache = generate_sampled(model, input_ids, max_new_tokens=32, cache_options=dict(budget=16))
    cache.history[layer]  # that layer's SampledKVCache.stats after each call (prefill, then one per token)

A model run with a SampledCache but another attention implementation would attend over the new
keys only; the cache detects that at the next step (its layer was updated but never attended)
and raises :class:`~qtransformers.exceptions.BackendUnavailableError`. Beam search, cropping and
batch reordering are refused (the index cannot be reordered). This module imports transformers.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from qtransformers.attention import SampledKVCache
from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError

_NAMES = itertools.count()


class SampledLayer(CacheLayerMixin):
    """One decoder layer's cache: a SampledKVCache built on the first update, and its stats per call."""

    is_sliding = False
    is_croppable = False
    supports_early_init = False

    def __init__(self, *, groups: int = 1, **options: Any) -> None:
        super().__init__()
        self.groups, self.options = groups, options
        self.kv: SampledKVCache | None = None
        self.pending = False
        self.history: list[dict] = []

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Build the SampledKVCache for key_states (B, H_kv, S, E) and value_states (B, H_kv, S, Ev)."""
        self.device = key_states.device
        heads = key_states.size(1) * self.groups
        self.kv = SampledKVCache(heads, key_states.size(-1), value_dim=value_states.size(-1), **self.options)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the new keys/values (B, H_kv, S_new, E) to the index; returns them unchanged."""
        if self.pending:
            raise BackendUnavailableError(
                "this SampledCache layer was updated but never attended: run the model with the attention "
                "implementation SampledCache.register() returns (or use generate_sampled)"
            )
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        k, v = key_states, value_states
        if self.groups > 1:
            k, v = k.repeat_interleave(self.groups, dim=1), v.repeat_interleave(self.groups, dim=1)
        assert self.kv is not None  # built by lazy_initialization
        self.kv.append(k.float().contiguous(), v.float().contiguous())
        self.pending = True
        return key_states, value_states

    def attend(self, query: torch.Tensor, attention_mask: torch.Tensor | None, scale: float | None) -> torch.Tensor:
        """Estimated attention (B, L, H, Ev) of the newest rows query (B, H, L, E) over the layer's cache."""
        if self.kv is None:
            raise InvalidArgumentError("SampledLayer.attend before any keys were appended")
        out = self.kv.attend(query.float().contiguous(), attention_mask, scale=scale)
        self.history.append(dict(self.kv.stats))
        self.pending = False
        return out.to(query.dtype).transpose(1, 2).contiguous()

    def get_seq_length(self) -> int:
        """Keys cached so far."""
        return 0 if self.kv is None else int(self.kv.length)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """(kv_length, kv_offset) for the mask of ``query_length`` new rows."""
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        """-1: the cache grows without a maximum."""
        return -1

    def reset(self) -> None:
        """Forget every key, value and stat."""
        if self.kv is not None:
            self.kv.reset()
        self.pending = False
        self.history = []

    def _refuse(self, *args, **kwargs) -> None:
        raise InvalidArgumentError("a SampledCache cannot be reordered, cropped or repeated (no beam search)")

    reorder_cache = crop = batch_repeat_interleave = batch_select_indices = _refuse


class SampledCache(Cache):
    """A transformers Cache with one SampledKVCache per decoder layer of ``config`` (layer i seeded ``seed + i``).

    ``options`` are SampledKVCache's (method, budget, epsilon, delta, bits, tables, sinks, window).
    Grouped-query attention is served by repeating each key/value head over its query group.
    """

    def __init__(self, config, *, seed: int = 0, **options: Any) -> None:
        text = config.get_text_config(decoder=True)
        heads = text.num_attention_heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        if heads % kv_heads:
            raise InvalidArgumentError(
                f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
            )
        layers: list[Any] = [
            SampledLayer(groups=heads // kv_heads, seed=seed + i, **options) for i in range(text.num_hidden_layers)
        ]
        super().__init__(layers=layers)

    @property
    def history(self) -> list[list[dict]]:
        """Per layer, the SampledKVCache stats after each call (prefill first, then one per generated token)."""
        return [layer.history for layer in self.layers if isinstance(layer, SampledLayer)]

    def register(self) -> str:
        """Register this cache's attention (and SDPA's mask) under a fresh name; pass it as attn_implementation."""
        name = f"qtransformers_sampled_cache_{next(_NAMES)}"
        layers = self.layers

        def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
            if dropout and module.training:
                raise InvalidArgumentError("a SampledCache does not apply attention dropout; call model.eval()")
            return layers[module.layer_idx].attend(query, attention_mask, scaling), None

        AttentionInterface.register(name, attention)
        AttentionMaskInterface.register(name, sdpa_mask)
        return name


@torch.no_grad()
def generate_sampled(
    model, input_ids: torch.Tensor, *, cache_options: dict | None = None, **generate_kwargs: Any
) -> tuple[torch.Tensor, SampledCache]:
    """(model.generate(input_ids, ...) decoded through a fresh SampledCache, that cache); restores the attention."""
    cache = SampledCache(model.config, **(cache_options or {}))
    previous = model.config._attn_implementation
    model.set_attn_implementation(cache.register())
    try:
        tokens = model.generate(input_ids, cache=cache, **generate_kwargs)
    finally:
        model.set_attn_implementation(previous)
    return tokens, cache
