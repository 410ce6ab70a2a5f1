"""Row samplers: draw measurement-shot indices from rows of attention probabilities.

:func:`sample_rows` runs the Rust sampler (``qtransformers._core``) on CPU tensors;
:func:`sample_rows_ref` is the plain PyTorch reference (inverse CDF with ``torch.searchsorted``).
Both take (R, N) weights and return (R, shots) int64 indices, -1 for rows whose weights sum to
zero.

Randomness: each call draws one 63-bit seed from the ``generator``; row r then reads its own
ChaCha8 stream ``streams[r]`` under that seed (:func:`row_uniforms`; default stream r). Callers
key a row's stream by what identifies it (attention: its head and absolute position), so a row
draws the same shots whatever other rows are drawn with it. Both samplers read the same
uniforms (uniform 0: the systematic offset; uniform 1 + j: shot j), so for the same generator
state they return the same indices.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError

METHODS = ("multinomial", "stratified", "systematic")


def _check(weights: Tensor, shots: int, method: str) -> None:
    if not isinstance(weights, Tensor):
        raise DTypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() != 2 or weights.size(1) == 0:
        raise ShapeError(f"weights must be (rows, n) with n > 0, got shape {tuple(weights.shape)}")
    if weights.dtype not in (torch.float32, torch.float64):
        raise DTypeError(f"weights must be float32 or float64, got {weights.dtype}")
    if shots < 0:
        raise InvalidArgumentError(f"shots must be >= 0, got {shots}")
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")


def seed_from(generator: torch.Generator | None) -> int:
    """A 63-bit seed drawn from ``generator`` (or torch's global RNG when None)."""
    where = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64, device=where).item())


def row_uniforms(seed: int, streams: Tensor, count: int, device: torch.device | str = "cpu") -> Tensor:
    """(R, count) float64 uniforms in [0, 1): row r's first ``count`` of ChaCha8 stream ``streams[r]``."""
    out = _core.keyed_uniforms(int(seed), _host_keys(streams), int(count))
    return torch.from_numpy(np.asarray(out)).to(device)


def _host_keys(streams: Tensor) -> np.ndarray:
    """Stream keys (R,) as the contiguous host uint64 array the Rust core reads."""
    return streams.detach().to("cpu", torch.int64).contiguous().numpy().astype(np.uint64)


def _streams(streams: Tensor | None, rows: int) -> Tensor:
    """The per-row stream keys (R,): ``streams`` checked, or the row indices when None."""
    if streams is None:
        return torch.arange(rows, dtype=torch.int64)
    if streams.shape != (rows,):
        raise ShapeError(f"streams must have one key per row, shape ({rows},), got {tuple(streams.shape)}")
    return streams


def sample_rows(
    weights: Tensor, shots: int, method: str = "stratified", *, generator: torch.Generator | None = None
) -> Tensor:
    """Draw ``shots`` indices per row of non-negative (R, N) ``weights`` with the Rust sampler.

    Runs on CPU (the GIL is released, rows in parallel); CUDA tensors are copied to the host
    and the result is moved back. Same generator state, same indices.
    """
    _check(weights, shots, method)
    host = weights.detach().to("cpu").contiguous()
    out = _core.sample_rows(host.numpy(), int(shots), method, seed_from(generator))
    return torch.from_numpy(np.asarray(out)).to(weights.device)


def sample_rows_ref(
    weights: Tensor, shots: int, method: str = "stratified", *, generator: torch.Generator | None = None
) -> Tensor:
    """PyTorch reference of :func:`sample_rows` (inverse CDF with torch.searchsorted)."""
    _check(weights, shots, method)
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise InvalidArgumentError("weights must be finite and non-negative")
    counts = torch.full((weights.size(0),), shots, dtype=torch.int64, device=weights.device)
    return draw_rows_ref(weights, counts, method, generator=generator)[:, :shots]


