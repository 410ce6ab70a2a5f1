"""Name -> constructor registry shared by models, benches and tests.

Each mixer module registers its mixers when imported; the registry imports :data:`BUILTIN_MODULES`
on its first lookup, so the registry imports no mixer module (no import cycle) and a lookup always
sees every built-in mixer.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from qtransformers.exceptions import InvalidArgumentError


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    causal: bool
    non_causal: bool
    signature_of: Callable[..., object]


_REGISTRY: dict[str, _Entry] = {}

BUILTIN_MODULES = (
    "qtransformers.mixers.attention",
    "qtransformers.mixers.fnet",
    "qtransformers.mixers.hyena",
    "qtransformers.mixers.phase",
    "qtransformers.mixers.qrh",
    "qtransformers.mixers.quantum",
    "qtransformers.mixers.spectral",
)
"""Modules whose import registers the built-in mixers."""


def register(name: str, *, causal: bool = True, non_causal: bool = True, signature_of: Callable | None = None):
    """Class/function decorator registering a mixer factory ``f(dim, *, causal, **options)``.

    The factory's keyword-only parameters (or those of ``signature_of``, for a factory that
    forwards ``**options``) are the mixer's options (:func:`options_of`).
    """

    def decorate(factory):
        if name in _REGISTRY:
            raise InvalidArgumentError(f"mixer {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, causal, non_causal, signature_of or factory)
        return factory

    return decorate


@functools.cache
def _ensure_loaded() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available(*, causal: bool | None = None) -> list[str]:
    """Sorted names of registered mixers (only those supporting ``causal`` if given)."""
    _ensure_loaded()
    names = []
    for name, entry in _REGISTRY.items():
        if causal is None or (entry.causal if causal else entry.non_causal):
            names.append(name)
    return sorted(names)


def supports_causal(name: str) -> bool:
    """Whether mixer ``name`` can be built with ``causal=True``."""
    _ensure_loaded()
    return _lookup(name).causal


def options_of(name: str) -> frozenset[str]:
    """Names of the options (keyword-only constructor parameters other than ``causal``) mixer ``name`` accepts."""
    _ensure_loaded()
    parameters = inspect.signature(_lookup(name).signature_of).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "causal")


def _lookup(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown mixer {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def build(name: str, dim: int, causal: bool = True, **options) -> nn.Module:
    """Build mixer ``name`` of width ``dim``: a module mapping (B, T, dim) -> (B, T, dim)."""
    _ensure_loaded()
    entry = _lookup(name)
    if causal and not entry.causal:
        raise InvalidArgumentError(f"mixer {name!r} cannot be causal; build it with causal=False")
    if not causal and not entry.non_causal:
        raise InvalidArgumentError(f"mixer {name!r} is causal only; build it with causal=True")
    return entry.factory(dim, causal=causal, **options)
