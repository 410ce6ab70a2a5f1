"""``profile``: a context manager recording wall time and peak memory of a block.

On CUDA it uses ``torch.cuda`` peak-allocated statistics (after synchronising). On CPU
torch has no allocator statistics, so it samples the process' resident set size (RSS) from
a thread and reports the peak above the starting level (and tracemalloc's peak for Python
objects, if larger). To make RSS follow tensor lifetimes, glibc is told once to serve every
allocation of 128 KiB or more with its own mmap (returned to the OS on free); short peaks
between two samples (0.5 ms apart) can be missed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import resource
import threading
import time
import tracemalloc
from dataclasses import dataclass

import torch


def _rss_bytes() -> int:
    """Current resident set size of this process in bytes (Linux /proc, else ru_maxrss)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@functools.cache
def _fixed_mmap_threshold() -> None:
    """Ask glibc to mmap allocations >= 128 KiB (no dynamic threshold), so frees lower RSS."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold = -3
        libc.mallopt(m_mmap_threshold, 128 * 1024)
    except (OSError, AttributeError):
        pass


@dataclass
class ProfileResult:
    """What :class:`profile` measured: seconds and peak bytes above the starting level."""

    seconds: float = 0.0
    peak_bytes: int = 0


class profile:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Measure wall time and peak memory of a ``with`` block on ``device``.

    Example::

        with qtransformers.profile("cpu") as p:
            y = layer(x)
        print(p.result.seconds, p.result.peak_bytes)
    """

    def __init__(self, device: str | torch.device = "cpu", *, sample_interval: float = 0.0005) -> None:
        self.device = torch.device(device)
        self.sample_interval = sample_interval
        self.result = ProfileResult()
        self._stop = threading.Event()
        self._peak_rss = 0

    def _sample_rss(self) -> None:
        while not self._stop.is_set():
            self._peak_rss = max(self._peak_rss, _rss_bytes())
            time.sleep(self.sample_interval)

    def __enter__(self) -> profile:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            _fixed_mmap_threshold()
            self._base = _rss_bytes()
            self._peak_rss = self._base
            tracemalloc.start()
            self._thread = threading.Thread(target=self._sample_rss, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result.seconds = time.perf_counter() - self._t0
            self.result.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self.result.seconds = time.perf_counter() - self._t0
            self._stop.set()
            self._thread.join()
            _, traced_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_peak = max(self._peak_rss, _rss_bytes()) - self._base
            self.result.peak_bytes = max(traced_peak, rss_peak)
