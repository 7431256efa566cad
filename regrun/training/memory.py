"""Host memory for training: large freed buffers kept for reuse (glibc's malloc).

glibc serves every request above its mmap threshold (32 MiB at most, by default) with a
fresh mapping and gives it back to the OS when it is freed, so each such tensor pays a
page fault for every 4 KiB it writes, every time. Evaluating 1000 CNN images makes outputs
of 100 MB per layer: measured on the project's 2-core machine, those faults made the
forward passes of a test-set evaluation take 3.1 s instead of 1.5 s. Raising the
thresholds lets such buffers come from the heap and be reused, as PyTorch's caching
allocator reuses GPU memory (and as the jemalloc or tcmalloc that PyTorch's CPU tuning
guides recommend would). The cost: up to `KEEP` bytes of freed memory stay with the process.

Other C libraries (musl, macOS, Windows) are left as they are.
"""

import ctypes
import ctypes.util
import functools

KEEP = 1 << 30  # bytes: requests below this come from the heap; this much freed memory is kept
# Older glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): then this,
# which still stops the threshold from sliding back down.
FALLBACK = 32 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc keep and reuse freed buffers of up to `KEEP` bytes, once per process (for
    the rest of it: a notebook that calls regrun.train keeps the setting); True when the
    mmap threshold took effect."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt(M_TRIM_THRESHOLD, KEEP)
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP) or mallopt(M_MMAP_THRESHOLD, FALLBACK))
