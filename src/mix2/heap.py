"""The C heap of a training process on Linux: freed memory kept for the next step, not handed back.

A training step on a CPU allocates and frees the same activations and gradients, many of them
megabytes each, at every step. glibc's allocator serves a block of 128 KiB or more with a fresh
``mmap``, unmapped when it is freed, and hands back free memory at the top of its heap past a second
threshold (both raised by glibc itself as blocks are freed, but never past 32 MiB), so the next
step's first write to each page is a page fault, the kernel zeroing the page: 37,000 to 58,000
faults a step of the half-width network on a batch of 32, one thread. :func:`keep_freed_heap_memory`
has glibc serve blocks of up to 32 MiB from its heap and keep what is freed there, as PyTorch's CPU
tuning guide gets from tcmalloc or jemalloc by preloading one: a few hundred faults a step, and the
step 27 to 33 % shorter on one thread (README, "Speed"). The numbers do not change (PyTorch aligns
every tensor itself); the process holds its peak memory between steps instead of giving it back.
Blocks over 32 MiB (batches far larger than a CPU trains) are still mapped and unmapped each time.

Example:
    >>> import platform
    >>> keep_freed_heap_memory() == (platform.libc_ver()[0] == "glibc")
    True
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1
"""``mallopt``'s option for how much free memory at the top of the heap it keeps before handing it back."""
M_MMAP_THRESHOLD = -3
"""``mallopt``'s option for the size from which a block gets its own mapping instead of heap memory."""
MMAP_THRESHOLD_BYTES = 32 << 20
"""Blocks under this size come from the heap: glibc's largest threshold on a 64-bit system."""
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the top of the heap, up to this size, stays there for the next step."""


def keep_freed_heap_memory() -> bool:
    """Have glibc serve blocks of up to 32 MiB from its heap and keep them there once freed, for this process
    and whatever it starts by forking. Returns whether it did: False where the C library is not glibc (macOS,
    Windows, musl), which are left as they are."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    # mallopt returns 1 on success; setting either threshold also stops glibc from moving them itself.
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
