"""The Rust core's thread pool follows torch's thread count (or RAYON_NUM_THREADS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import qtransformers
from qtransformers import InvalidArgumentError, _core

PROBE = "import torch, qtransformers; print(torch.get_num_threads(), qtransformers.core_threads())"


def threads_in_subprocess(probe: str = PROBE, **env: str) -> tuple[int, int]:
    """(torch threads, core threads) printed by ``probe`` in a fresh interpreter under ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env={**base, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("threads", ["1", "2"])
def test_core_pool_follows_torch(threads):
    torch_threads, core = threads_in_subprocess(OMP_NUM_THREADS=threads)
    assert core == torch_threads
    assert threads == "2" or core == 1


def test_set_num_threads_before_the_import_counts():
    probe = "import torch; torch.set_num_threads(1); " + PROBE
    assert threads_in_subprocess(probe, OMP_NUM_THREADS="2") == (1, 1)


def test_rayon_num_threads_wins():
    assert threads_in_subprocess(OMP_NUM_THREADS="1", RAYON_NUM_THREADS="3") == (1, 3)


def test_pool_is_created_once():
    before = qtransformers.core_threads()
    assert _core.init_threads(before + 1) is False
    assert qtransformers.core_threads() == before


def test_zero_threads_is_an_error():
    with pytest.raises(InvalidArgumentError, match="at least one thread"):
        _core.init_threads(0)
    with pytest.raises(ValueError):
        _core.init_threads(0)
