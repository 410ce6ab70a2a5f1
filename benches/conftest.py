"""pytest-benchmark benches of the hot paths: ``pytest benches`` (timed), ``pytest benches --benchmark-disable`` (smoke).

Each bench is parametrised over a fast path and the reference or peer it replaces, grouped so
pytest-benchmark prints them side by side. Sizes are small enough for a 2-core CPU; pass
``--benchmark-only`` or ``-k`` to pick some. One torch thread unless ``QT_BENCH_THREADS`` says otherwise,
so the numbers compare the algorithms rather than how many cores a run happened to get.
"""

from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(int(os.environ.get("QT_BENCH_THREADS", "1")))


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator (every bench input is reproducible)."""
    return torch.Generator().manual_seed(0)
