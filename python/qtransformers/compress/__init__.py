"""Compression of layer weights with true stored sizes: int8/int4, pruning, low rank, polar.

Every representation has ``nbytes`` (the bytes actually stored: bit-packed codes, masks,
scales, factors) and ``decompress()``; :func:`compress_layer` applies one method to a layer
and reports bytes, ratio and the relative output error on a sample.
"""

from qtransformers.compress.lowrank import LowRankTensor, low_rank
from qtransformers.compress.packing import pack_bits, unpack_bits
from qtransformers.compress.polar import PolarTensor, polar_quantize
from qtransformers.compress.prune import PrunedTensor, magnitude_prune
from qtransformers.compress.quantize import QuantizedTensor, quantize_weight
from qtransformers.compress.report import CompressionReport, compress_layer

__all__ = [
    "CompressionReport",
    "LowRankTensor",
    "PolarTensor",
    "PrunedTensor",
    "QuantizedTensor",
    "compress_layer",
    "low_rank",
    "magnitude_prune",
    "pack_bits",
    "polar_quantize",
    "quantize_weight",
    "unpack_bits",
]
