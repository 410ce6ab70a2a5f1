"""Registry of attention backends used by :class:`QuantumMultiheadAttention`.

A backend is a function with SDPA's layout and mask polarity::

    fn(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config)
        -> (out (B, H, L, Ev), weights (B, H, L, S) or None)

``config`` is the module's :class:`~qtransformers.attention.config.QuantumConfig`.

The built-in backends register themselves when their modules are imported; the registry imports
those modules (:data:`BUILTIN_MODULES`) on its first lookup, so there is no import cycle between
the registry and the backends, and nothing is imported before it is needed.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.attention import exact_attention

AttentionBackend = Callable[..., tuple]

_BACKENDS: dict[str, AttentionBackend] = {}
_NON_CAUSAL: set[str] = set()

BUILTIN_MODULES = ("qtransformers.attention.sampled", "qtransformers.quantum.backends")
"""Modules whose import registers the built-in backends beyond "exact"."""


@functools.cache
def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def register_backend(name: str, *, causal: bool = True):
    """Decorator registering an attention backend under ``name`` (``causal=False``: no causal masks)."""

    def decorate(fn: AttentionBackend) -> AttentionBackend:
        if name in _BACKENDS:
            raise InvalidArgumentError(f"attention backend {name!r} is already registered")
        _BACKENDS[name] = fn
        if not causal:
            _NON_CAUSAL.add(name)
        return fn

    return decorate


def available_backends(*, causal: bool | None = None) -> list[str]:
    """Sorted names of the registered attention backends (only causal-capable ones if ``causal``)."""
    _load_builtins()
    return sorted(n for n in _BACKENDS if not (causal and n in _NON_CAUSAL))


def get_backend(name: str) -> AttentionBackend:
    """The backend registered as ``name``; InvalidArgumentError naming the choices otherwise."""
    _load_builtins()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown quantum_backend {name!r}; available: {', '.join(available_backends())}"
        ) from None


@register_backend("exact")
def _exact(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config):
    del config
    return exact_attention(
        q, k, v, attn_mask, dropout_p, is_causal, scale=scale, need_weights=need_weights, generator=generator
    )
