"""LSH-sampled softmax attention: SimHash candidates scored exactly, the rest from uniform tail draws.

For each query row, with visible keys V (the causal limit and the mask decide), the estimator
splits V into candidates C (keys sharing the query's SimHash code in at least one of ``tables``
tables of ``bits`` random hyperplanes each, plus the first ``sinks`` and the last ``window``
positions before the row's limit, one past its last visible key) and the remainder R = V \\ C. Candidate scores are computed
exactly; R is seen through n keys drawn uniformly *with replacement*, each weighted |R|/n
(n = ``budget``, or sized from an (epsilon, delta) bound; when n >= |R| all of R is taken once
and the row is exact). The output is the self-normalised ratio

    (Σ_C a_j v_j + |R|/n Σ_tail a_j v_j) / (Σ_C a_j + |R|/n Σ_tail a_j),   a_j = exp(s_j - c),

with c the largest score computed: numerator and denominator are unbiased, the ratio is
consistent with an O(1/n) bias. No score outside C and the tail is formed. The Rust core
(``qtransformers._core``) runs it over (batch, head, row) in parallel with the GIL released;
:func:`lsh_attention_ref` recomputes the same estimate in PyTorch from the same hyperplanes and
tail draws.

Shapes (SDPA's layout): q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev), ``attn_mask``
broadcastable to (B, H, L, S), bool (True = takes part) or float (added to the scores);
output (B, H, L, Ev). ``is_causal`` is SDPA's (top-left aligned: row t sees keys <= t).
float32 on CPU only. Randomness: one 63-bit seed per call from ``generator`` draws the
hyperplanes (per head) and every row's tail stream, keyed by (b·H + h, t), so a row's draws
depend only on the keys it can see (prefix consistency). Gradients are not implemented: inputs
that require grad while grad is enabled raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError
from qtransformers.functional.masks import causal_additive_mask, check_mask_dtype, sdpa_mask_to_additive
from qtransformers.functional.sampling import seed_from


@dataclass(frozen=True)
class LshSettings:
    """Estimator settings: tail ``budget`` (or pilot size with ``epsilon``), bound, SimHash and fixed keys."""

    budget: int = 64
    epsilon: float | None = None
    delta: float = 0.05
    bits: int = 8
    tables: int = 16
    sinks: int = 4
    window: int = 16

    def check(self) -> None:
        """Raise InvalidArgumentError for any value outside its range."""
        for name in ("budget", "sinks", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be a non-negative int, got {value!r}")
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 16:
            raise InvalidArgumentError(f"bits must be an int in 1..16, got {self.bits!r}")
        if not isinstance(self.tables, int) or self.tables < 1:
            raise InvalidArgumentError(f"tables must be an int >= 1, got {self.tables!r}")
        if not 0.0 < self.delta < 1.0:
            raise InvalidArgumentError(f"delta must lie in (0, 1), got {self.delta}")
        if self.epsilon is not None and not (0.0 < self.epsilon < math.inf):
            raise InvalidArgumentError(f"epsilon must be positive and finite, got {self.epsilon}")

    def core_args(self) -> tuple[int, int, int, int, int, float | None, float]:
        """(bits, tables, sinks, window, budget, epsilon, delta) as the Rust core takes them."""
        eps = None if self.epsilon is None else float(self.epsilon)
        return (self.bits, self.tables, self.sinks, self.window, self.budget, eps, float(self.delta))


@dataclass(frozen=True)
class LshDesign:
    """What a call drew: ``candidates`` (B, H, L, S) bool, ``tail`` (B, H, L, n_max) int64 (-1 = unused),
    ``planes`` (H, tables, bits, E) float32 hyperplanes, and the call's ``seed``."""

    candidates: Tensor
    tail: Tensor
    planes: Tensor
    seed: int


