"""Registry of attention backends used by :class:`QuantumMultiheadAttention`.

A backend is a function with SDPA's layout and mask polarity::

    fn(q, k, v, attn_mask, dropout_p, is_causal, *, scale, need_weights, generator, config)
        -> (out (B, H, L, Ev), weights (B, H, L, S) or None)

``config`` is the module's :class:`~qtransformers.attention.config.QuantumConfig`.
"""

from __future__ import annotations

from typing import Callable

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.functional.attention import exact_attention

AttentionBackend = Callable[..., tuple]

_BACKENDS: dict[str, AttentionBackend] = {}
_NON_CAUSAL: set[str] = set()


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
    return sorted(n for n in _BACKENDS if not (causal and n in _NON_CAUSAL))


def get_backend(name: str) -> AttentionBackend:
    """The backend registered as ``name``; InvalidArgumentError naming the choices otherwise."""
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


# Importing the module registers the sampled backends and the baselines.
import qtransformers.attention.sampled  # noqa: E402,F401
