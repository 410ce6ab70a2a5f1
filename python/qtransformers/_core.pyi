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

def sample_rows_ordered(
    weights: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    shots: npt.NDArray[np.int64],
    max_shots: int,
    order: npt.NDArray[np.int64] | None,
    rows_per_order: int,
    method: str,
    seed: int,
) -> npt.NDArray[np.int64]:
    """Draw ``shots[r]`` indices for row r of ``weights`` (R, N) along an optional key order (G, N).

    Row r uses order row ``r // rows_per_order``. Returns (R, max_shots) int64 in the original
    key numbering, -1 in unused slots and for rows summing to 0.
    """

def allocate_shots(scores: npt.NDArray[np.float64], per_group: int, total: int, min_shots: int) -> npt.NDArray[np.int64]:
    """Split ``total`` shots over each group of ``per_group`` rows in proportion to ``scores``.

    Negative score = no shots (masked row); other rows get at least ``min_shots``; largest remainders.
    """
