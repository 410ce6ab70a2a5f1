"""Pure functions on tensors: attention in SDPA's layout, samplers, masks.

Each fast path (Rust, Triton) has a ``*_ref`` PyTorch reference beside it; the operators that choose
between a reference and a fast path (``causal_fftconv``, ``qrh``) are in :mod:`qtransformers.kernels`.
"""

from qtransformers.functional.approximate import linformer_attention, nystrom_attention, performer_attention
from qtransformers.functional.attention import exact_attention, safe_softmax
from qtransformers.functional.fftconv import causal_fftconv_ref
from qtransformers.functional.lsh import lsh_attention, lsh_attention_design, lsh_attention_ref
from qtransformers.functional.metrics import relative_error, relative_errors
from qtransformers.functional.position import absolute_phase, rope
from qtransformers.functional.qrh import energy_ratio, qrh_ref
from qtransformers.functional.quantum import quantum_attention, side_information_cost
from qtransformers.functional.sampling import (
    allocate_shots,
    allocate_shots_ref,
    draw_rows,
    draw_rows_ref,
    sample_rows,
    sample_rows_ref,
)

__all__ = ["exact_attention", "relative_error", "relative_errors", "safe_softmax", "sample_rows", "sample_rows_ref"]
__all__ += ["absolute_phase", "causal_fftconv_ref", "energy_ratio", "qrh_ref"]
__all__ += ["allocate_shots", "allocate_shots_ref", "draw_rows", "draw_rows_ref", "linformer_attention"]
__all__ += ["nystrom_attention", "performer_attention", "quantum_attention", "rope", "side_information_cost"]
__all__ += ["lsh_attention", "lsh_attention_design", "lsh_attention_ref"]