def _check_tensor(name: str, x: Tensor, dims: int = 4) -> None:
    if not isinstance(x, Tensor):
        raise DTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != dims:
        raise ShapeError(f"{name} must have {dims} dimensions (B, H, ·, ·), got shape {tuple(x.shape)}")
    if x.dtype != torch.float32:
        raise DTypeError(f"{name} must be float32, got {x.dtype}")
    if x.device.type != "cpu":
        raise DTypeError(f"{name} must be on the CPU (the sampled attention runs in the Rust core), got {x.device}")
    if x.requires_grad and torch.is_grad_enabled():
        raise InvalidArgumentError(
            f"{name} requires grad: lsh_attention has no gradient; call it under torch.no_grad() or detach the inputs"
        )


def check_lsh_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise ShapeError/DTypeError unless q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev) are float32 CPU and fit."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, x)
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.size(-1) != k.size(-1):
        raise ShapeError(
            f"q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev) do not fit: got q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}"
        )
    if q.size(-1) == 0 or v.size(-1) == 0:
        raise ShapeError(f"head dims must be >= 1, got E = {q.size(-1)}, Ev = {v.size(-1)}")


def mask_to_bias(attn_mask: Tensor | None, shape: tuple[int, int, int, int]) -> tuple[np.ndarray | None, list[int]]:
    """SDPA mask -> (flat float32 additive bias, its 4-D dims with 1 on broadcast axes) for the Rust core."""
    if attn_mask is None:
        return None, [1, 1, 1, 1]
    check_mask_dtype(attn_mask, "attn_mask")
    b, h, length, s = shape
    if attn_mask.dim() > 4:
        raise ShapeError(f"attn_mask must have at most 4 dimensions, got shape {tuple(attn_mask.shape)}")
    mask = attn_mask.reshape((1,) * (4 - attn_mask.dim()) + tuple(attn_mask.shape))
    for got, want, axis in zip(mask.shape, shape, "BHLS"):
        if got not in (1, want):
            raise ShapeError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to (B, H, L, S) = {shape} "
                f"(axis {axis}: {got} vs {want})"
            )
    bias = sdpa_mask_to_additive(mask.to("cpu"), torch.float32).to(torch.float32)
    if torch.isnan(bias).any() or torch.isposinf(bias).any():
        raise InvalidArgumentError("attn_mask values must be finite or -inf (no NaN or +inf)")
    bias = bias.expand(*bias.shape[:3], s).contiguous()
    return bias.reshape(-1).numpy(), list(bias.shape)


def stats_from_core(parts: tuple, shape: tuple[int, int, int], keys: int) -> dict[str, Tensor]:
    """Per-row stats (B, H, L): keys_scored, candidates, hashes, rel_error (estimated), scored_fraction."""
    _, scored, candidates, hashes, rel_err, _ = parts
    scored_t = torch.from_numpy(np.asarray(scored)).reshape(shape)
    return {
        "keys_scored": scored_t,
        "candidates": torch.from_numpy(np.asarray(candidates)).reshape(shape),
        "hashes": torch.from_numpy(np.asarray(hashes)).reshape(shape),
        "rel_error": torch.from_numpy(np.asarray(rel_err)).reshape(shape),
        "scored_fraction": scored_t.double() / max(keys, 1),
    }


def design_from_core(parts: tuple, shape: tuple[int, int, int], keys: int, planes: Tensor, seed: int) -> LshDesign:
    """The candidate mask and tail draws a core call returned, as an :class:`LshDesign`."""
    mask, tail, width = parts[5]
    candidates = torch.from_numpy(np.asarray(mask)).reshape(*shape, keys).bool()
    return LshDesign(candidates, torch.from_numpy(np.asarray(tail)).reshape(*shape, width), planes, seed)


def simhash_planes(dim: int, bits: int, tables: int, seed: int, heads: int) -> Tensor:
    """(heads, tables, bits, dim) float32 SimHash hyperplanes the Rust core draws from ``seed``."""
    flat = _core.simhash_planes(int(dim), int(bits), int(tables), int(seed), int(heads))
    return torch.from_numpy(np.asarray(flat)).reshape(heads, tables, bits, dim)


