"""Triton kernels (GPU fast paths) and the dispatch that uses them on CUDA only.

Each kernel sits beside the plain PyTorch reference it must match; on CPU (or without
Triton) the dispatch falls back to the reference math, so results never depend on whether
a kernel ran beyond floating-point rounding.
"""
