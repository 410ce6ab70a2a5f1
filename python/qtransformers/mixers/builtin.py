"""Imports every module that registers a mixer (keeps the registry complete)."""

from qtransformers.mixers import (
    attention,  # noqa: F401
    fnet,  # noqa: F401
    hyena,  # noqa: F401
    phase,  # noqa: F401
    qrh,  # noqa: F401
    quantum,  # noqa: F401
    spectral,  # noqa: F401
)
