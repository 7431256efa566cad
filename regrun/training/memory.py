"""Memory for training: how much a member of a fused group takes and how many fit in what
is free, and large freed host buffers kept for reuse (glibc's malloc).

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
import math

import torch
from torch import Tensor, nn

from regrun.measure.capture import output_shapes
from regrun.measure.sparsity import stat_modules

KEEP = 1 << 30  # bytes: requests below this come from the heap; this much freed memory is kept
# Older glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): then this,
# which still stops the threshold from sliding back down.
FALLBACK = 32 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
STATE_SLOTS = {torch.optim.SGD: 1, torch.optim.Adam: 2, torch.optim.AdamW: 2}  # tensors of state per parameter


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


def member_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, example: Tensor, batch_size: int) -> int:
    """About how much memory one member takes in a group: parameters, their gradients and
    optimizer state, buffers, and one batch's input and every layer's output, kept for the
    backward pass and its gradient."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    leaves = stat_modules(model)
    per_sample = example[0].numel() + sum(math.prod(s) for s in output_shapes(model, example, leaves).values())
    return params * (2 + STATE_SLOTS.get(type(optimizer), 2)) + buffers + 2 * batch_size * per_sample * example.element_size()


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device (CUDA), or the memory the OS can give (Linux); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def chunk_size(per_member: int, available: int | None, max_models: int | None) -> int:
    """Members per chunk: at most `max_models`, and as many as fit in half the free memory."""
    fits = max(1, available // 2 // max(per_member, 1)) if available else None
    limits = [n for n in (fits, max_models) if n]
    return min(limits) if limits else 1 << 30