def _inverse_cdf(cdf: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Index of the first CDF entry above each target, never a zero-weight index."""
    last = weights.size(1) - 1
    idx = torch.searchsorted(cdf, targets, right=True).clamp_(max=last)
    return torch.where(weights.gather(1, idx) > 0, idx, torch.searchsorted(cdf, targets, right=False).clamp_(max=last))


def draw_rows_ref(
    weights: Tensor,
    shots: Tensor,
    method: str = "systematic",
    *,
    generator: torch.Generator | None = None,
    order: Tensor | None = None,
    rows_per_order: int = 1,
    streams: Tensor | None = None,
) -> Tensor:
    """PyTorch sampler of :func:`draw_rows`: ``shots[r]`` draws for row r along an optional key order.

    weights (R, N) non-negative, shots (R,) int64, order (G, N) permutations shared by
    ``rows_per_order`` consecutive rows, streams (R,) int64 stream keys (default: row index).
    Returns (R, max(shots)) int64 original key indices, -1 in unused slots and for rows of total
    weight 0. Runs on the weights' device (the uniforms are made on the host).
    """
    _check(weights, 0, method)
    rows, n = weights.shape
    keys = _streams(streams, rows)
    max_shots = int(shots.max()) if shots.numel() else 0
    uniforms = row_uniforms(seed_from(generator), keys, max_shots + 1, weights.device)
    w = weights.detach().double()
    if order is not None:
        perm = order.to(w.device).repeat_interleave(rows_per_order, dim=0)
        w = w.gather(1, perm)
    cdf = w.cumsum(dim=-1)
    total = cdf[:, -1:]
    m = shots.to(device=w.device, dtype=torch.float64).clamp_min(1).unsqueeze(-1)
    strata = torch.arange(max_shots, dtype=torch.float64, device=w.device)
    if method == "multinomial":
        u = uniforms[:, 1:]
    elif method == "stratified":
        u = (strata + uniforms[:, 1:]) / m
    else:
        u = (strata + uniforms[:, :1]) / m
    idx = _inverse_cdf(cdf, u * total, w)
    if order is not None:
        idx = perm.gather(1, idx)
    used = (strata < shots.to(w.device).unsqueeze(-1)) & (total > 0)
    return torch.where(used, idx, torch.full_like(idx, -1))


def draw_rows(
    weights: Tensor,
    shots: Tensor,
    method: str = "systematic",
    *,
    generator: torch.Generator | None = None,
    order: Tensor | None = None,
    rows_per_order: int = 1,
    sampler: str = "torch",
    streams: Tensor | None = None,
) -> Tensor:
    """``shots[r]`` draws per row of (R, N) ``weights``: torch (:func:`draw_rows_ref`) or the Rust sampler.

    The Rust sampler (``sampler="rust"``) runs on the host with the GIL released, rows in
    parallel, reading the weights without a copy when they are contiguous CPU float32/float64.
    ``streams`` (R,) keys each row's random stream (default: its index); both samplers return
    the same indices for the same generator state.
    """
    if sampler == "torch":
        return draw_rows_ref(
            weights, shots, method, generator=generator, order=order, rows_per_order=rows_per_order, streams=streams
        )
    _check(weights, 0, method)
    keys = _host_keys(_streams(streams, weights.size(0)))
    host = weights.detach().to("cpu").contiguous()
    counts = shots.detach().to("cpu", torch.int64).contiguous()
    max_shots = int(counts.max()) if counts.numel() else 0
    perm = None if order is None else order.detach().to("cpu", torch.int64).contiguous().numpy()
    out = _core.sample_rows_ordered(
        host.numpy(), counts.numpy(), max_shots, perm, rows_per_order, method, seed_from(generator), keys
    )
    return torch.from_numpy(np.asarray(out)).to(weights.device)


def allocate_shots_ref(scores: Tensor, total: int, *, min_shots: int = 1) -> Tensor:
    """PyTorch reference of :func:`allocate_shots` for scores (G, L): (G, L) int64 shots per row.

    Rows with a negative score get 0; others at least ``min_shots``; each group's remaining
    ``total - min_shots * live`` shots go in proportion to the scores by largest remainders.
    """
    s = scores.detach().double()
    live = s >= 0
    rest = (total - min_shots * live.sum(-1, keepdim=True)).clamp_min(0).double()
    pos = s.clamp_min(0) * live
    sums = pos.sum(-1, keepdim=True)
    even = live / live.sum(-1, keepdim=True).clamp_min(1)
    exact = rest * torch.where(sums > 0, pos / sums.clamp_min(1e-300), even)
    base = exact.floor()
    left = (rest - base.sum(-1, keepdim=True)).round().long()
    frac = torch.where(live, exact - base, -1.0)
    # Stable descending order of remainders; ties by row index, as in the Rust sampler.
    ranks = torch.argsort(torch.argsort(-frac, dim=-1, stable=True), dim=-1)
    bonus = (ranks < left) & live
    return ((min_shots + base) * live + bonus).long()


def allocate_shots(scores: Tensor, total: int, *, min_shots: int = 1, sampler: str = "torch") -> Tensor:
    """Shots per row (G, L) int64 under a fixed ``total`` per group, in proportion to ``scores`` (G, L)."""
    if scores.dim() != 2:
        raise ShapeError(f"scores must be (groups, rows), got shape {tuple(scores.shape)}")
    if total < 0 or min_shots < 0:
        raise InvalidArgumentError(f"total and min_shots must be >= 0, got {total}, {min_shots}")
    if sampler == "torch":
        return allocate_shots_ref(scores, total, min_shots=min_shots)
    host = scores.detach().to("cpu", torch.float64).contiguous()
    out = _core.allocate_shots(host.reshape(-1).numpy(), scores.size(1), int(total), int(min_shots))
    return torch.from_numpy(np.asarray(out)).view(scores.shape).to(scores.device)
