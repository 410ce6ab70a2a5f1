"""Quantum simulation: CPTP noise channels, matrix product states, attention simulators.

Importing this package registers the "noisy" and "mps" QuantumMultiheadAttention backends.
"""

from qtransformers.quantum import backends as _backends  # noqa: F401  (registers backends)
from qtransformers.quantum.channels import (
    Channel,
    amplitude_damping,
    apply_channel_ref,
    depolarizing,
    phase_damping,
    superoperator_ref,
    thermal_relaxation,
)
from qtransformers.quantum.mps import MPS, tt_svd_ref
from qtransformers.quantum.simulators import (
    NOISE_MODELS,
    MatrixProductStateSimulator,
    QuantumAttentionSimulator,
    noise_channel,
    relative_error,
)

__all__ = [
    "MPS",
    "NOISE_MODELS",
    "Channel",
    "MatrixProductStateSimulator",
    "QuantumAttentionSimulator",
    "amplitude_damping",
    "apply_channel_ref",
    "depolarizing",
    "noise_channel",
    "phase_damping",
    "relative_error",
    "superoperator_ref",
    "thermal_relaxation",
    "tt_svd_ref",
]
