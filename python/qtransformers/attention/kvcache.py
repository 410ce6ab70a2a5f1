"""SampledKVCache: a decoding KV cache whose SimHash index lives in the Rust core.

``append`` hashes new keys into per-(batch, head) SimHash tables; ``attend`` estimates softmax
attention of the newest positions' queries over the cache with the estimator of
:mod:`qtransformers.functional.lsh` (candidates scored exactly, the rest from uniform tail
draws, self-normalised), without scoring every key. ``attend(q, exact=True)`` computes exact
attention over the same cache.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError, ShapeError
from qtransformers.functional.lsh import LshCacheCore, LshSettings, _check_tensor

METHODS = ("lsh",)


class SampledKVCache:
    """KV cache of ``num_heads`` heads (key width ``head_dim``, value width ``value_dim`` or ``head_dim``).

    Tensors are float32 on CPU in SDPA's layout. The batch size is fixed by the first ``append``.
    ``seed`` draws the hyperplanes (per head, independent of the cache length) and keys each
    row's tail stream by (b·H + h, absolute position), so the same seed gives the same output.
    ``budget``, ``epsilon``, ``delta``, ``bits``, ``tables``, ``sinks``, ``window``: as in
    :func:`qtransformers.functional.lsh_attention`.
    """

    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        *,
        method: str = "lsh",
        seed: int = 0,
        budget: int = 64,
        epsilon: float | None = None,
        delta: float = 0.05,
        bits: int = 8,
        tables: int = 16,
        sinks: int = 4,
        window: int = 16,
        value_dim: int | None = None,
    ) -> None:
        if method not in METHODS:
            raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
        value_dim = head_dim if value_dim is None else value_dim
        for name, value in (("num_heads", num_heads), ("head_dim", head_dim), ("value_dim", value_dim)):
            if not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise InvalidArgumentError(f"seed must be an int in [0, 2^64), got {seed!r}")
        self.num_heads, self.head_dim, self.value_dim = num_heads, head_dim, value_dim
        self.method, self.seed = method, seed
        self.settings = LshSettings(budget, epsilon, delta, bits, tables, sinks, window)
        self.settings.check()
        self._core: LshCacheCore | None = None
        self.stats: dict[str, Tensor] = {}

    @property
    def length(self) -> int:
        """Number of cached positions S."""
        return 0 if self._core is None else len(self._core)

    def __len__(self) -> int:
        return self.length

    @property
    def batch_size(self) -> int | None:
        """The batch size fixed by the first append (None while empty and never appended)."""
        return None if self._core is None else self._core.shape[0]

    def reset(self) -> None:
        """Drop every cached position and the last stats; the next append may use a new batch size."""
        self._core = None
        self.stats = {}

    def _check(self, name: str, x: Tensor, width: int) -> None:
        _check_tensor(name, x)
        batch = self.batch_size
        if x.size(1) != self.num_heads or x.size(-1) != width or (batch is not None and x.size(0) != batch):
            want = f"({batch if batch is not None else 'B'}, {self.num_heads}, ·, {width})"
            raise ShapeError(f"{name} must have shape {want}, got {tuple(x.shape)}")

    def append(self, k: Tensor, v: Tensor) -> None:
        """Append k (B, H, S_new, E) and v (B, H, S_new, Ev) and hash the keys into the index."""
        self._check("k", k, self.head_dim)
        self._check("v", v, self.value_dim)
        if k.shape[:3] != v.shape[:3]:
            raise ShapeError(f"k and v must agree on (B, H, S_new), got {tuple(k.shape)} and {tuple(v.shape)}")
        if self._core is None:
            self._core = LshCacheCore(
                k.size(0), self.num_heads, self.head_dim, self.value_dim, self.settings, self.seed
            )
        self._core.append(k, v)

    def attend(
        self, q: Tensor, attn_mask: Tensor | None = None, *, scale: float | None = None, exact: bool = False
    ) -> Tensor:
        """Attention (B, H, Lq, Ev) of q (B, H, Lq, E) for the newest Lq positions over the cache.

        Row t of q sits at position S - Lq + t and sees keys up to it (causal among the new rows).
        ``attn_mask`` broadcastable to (B, H, Lq, S): bool (True = takes part) or float (added).
        ``exact=True`` scores every visible key (exact softmax). Sets :attr:`stats`.
        """
        self._check("q", q, self.head_dim)
        if self._core is None or q.size(2) > self.length:
            raise ShapeError(f"q has {q.size(2)} rows but the cache holds {self.length} positions")
        scale = 1.0 / math.sqrt(self.head_dim) if scale is None else float(scale)
        out, stats, _ = self._core.attend(q, attn_mask, scale, exact)
        stats["cache_length"] = torch.tensor(self.length)
        self.stats = stats
        return out
