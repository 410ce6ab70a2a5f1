"""Type stubs of the Rust extension ``qtransformers._core`` (built from rust/python)."""

import numpy as np
import numpy.typing as npt

__version__: str

def sample_rows(
    weights: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    shots: int,
    method: str,
    seed: int,
) -> npt.NDArray[np.int64]:
    """Draw ``shots`` indices per row of non-negative ``weights`` (R, N); returns (R, shots) int64.

    ``method`` is "multinomial", "stratified" or "systematic". Rows summing to 0 give -1.
    Raises ShapeError / InvalidArgumentError (ValueError) on bad input, TypeError on bad dtype.
    """

def causal_fftconv(
    u: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    k: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> npt.NDArray[np.float32] | npt.NDArray[np.float64]:
    """Causal convolution y[b, c, t] = sum_{j <= t} k[c // g, j] u[b, c, t - j] of u (B, C, T) with k (K, T).

    g = C / K consecutive channels share a kernel. Both float32 or both float64, C-contiguous;
    returns (B, C, T). Raises ShapeError on mismatched shapes, TypeError on dtype/layout.
    """

def causal_fftconv_backward(
    grad: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    u: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    k: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float32] | npt.NDArray[np.float64], npt.NDArray[np.float32] | npt.NDArray[np.float64]]:
    """Gradients (grad_u (B, C, T), grad_k (K, T)) of :func:`causal_fftconv` given grad = dL/dy (B, C, T)."""
