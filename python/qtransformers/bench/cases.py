"""What the speed benches time: every registered mixer plus every attention backend.

A case is a module taking x (B, T, D) and returning (B, T, D). Mixers come from
:mod:`qtransformers.mixers`; each QuantumMultiheadAttention backend appears as
``qmha-<backend>``; ``nn.MultiheadAttention`` is the module people use today and
``attention`` (the SDPA mixer) is the reference every ratio is taken against.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from qtransformers import mixers
from qtransformers.attention import QuantumMultiheadAttention, available_backends

REFERENCE = "attention"


class _SelfAttend(nn.Module):
    """Adapts an nn.MultiheadAttention-like module to x -> x self-attention (causal by mask)."""

    def __init__(self, mha: nn.Module, causal: bool) -> None:
        super().__init__()
        self.mha, self.causal = mha, causal

    def forward(self, x: Tensor) -> Tensor:
        mask = None
        if self.causal:
            mask = nn.Transformer.generate_square_subsequent_mask(x.size(1), device=x.device, dtype=x.dtype)
        out, _ = self.mha(x, x, x, need_weights=False, attn_mask=mask, is_causal=self.causal)
        return out


FORWARD_ONLY = frozenset({"qmha-lsh"})
"""Cases with no gradient (the Rust LSH estimator has no autograd): timed forward only."""


def available_cases(*, causal: bool) -> dict[str, Callable[..., nn.Module]]:
    """Name -> factory ``f(dim, num_heads, device, dtype, length)`` of every case runnable with ``causal``.

    ``length`` is the sequence length the module will run at; the qrh mixer is built with
    ``max_len=length`` (its causal kernel is defined on that fixed length, as in a ByteLM of that context).
    """
    cases: dict[str, Callable[..., nn.Module]] = {}

    def torch_mha(dim, num_heads, device, dtype, length):
        return _SelfAttend(nn.MultiheadAttention(dim, num_heads, batch_first=True, device=device, dtype=dtype), causal)

    cases["nn.MultiheadAttention"] = torch_mha
    for backend in available_backends(causal=causal or None):

        def qmha(dim, num_heads, device, dtype, length, _backend=backend):
            module = QuantumMultiheadAttention(
                dim, num_heads, batch_first=True, device=device, dtype=dtype, quantum_backend=_backend, seed=0
            )
            return _SelfAttend(module, causal)

        cases[f"qmha-{backend}"] = qmha
    for name in mixers.available(causal=causal):

        def mixer(dim, num_heads, device, dtype, length, _name=name):
            options = {"num_heads": num_heads} if _name == REFERENCE else {}
            if _name == "qrh":
                options["max_len"] = length
            return mixers.build(_name, dim, causal=causal, **options).to(device=device, dtype=dtype)

        cases[name] = mixer
    return cases


def make_input(batch: int, length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Reproducible synthetic input (B, T, D) with unit-variance entries."""
    g = torch.Generator().manual_seed(length * 7919 + dim)
    return torch.randn(batch, length, dim, generator=g).to(device=device, dtype=dtype)


def select_cases(cases: dict[str, Callable[..., nn.Module]], only: str | None) -> dict[str, Callable[..., nn.Module]]:
    """The cases named in the comma-separated ``only`` (all when None), in that order."""
    if not only:
        return cases
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(cases))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; available: {sorted(cases)}")
    return {n: cases[n] for n in wanted}
