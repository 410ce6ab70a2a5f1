"""Smoke test of an installed qtransformers (a wheel or an sdist build): the extension loads and each area runs.

Usage: python .ci/smoke.py [PREFIX]   (PREFIX: the package must be imported from under it, e.g. a venv)
"""

import sys

import numpy as np
import torch

import qtransformers
from qtransformers import QRHLayer, QuantumMultiheadAttention, _core
from qtransformers.kernels import causal_fftconv
from qtransformers.quantum import depolarizing

if len(sys.argv) > 1:
    assert qtransformers.__file__.startswith(sys.argv[1]), f"imported from {qtransformers.__file__}"
idx = _core.sample_rows(np.ones((2, 3)), 4, "systematic", 0)
assert idx.shape == (2, 4) and idx.min() >= 0, idx
x = torch.randn(1, 5, 8)
out, _ = QuantumMultiheadAttention(8, 2, batch_first=True)(x, x, x)
assert out.shape == (1, 5, 8)
u, k = torch.randn(1, 4, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)
assert torch.allclose(causal_fftconv(u, k, "rust"), causal_fftconv(u, k, "reference"))
assert QRHLayer(2, causal=True, max_len=16)(torch.randn(1, 16, 8)).shape == (1, 16, 8)
rho = np.eye(2, dtype=np.complex128) / 2
assert np.isclose(np.trace(depolarizing(0.5).apply(rho)), 1.0)
print(f"smoke OK: qtransformers {qtransformers.__version__} from {qtransformers.__file__}")
