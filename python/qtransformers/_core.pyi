"""Type stubs of the Rust extension ``qtransformers._core`` (built from rust/python)."""

import numpy as np
import numpy.typing as npt
from typing_extensions import final

__version__: str

__all__ = [
    "SampledKvCache",
    "__version__",
    "allocate_shots",
    "amplitude_damping_kraus",
    "apply_channel",
    "causal_fftconv",
    "causal_fftconv_backward",
    "gated_oscillators",
    "gated_oscillators_backward",
    "init_threads",
    "depolarizing_kraus",
    "keyed_uniforms",
    "lsh_attention",
    "mps_compress",
    "mps_inner",
    "mps_to_dense",
    "num_threads",
    "phase_damping_kraus",
    "sample_rows",
    "sample_rows_ordered",
    "simhash_planes",
    "thermal_relaxation_kraus",
    "tt_svd",
]

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

# --- quantum simulation (rust/python/src/quantum.rs) ---

def depolarizing_kraus(p: float, num_qubits: int) -> npt.NDArray[np.complex128]:
    """Kraus operators (k, 2^n, 2^n) of rho -> (1 - p) rho + p Tr(rho) I/d; InvalidArgumentError outside [0, 4^n/(4^n-1)]."""

def amplitude_damping_kraus(gamma: float, excited_state_population: float) -> npt.NDArray[np.complex128]:
    """Kraus operators (k, 2, 2) of generalized amplitude damping; both parameters in [0, 1]."""

def phase_damping_kraus(gamma: float) -> npt.NDArray[np.complex128]:
    """Kraus operators (k, 2, 2) of phase damping; gamma in [0, 1]."""

def thermal_relaxation_kraus(
    t1: float, t2: float, time: float, excited_state_population: float
) -> npt.NDArray[np.complex128]:
    """Kraus operators (k, 2, 2) of thermal relaxation; t1 > 0, 0 < t2 <= 2 t1, time >= 0."""

def apply_channel(
    rho: npt.NDArray[np.complex128], kraus: npt.NDArray[np.complex128], targets: list[list[int]]
) -> npt.NDArray[np.complex128]:
    """Apply the channel ``kraus`` (k, d, d) to C-contiguous (B, 2^n, 2^n) ``rho`` on each qubit tuple of ``targets`` in turn."""

def tt_svd(
    array: npt.NDArray[np.float64] | npt.NDArray[np.complex128],
    dims: list[int],
    max_bond: int | None = None,
    cutoff: float = 0.0,
) -> tuple[list[np.ndarray], float]:
    """TT-SVD of a contiguous 1-D array with site dimensions ``dims``: (cores (r, d, r'), truncation_error)."""

