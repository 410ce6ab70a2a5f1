"""Fast paths (Triton kernels) and the dispatch that chooses between them and the references.

Each kernel sits beside the plain PyTorch reference it must match (in :mod:`qtransformers.functional`);
:mod:`~qtransformers.kernels.dispatch` picks the Triton kernel on CUDA, the Rust core or torch on CPU,
so results never depend on which path ran beyond floating-point rounding. Triton itself is imported
only when a kernel runs.
"""

from qtransformers.kernels.dispatch import causal_fftconv, gated_oscillators, qrh, spectral_rotate

__all__ = ["causal_fftconv", "gated_oscillators", "qrh", "spectral_rotate"]
