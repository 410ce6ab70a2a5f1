"""Timing helpers shared by the benchmark suites: warm-up, synchronisation, medians."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from qtransformers.profile import profile


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, *, warmup: int = 1, repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` calls, synchronising around each."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory above the starting level during one call of ``fn()``."""
    with profile(device) as p:
        fn()
    return p.result.peak_bytes
