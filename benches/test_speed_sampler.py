"""Shot sampling: the Rust sampler against its torch reference, (512, 1024) weights, 64 shots per row."""

from __future__ import annotations

import pytest
import torch

from qtransformers.functional import sample_rows, sample_rows_ref

ROWS, KEYS, SHOTS = 512, 1024, 64


@pytest.mark.benchmark(group=f"sample rows ({ROWS}, {KEYS}), {SHOTS} shots")
@pytest.mark.parametrize("method", ["multinomial", "stratified", "systematic"])
@pytest.mark.parametrize("impl", ["rust", "torch reference"])
def test_sample_rows(benchmark, impl, method, gen):
    weights = torch.rand(ROWS, KEYS, generator=gen).softmax(-1)
    fn = sample_rows if impl == "rust" else sample_rows_ref

    def run():
        return fn(weights, SHOTS, method, generator=torch.Generator().manual_seed(0))

    idx = benchmark(run)
    assert idx.shape == (ROWS, SHOTS) and int(idx.min()) >= 0 and int(idx.max()) < KEYS
