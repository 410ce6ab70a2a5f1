"""Shared pytest fixtures: the Tiny Shakespeare corpus and the GPU/Triton skips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    """Path of ../shared/data/tinyshakespeare.txt; skips the test when it is missing."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"corpus not found at {SHAKESPEARE} (it lives in shared/ beside the checkout)")
    return SHAKESPEARE


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` cleanly when no CUDA device is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