def mps_compress(
    cores: list[np.ndarray], truncation_error: float, max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[list[np.ndarray], float]:
    """Recompress MPS cores; the returned error bound adds this step's discarded weight."""

def mps_to_dense(cores: list[np.ndarray]) -> np.ndarray:
    """Contract MPS cores into the flat dense array (float64 or complex128)."""

def mps_inner(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """(real, imag) of <a|b> = sum conj(a) * b for two MPS of one dtype and equal site dimensions."""

def sample_rows_ordered(
    weights: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    shots: npt.NDArray[np.int64],
    max_shots: int,
    order: npt.NDArray[np.int64] | None,
    rows_per_order: int,
    method: str,
    seed: int,
    streams: npt.NDArray[np.uint64] | None = None,
) -> npt.NDArray[np.int64]:
    """Draw ``shots[r]`` indices for row r of ``weights`` (R, N) along an optional key order (G, N).

    Row r uses order row ``r // rows_per_order`` and random stream ``streams[r]`` (default r).
    Returns (R, max_shots) int64 in the original key numbering, -1 in unused slots and for rows
    summing to 0.
    """

def keyed_uniforms(seed: int, streams: npt.NDArray[np.uint64], count: int) -> npt.NDArray[np.float64]:
    """The first ``count`` uniforms in [0, 1) of each row's stream, (R, count) float64.

    Uniform 0 is the systematic offset and uniform 1 + j shot j's, exactly as ``sample_rows_ordered``
    consumes them for the same seed and stream key.
    """

def allocate_shots(
    scores: npt.NDArray[np.float64], per_group: int, total: int, min_shots: int
) -> npt.NDArray[np.int64]:
    """Split ``total`` shots over each group of ``per_group`` rows in proportion to ``scores``.

    Negative score = no shots (masked row); other rows get at least ``min_shots``; largest remainders.
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

# --- gated banks of damped oscillators (rust/python/src/oscillators.rs) ---

def gated_oscillators(
    v: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    gates: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    poles: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    weights: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> npt.NDArray[np.float32] | npt.NDArray[np.float64]:
    """y[b, t, d] = sum_s gates[b, t, s] Re(w[s, d] h[b, s, d, t]) with h_t = λ h_{t-1} + v_t.

    v (B, T, D), gates (B, T, S), poles λ and weights w as (2, S, D) (real, imaginary parts); all float32
    or all float64, C-contiguous; returns (B, T, D). Raises ShapeError on mismatched shapes, TypeError on
    dtype/layout.
    """

def gated_oscillators_backward(
    grad: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    v: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    gates: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    poles: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    weights: npt.NDArray[np.float32] | npt.NDArray[np.float64],
) -> tuple[
    npt.NDArray[np.float32] | npt.NDArray[np.float64],
    npt.NDArray[np.float32] | npt.NDArray[np.float64],
    npt.NDArray[np.float32] | npt.NDArray[np.float64],
    npt.NDArray[np.float32] | npt.NDArray[np.float64],
]:
    """Gradients (grad_v, grad_gates, grad_poles, grad_weights) of :func:`gated_oscillators` given grad = dL/dy."""

def init_threads(threads: int) -> bool:
    """Create the core's thread pool with ``threads`` threads; False (and no change) if it already exists."""

def num_threads() -> int:
    """Number of threads the core's parallel functions run on."""

# --- sampled (SimHash + tail) attention and its KV cache (rust/python/src/kvcache.rs) ---

_AttendTuple = tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], int] | None,
]

def lsh_attention(
    q: npt.NDArray[np.float32],
    k: npt.NDArray[np.float32],
    v: npt.NDArray[np.float32],
    dims: tuple[int, int, int, int, int, int],
    bias: npt.NDArray[np.float32] | None,
    bias_dims: list[int],
    causal: bool,
    scale: float,
    bits: int,
    tables: int,
    sinks: int,
    window: int,
    budget: int,
    epsilon: float | None,
    delta: float,
    seed: int,
    keep_design: bool,
) -> _AttendTuple:
    """Sampled attention over flat q (B*H*L*E), k (B*H*S*E), v (B*H*S*Ev) with dims (B, H, L, S, E, Ev).

    ``bias`` is a flat additive mask of shape ``bias_dims`` (1 on broadcast axes, full key axis).
    Returns (out (B*H*L*Ev), keys scored, candidates, hashes, estimated relative error, design),
    the per-row arrays flat (B*H*L); design is None or (candidate mask (B*H*L*S) uint8, tail draws
    (B*H*L*width) int64 padded with -1, width). Raises ShapeError / InvalidArgumentError.
    """

def simhash_planes(dim: int, bits: int, tables: int, seed: int, heads: int) -> npt.NDArray[np.float32]:
    """The SimHash hyperplanes of heads 0..heads under ``seed``: flat (heads, tables, bits, dim) float32."""

@final
class SampledKvCache:
    """A B x H key/value cache with a growing SimHash index (wrapped by ``SampledKVCache``)."""

    def __new__(
        cls,
        batch: int,
        heads: int,
        dim: int,
        vdim: int,
        bits: int,
        tables: int,
        sinks: int,
        window: int,
        budget: int,
        epsilon: float | None,
        delta: float,
        seed: int,
    ) -> SampledKvCache: ...
    def __len__(self) -> int: ...
    def reset(self) -> None:
        """Drop every cached position."""
    def planes(self) -> npt.NDArray[np.float32]:
        """The hyperplanes, flat (H, tables, bits, E) float32."""
    def append(self, k: npt.NDArray[np.float32], v: npt.NDArray[np.float32], new: int) -> None:
        """Append flat k (B*H*new*E) and v (B*H*new*Ev)."""
    def attend(
        self,
        q: npt.NDArray[np.float32],
        rows: int,
        bias: npt.NDArray[np.float32] | None,
        bias_dims: list[int],
        scale: float,
        exact: bool,
        keep_design: bool,
    ) -> _AttendTuple:
        """Attend flat q (B*H*rows*E) for the newest ``rows`` positions; returns the attend tuple."""
