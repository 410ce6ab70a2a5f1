"""The exception hierarchy of qtransformers.

Every error the library raises on bad input is a :class:`QTransformersError` and
also an instance of the matching built-in, so ``except ValueError`` keeps working.
The Rust extension raises these same classes (see ``rust/python/src/errors.rs``).
"""

from __future__ import annotations


class QTransformersError(Exception):
    """Base class of every error raised by qtransformers."""


class ShapeError(QTransformersError, ValueError):
    """Tensor shapes do not fit together; the message names the shapes."""


class InvalidArgumentError(QTransformersError, ValueError):
    """An argument value is outside its allowed range or set of choices."""


class DTypeError(QTransformersError, TypeError):
    """A tensor or argument has an unsupported type or dtype."""


class BackendUnavailableError(QTransformersError, RuntimeError):
    """A requested backend (Triton, CUDA, the Rust extension) is not available here."""


class BenchmarkFailedError(QTransformersError, RuntimeError):
    """A benchmark run by the results pipeline exited with an error; the message names it and its command."""


__all__ = [
    "QTransformersError",
    "ShapeError",
    "InvalidArgumentError",
    "DTypeError",
    "BackendUnavailableError",
    "BenchmarkFailedError",
]
