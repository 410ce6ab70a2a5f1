"""``profile``: a context manager recording wall time and peak memory of a block.

On CUDA it uses ``torch.cuda`` peak-allocated statistics (after synchronising). On CPU
torch has no allocator statistics, so it samples the process' resident set size (RSS) from
a thread and reports the peak above the starting level (and tracemalloc's peak for Python
objects, if larger). So that memory freed before the block and reused inside it shows in the
RSS, the block starts with glibc's ``malloc_trim(0)``, which returns the free heap pages to the
OS. It changes no allocator setting: timings taken after a ``profile`` block are unaffected
(an earlier version fixed glibc's mmap threshold for the rest of the process, which made every
later step of allocation-heavy code page-fault). Short peaks between two samples (0.5 ms apart)
can be missed, and memory freed and reused inside the block counts once.

The RSS also counts freed heap pages glibc keeps: after a large mapped block is freed glibc raises its
mmap threshold (up to 32 MiB), so later blocks of that size come from the heap, and code that frees and
allocates many such blocks can show a peak well above its live memory, varying from call to call. For
a peak that follows the live memory, run the process with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576`` (slower: each large block faults in fresh pages).
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
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (``find_library`` runs ``ldconfig``); None where it cannot be found."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _release_free_heap() -> None:
    """Return glibc's free heap pages to the OS (``malloc_trim(0)``), so re-using them raises the RSS again.

    A no-op where the C library has no ``malloc_trim`` (not glibc).
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@dataclass
class ProfileResult:
    """What :class:`profile` measured: seconds and peak bytes above the starting level."""

    seconds: float = 0.0
    peak_bytes: int = 0


class profile:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Measure wall time and peak memory of a ``with`` block on ``device``.

    Example::

        from qtransformers.profile import profile

        with profile("cpu") as p:
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
            _release_free_heap()
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
