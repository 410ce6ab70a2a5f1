"""Imports every module that registers a mixer (keeps the registry complete)."""

from qtransformers.mixers import attention  # noqa: F401
from qtransformers.mixers import phase  # noqa: F401
from qtransformers.mixers import qrh  # noqa: F401
from qtransformers.mixers import fnet  # noqa: F401
from qtransformers.mixers import hyena  # noqa: F401
from qtransformers.mixers import spectral  # noqa: F401
from qtransformers.mixers import quantum  # noqa: F401
