"""Timing helpers shared by the benchmark suites: warm-up, synchronisation, medians, interleaved rounds."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch
from tqdm.auto import tqdm

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.profile import profile

MIN_ROUNDS = 6  # the fewest rounds whose order-statistics interval of the median reaches 95 % coverage


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


def peak_memory_bytes(fn: Callable[[], object], device: torch.device, calls: int = 1) -> int:
    """Peak memory above the starting level during a call of ``fn()``: the median over ``calls`` calls.

    On CPU the peak is sampled from the RSS, which varies between calls of the same code (allocator
    state, samples 0.5 ms apart); the median of several calls is steadier than one.
    """
    if calls < 1:
        raise InvalidArgumentError(f"calls must be >= 1, got {calls}")
    peaks = []
    for _ in range(calls):
        with profile(device) as p:
            fn()
        peaks.append(p.result.peak_bytes)
    return int(statistics.median(peaks))


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Median of ``values`` and a distribution-free interval for the population median: (median, low, high, coverage).

    The interval is the k-th smallest and k-th largest value, with k the largest such that the
    interval's coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least ``confidence`` (exact for any
    continuous distribution of independent values). Raises if no k reaches ``confidence``.
    """
    n = len(values)
    if not 0 < confidence < 1:
        raise InvalidArgumentError(f"confidence must be in (0, 1), got {confidence}")
    below = 0.0  # P(Binomial(n, 1/2) < k) for the current k
    best = None
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2**n
        coverage = 1 - 2 * below
        if coverage < confidence:
            break
        best = (k, coverage)
    if best is None:
        raise InvalidArgumentError(f"{n} values cannot give a {confidence:g} interval of the median; need more rounds")
    k, coverage = best
    ordered = sorted(values)
    return statistics.median(values), ordered[k - 1], ordered[n - k], coverage


def interleaved_times(
    steps: dict[str, Callable[[], None]],
    rounds: int,
    device: torch.device,
    progress: bool = False,
    *,
    cpu_time: bool = True,
) -> dict[str, list[float]]:
    """Milliseconds of each of ``rounds`` calls of every step function, called in turn (order rotated each round).

    One untimed warm-up round first. On CPU the clock is this process's CPU time (``cpu_time=True``) or
    elapsed time; on CUDA always elapsed time, synchronised around each call.
    """
    names = list(steps)
    clock = time.process_time if device.type == "cpu" and cpu_time else time.perf_counter
    for name in names:
        steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in tqdm(range(rounds), desc="rounds", disable=not progress):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            synchronize(device)
            start = clock()
            steps[name]()
            synchronize(device)
            times[name].append(1e3 * (clock() - start))
    return times
