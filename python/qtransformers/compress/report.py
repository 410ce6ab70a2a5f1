"""Compress every weight of a layer by one method and report true bytes, ratio and output error."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qtransformers.compress.lowrank import LowRankTensor, low_rank
from qtransformers.compress.polar import polar_quantize
from qtransformers.compress.prune import PrunedTensor, magnitude_prune
from qtransformers.compress.quantize import QuantizedTensor, quantize_weight
from qtransformers.exceptions import InvalidArgumentError

METHODS = ("int8", "int4", "prune", "lowrank", "polar")


@dataclass
class CompressionReport:
    """Stored bytes before/after, their ratio, and ‖y_c − y‖_F / ‖y‖_F on the sample input."""

    method: str
    original_bytes: int
    stored_bytes: int
    ratio: float
    output_error: float
    compressed: nn.Module


def _raw_bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _compress_linears(model: nn.Module, method: str, options: dict) -> dict[str, int]:
    """Replace each nn.Linear weight by its decompressed form; bytes stored per parameter name."""
    stored = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        w = module.weight
        rep: QuantizedTensor | PrunedTensor | LowRankTensor
        if method in ("int8", "int4"):
            group = options.get("group", 4) if w.size(0) % options.get("group", 4) == 0 else 1
            rep = quantize_weight(w, 8 if method == "int8" else 4, group=group)
        elif method == "prune":
            rep = magnitude_prune(w, options.get("sparsity", 0.5))
        else:
            rank = options.get("rank") or max(1, int(min(w.shape) * options.get("rank_fraction", 0.25)))
            rep = low_rank(w, rank)
        with torch.no_grad():
            w.copy_(rep.decompress().to(w))
        stored[f"{name}.weight" if name else "weight"] = rep.nbytes
    return stored


def _compress_complex(model: nn.Module, options: dict) -> dict[str, int]:
    """Polar-quantise the complex weight of every submodule exposing ``complex_weight()``.

    Such a module also has ``load_complex_weight(z)`` and ``complex_parameters`` (the names of
    the real parameters that the complex weight is stored in, replaced by the packed codes).
    """
    stored = {}
    for name, module in model.named_modules():
        if not hasattr(module, "complex_weight"):
            continue
        rep = polar_quantize(module.complex_weight(), options.get("mag_bits", 4), options.get("phase_bits", 4))
        module.load_complex_weight(rep.decompress())
        names = [f"{name}.{p}" if name else p for p in module.complex_parameters]
        stored.update({n: 0 for n in names})
        stored[names[0]] = rep.nbytes
    return stored


def compress_layer(layer: nn.Module, method: str, sample: Tensor, **options) -> CompressionReport:
    """Compress a copy of ``layer`` with ``method`` and measure it on ``sample``.

    Methods: "int8"/"int4" (per-channel scales; ``group`` rows share one, 4 = a quaternion
    channel), "prune" (``sparsity``), "lowrank" (``rank`` or ``rank_fraction``) on every
    nn.Linear weight; "polar" (``mag_bits``, ``phase_bits``) on the complex weights of modules
    exposing ``complex_weights()``. Parameters left alone count at their full size.
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    compressed = copy.deepcopy(layer).eval()
    if method == "polar":
        stored = _compress_complex(compressed, options)
        if not stored:
            raise InvalidArgumentError(f"{type(layer).__name__} has no complex weights to polar-quantise")
    else:
        stored = _compress_linears(compressed, method, options)
    params = dict(layer.named_parameters())
    original = sum(_raw_bytes(p) for p in params.values())
    total = sum(stored.values()) + sum(_raw_bytes(p) for n, p in params.items() if n not in stored)
    with torch.no_grad():
        ref, out = layer.eval()(sample), compressed(sample)
    error = float((out - ref).norm() / ref.norm())
    return CompressionReport(method, original, total, original / total, error, compressed)