def _flat(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().reshape(-1).numpy()


def lsh_attention_design(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    settings: LshSettings | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor], LshDesign]:
    """:func:`lsh_attention` that also returns the design it drew (candidates, tail draws, hyperplanes)."""
    return _run(q, k, v, attn_mask, is_causal, scale, settings or LshSettings(), generator, keep_design=True)


def _run(q, k, v, attn_mask, is_causal, scale, settings: LshSettings, generator, keep_design: bool):
    check_lsh_inputs(q, k, v)
    settings.check()
    b, h, length, e = q.shape
    s, ev = k.size(2), v.size(-1)
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)
    bias, bias_dims = mask_to_bias(attn_mask, (b, h, length, s))
    seed = seed_from(generator)
    parts = _core.lsh_attention(
        _flat(q),
        _flat(k),
        _flat(v),
        (b, h, length, s, e, ev),
        bias,
        bias_dims,
        bool(is_causal),
        scale,
        *settings.core_args(),
        seed,
        keep_design,
    )
    out = torch.from_numpy(np.asarray(parts[0])).reshape(b, h, length, ev)
    stats = stats_from_core(parts, (b, h, length), s)
    if not keep_design:
        return out, stats, None
    planes = simhash_planes(e, settings.bits, settings.tables, seed, h)
    return out, stats, design_from_core(parts, (b, h, length), s, planes, seed)


def lsh_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    budget: int = 64,
    epsilon: float | None = None,
    delta: float = 0.05,
    bits: int = 8,
    tables: int = 16,
    sinks: int = 4,
    window: int = 16,
    generator: torch.Generator | None = None,
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """LSH-sampled attention (B, H, L, Ev) of q (B,H,L,E), k (B,H,S,E), v (B,H,S,Ev); float32 CPU.

    Builds the SimHash index of k per call (its hashes are counted in the stats, amortised over
    rows). ``budget`` tail draws per row, or with ``epsilon`` a pilot of ``max(budget, 2)`` grown
    until the CLT bound on the row's relative error is below ``epsilon`` with probability
    1 - ``delta``. With ``return_stats`` also returns per-row (B, H, L) tensors ``keys_scored``,
    ``candidates``, ``hashes``, ``rel_error`` (the bound's estimate; 0 when the row is exact,
    NaN with fewer than two draws) and ``scored_fraction`` (keys scored / S).
    """
    settings = LshSettings(budget, epsilon, delta, bits, tables, sinks, window)
    out, stats, _ = _run(q, k, v, attn_mask, is_causal, scale, settings, generator, keep_design=False)
    return (out, stats) if return_stats else out


def simhash_codes(x: Tensor, planes: Tensor) -> Tensor:
    """(B, H, N, tables) int64 SimHash codes of x (B, H, N, E) under ``planes`` (H, tables, bits, E)."""
    proj = torch.einsum("bhne,htke->bhntk", x.double(), planes.double())
    weights = 2 ** torch.arange(planes.size(2), dtype=torch.int64)
    return ((proj > 0).long() * weights).sum(-1)


