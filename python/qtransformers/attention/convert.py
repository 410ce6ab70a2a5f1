"""Swap every nn.MultiheadAttention inside a model for a QuantumMultiheadAttention."""

from __future__ import annotations

from typing import Any

from torch import nn

from qtransformers.attention.multihead import QuantumMultiheadAttention


def convert_attention(model: nn.Module, **quantum_options: Any) -> nn.Module:
    """Replace, in place, each ``nn.MultiheadAttention`` submodule of ``model`` (keeping its state).

    Returns ``model`` (or the converted module when ``model`` itself is an nn.MultiheadAttention).
    An ``nn.TransformerEncoder`` inside stops packing padded batches into nested tensors for
    its fused kernel when the backend is not exact, so the converted attention really runs.
    """
    if isinstance(model, nn.MultiheadAttention):
        return QuantumMultiheadAttention.from_torch(model, **quantum_options)
    if isinstance(model, nn.TransformerEncoder) and quantum_options.get("quantum_backend", "exact") != "exact":
        model.use_nested_tensor = False
    for name, child in list(model.named_children()):
        setattr(model, name, convert_attention(child, **quantum_options))
    return model
