"""How many threads the Rust core runs on: as many as torch, unless ``RAYON_NUM_THREADS`` says otherwise.

Importing qtransformers creates the core's thread pool (rayon's global pool) with
``torch.get_num_threads()`` threads, so ``OMP_NUM_THREADS=1`` (or ``torch.set_num_threads(1)``
before the import) runs the Rust kernels on one thread as well as torch's. ``RAYON_NUM_THREADS``,
when set, sizes the pool instead. The pool is created once per process: a later
``torch.set_num_threads`` changes torch's threads only.
"""

from __future__ import annotations

import os

import torch

from qtransformers import _core


def init_core_threads() -> int:
    """Size the core's pool to torch's thread count (unless ``RAYON_NUM_THREADS`` is set); returns its size."""
    if not os.environ.get("RAYON_NUM_THREADS"):
        _core.init_threads(torch.get_num_threads())
    return core_threads()


def core_threads() -> int:
    """Number of threads the Rust core's parallel functions run on."""
    return _core.num_threads()
