"""qtransformers: quantum-inspired and spectral sequence mixers for PyTorch.

Public names are re-exported here; see docs/getting-started.md for the tour.
"""

from qtransformers import quantum  # noqa: F401  (public subpackage, reachable as qtransformers.quantum)
from qtransformers._core import __version__
from qtransformers.attention import QuantumMultiheadAttention, convert_attention
from qtransformers.exceptions import (
    BackendUnavailableError,
    DTypeError,
    InvalidArgumentError,
    QTransformersError,
    ShapeError,
)
from qtransformers.mixers.qrh import QRHLayer
from qtransformers.mixers.qrh_block import QRHTransformerBlock
from qtransformers.threads import core_threads, init_core_threads

init_core_threads()  # before any parallel call of the Rust core, so its pool follows torch's thread count

__all__ = [
    "__version__",
    "BackendUnavailableError",
    "DTypeError",
    "InvalidArgumentError",
    "QTransformersError",
    "QuantumMultiheadAttention",
    "QRHLayer",
    "QRHTransformerBlock",
    "ShapeError",
    "convert_attention",
    "core_threads",
]
