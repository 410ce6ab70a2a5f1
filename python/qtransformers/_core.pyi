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