def lsh_attention_ref(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    planes: Tensor,
    tail: Tensor,
    sinks: int = 4,
    window: int = 16,
) -> tuple[Tensor, Tensor]:
    """PyTorch reference of the estimator given hyperplanes and tail draws: (output (B,H,L,Ev), candidates (B,H,L,S)).

    ``planes`` (H, tables, bits, E) and ``tail`` (B, H, L, n) int64 (-1 = unused) come from
    :func:`lsh_attention_design`. The candidate set is recomputed from the hashes (dense, O(L·S)),
    the remainder size |R| from the visible keys, and the estimate from the given tail draws,
    each weighted |R|/n.
    """
    b, h, length, e = q.shape
    s = k.size(2)
    scale = 1.0 / math.sqrt(e) if scale is None else scale
    scores = torch.matmul(q.double() * scale, k.double().transpose(-2, -1))
    if is_causal:
        scores = scores + causal_additive_mask(length, s, torch.float64)
    additive = sdpa_mask_to_additive(attn_mask, torch.float64)
    if additive is not None:
        scores = scores + additive.double()
    visible = scores > float("-inf")
    collide = (simhash_codes(q, planes).unsqueeze(-2) == simhash_codes(k, planes).unsqueeze(-3)).any(-1)
    pos = torch.arange(s)
    # a row's limit is one past its last visible key: what follows it does not exist for the row's design
    limit = torch.where(visible, pos + 1, 0).amax(-1, keepdim=True)
    fixed = (pos < sinks) | (pos >= limit - window)
    candidates = visible & (collide | fixed)
    remainder = (visible & ~candidates).sum(-1, keepdim=True).double()  # (B,H,L,1)
    tail = torch.cat([tail, tail.new_full((*tail.shape[:-1], 1), -1)], -1)  # one unused slot: never empty
    drawn = tail >= 0
    n = drawn.sum(-1, keepdim=True).double()
    weight = torch.where(n > 0, remainder / n.clamp(min=1), 0.0)
    idx = tail.clamp(min=0)
    tail_scores = scores.gather(-1, idx).masked_fill(~drawn, float("-inf"))
    cand_scores = scores.masked_fill(~candidates, float("-inf"))
    c = torch.maximum(cand_scores.amax(-1, keepdim=True), tail_scores.amax(-1, keepdim=True))
    dead = torch.isneginf(c)
    c = c.masked_fill(dead, 0.0)
    a_cand = (cand_scores - c).exp()
    a_tail = (tail_scores - c).exp() * weight
    vd = v.double()
    tail_values = vd.unsqueeze(2).expand(b, h, length, s, vd.size(-1))
    tail_values = tail_values.gather(-2, idx.unsqueeze(-1).expand(*idx.shape, vd.size(-1)))
    num = a_cand @ vd + (a_tail.unsqueeze(-1) * tail_values).sum(-2)
    den = a_cand.sum(-1, keepdim=True) + a_tail.sum(-1, keepdim=True)
    out = torch.where(dead, 0.0, num / den.masked_fill(dead, 1.0))
    return out.to(q.dtype), candidates


class LshCacheCore:
    """The Rust KV cache behind :class:`qtransformers.attention.SampledKVCache`: B x H heads, index grown on append."""

    def __init__(self, batch: int, heads: int, dim: int, value_dim: int, settings: LshSettings, seed: int) -> None:
        settings.check()
        self.shape = (batch, heads, dim, value_dim)
        self.settings = settings
        self.seed = int(seed)
        self._core = _core.SampledKvCache(batch, heads, dim, value_dim, *settings.core_args(), self.seed)

    def __len__(self) -> int:
        return len(self._core)

    def reset(self) -> None:
        """Drop every cached position (hyperplanes kept)."""
        self._core.reset()

    def planes(self) -> Tensor:
        """(H, tables, bits, E) float32 hyperplanes of the index."""
        _, heads, dim, _ = self.shape
        flat = torch.from_numpy(np.asarray(self._core.planes()))
        return flat.reshape(heads, self.settings.tables, self.settings.bits, dim)

    def append(self, k: Tensor, v: Tensor) -> None:
        """Append k (B, H, S_new, E) and v (B, H, S_new, Ev), float32 CPU."""
        self._core.append(_flat(k), _flat(v), int(k.size(2)))

    def attend(
        self, q: Tensor, attn_mask: Tensor | None, scale: float, exact: bool, keep_design: bool = False
    ) -> tuple[Tensor, dict[str, Tensor], LshDesign | None]:
        """Attend q (B, H, Lq, E) for the newest Lq positions: (out (B,H,Lq,Ev), per-row stats, design or None)."""
        b, h, lq, _ = q.shape
        s, ev = len(self), self.shape[3]
        bias, bias_dims = mask_to_bias(attn_mask, (b, h, lq, s))
        parts = self._core.attend(_flat(q), lq, bias, bias_dims, float(scale), bool(exact), keep_design)
        out = torch.from_numpy(np.asarray(parts[0])).reshape(b, h, lq, ev)
        stats = stats_from_core(parts, (b, h, lq), s)
        design = design_from_core(parts, (b, h, lq), s, self.planes(), self.seed) if keep_design else None
        return out, stats, design
