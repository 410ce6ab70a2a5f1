"""Imports every module that registers a mixer (keeps the registry complete)."""

from qtransformers.mixers import attention  # noqa: F401
from qtransformers.mixers import quantum  # noqa: F401
