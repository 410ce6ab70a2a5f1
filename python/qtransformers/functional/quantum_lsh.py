"""``quantum_attention(..., backend="lsh")``: the SimHash/LSH estimator behind the shot backends' interface.

The ``num_samples`` budget m becomes ``lsh_attention``'s ``budget`` (tail draws per row); its other
options (``LSH_OPTIONS``) pass through (with ``return_stats=True`` the result is (out, per-row stats)). The options of the shot estimators that have no meaning
here (control variates, adaptive allocation, top_k, key orders, dropout, dense weights) raise
instead of being ignored, and so does a call that would need a gradient (the estimator is Rust,
without autograd). The index is built inside each call (prefill); its cost is in
:func:`qtransformers.functional.quantum.side_information_cost` with ``backend="lsh"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from qtransformers.exceptions import InvalidArgumentError

LSH_OPTIONS = ("epsilon", "delta", "bits", "tables", "sinks", "window", "return_stats")


def check_lsh_options(backend: str, options: dict[str, Any]) -> None:
    """Raise unless ``options`` are LSH_OPTIONS given with backend 'lsh'."""
    if options and backend != "lsh":
        raise InvalidArgumentError(f"options {sorted(options)} apply to backend='lsh' only, not {backend!r}")
    unknown = sorted(set(options) - set(LSH_OPTIONS))
    if unknown:
        raise InvalidArgumentError(f"unknown lsh option(s) {unknown}; lsh takes {list(LSH_OPTIONS)}")


def lsh_quantum_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    *,
    num_samples: int,
    scale: float | None,
    generator: torch.Generator | None,
    refused: dict[str, bool],
    **options: Any,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """lsh_attention (B, H, L, Ev) [, stats] with budget = num_samples; ``refused``: shot options set to non-defaults."""
    from qtransformers.functional.lsh import lsh_attention

    bad = sorted(name for name, is_set in refused.items() if is_set)
    if bad:
        raise InvalidArgumentError(f"backend='lsh' does not take {bad}: they belong to the shot estimators")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise InvalidArgumentError(
            "backend='lsh' has no gradient (a Rust estimator without autograd): run it under torch.no_grad() "
            "or train with another backend"
        )
    return lsh_attention(q, k, v, attn_mask, is_causal, scale=scale, budget=num_samples, generator=generator, **options)
