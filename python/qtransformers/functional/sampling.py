"""Row samplers: draw measurement-shot indices from rows of attention probabilities.

:func:`sample_rows` runs the Rust sampler (``qtransformers._core``) on CPU tensors;
:func:`sample_rows_ref` is the plain PyTorch reference with the same distribution
(same marginals and strata, not the same random stream). Both take (R, N) weights
and return (R, shots) int64 indices, -1 for rows whose weights sum to zero.
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
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64).item())


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
    rows = weights.size(0)
    w = weights.detach().double()
    cdf = w.cumsum(dim=-1)
    total = cdf[:, -1:]
    strata = torch.arange(shots, dtype=torch.float64, device=w.device)
    if method == "multinomial":
        u = torch.rand(rows, shots, dtype=torch.float64, device=w.device, generator=generator)
    elif method == "stratified":
        u = (strata + torch.rand(rows, shots, dtype=torch.float64, device=w.device, generator=generator)) / shots
    else:
        offset = torch.rand(rows, 1, dtype=torch.float64, device=w.device, generator=generator)
        u = (strata + offset) / shots
    idx = torch.searchsorted(cdf, u * total, right=True).clamp_(max=w.size(1) - 1)
    # A target landing exactly on a flat CDF step must not select a zero-weight index.
    idx = torch.where(w.gather(1, idx) > 0, idx, torch.searchsorted(cdf, u * total, right=False))
    return torch.where(total > 0, idx, torch.full_like(idx, -1))
