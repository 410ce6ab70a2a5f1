"""Hugging Face transformers integration: ``attn_implementation="qtransformers"``.

``register(**quantum_options)`` adds an attention function to transformers' ``AttentionInterface``
and the matching mask function (transformers' SDPA mask: boolean, True = takes part, or None
with a causal flag) to ``AttentionMaskInterface``, both under the name "qtransformers". The
attention function runs :func:`qtransformers.functional.quantum_attention` with the options
given here (``backend="exact"`` reproduces "sdpa").
"""

from __future__ import annotations

from typing import Any

import torch

from qtransformers.exceptions import BackendUnavailableError, InvalidArgumentError
from qtransformers.functional.quantum import BACKENDS, quantum_attention

NAME = "qtransformers"


def _transformers():
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError("the Hugging Face integration needs `pip install transformers`") from exc
    return AttentionInterface, AttentionMaskInterface, sdpa_mask


def make_attention_function(*, seed: int | None = None, record: list | None = None, **quantum_options: Any):
    """An AttentionInterface function (module, q, k, v, mask, …) -> (out (B, L, H, Ev), None).

    Keys are laid out in position order unless ``key_order`` is given, so a causal model's
    row t never draws differently because of tokens after t. With ``record`` (a list; backend
    "lsh" only) each call appends the estimator's per-row stats (B, H, L), ``layer`` and ``keys`` (S).
    """
    backend = quantum_options.get("backend", "stratified")
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "lsh":
        quantum_options.setdefault("key_order", "position")
    if record is not None:
        if backend != "lsh":
            raise InvalidArgumentError(f"record collects the lsh estimator's stats; backend is {backend!r}")
        quantum_options["return_stats"] = True
    generator = None if seed is None else torch.Generator().manual_seed(seed)

    def attention(
        module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs
    ):
        groups = getattr(module, "num_key_value_groups", 1)
        if groups > 1:
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        causal = bool(query.size(2) > 1 and attention_mask is None and causal)
        gen = generator
        if gen is not None and gen.device != query.device:
            gen = torch.Generator(device=query.device).manual_seed(int(gen.initial_seed()))
        out = quantum_attention(
            query,
            key,
            value,
            attention_mask,
            causal,
            scale=scaling,
            generator=gen,
            dropout_p=dropout if module.training else 0.0,
            **quantum_options,
        )
        if record is not None:
            assert isinstance(out, tuple)  # return_stats=True: (output, per-row stats)
            out, stats = out
            assert isinstance(stats, dict)
            record.append({"layer": getattr(module, "layer_idx", None), "keys": key.size(2), **stats})
        assert isinstance(out, torch.Tensor)
        return out.transpose(1, 2).contiguous(), None

    return attention


def register(**quantum_options: Any) -> str:
    """Register attention and mask functions as ``attn_implementation="qtransformers"``; returns the name.

    Options are those of :func:`~qtransformers.functional.quantum_attention` (backend,
    num_samples, control_variate, adaptive, top_k, …; for "lsh" its options) plus ``seed`` and
    ``record`` (see :func:`make_attention_function`). Calling it again replaces the options.
    """
    attention_interface, mask_interface, sdpa_mask = _transformers()
    attention_interface.register(NAME, make_attention_function(**quantum_options))
    mask_interface.register(NAME, sdpa_mask)
    return NAME
