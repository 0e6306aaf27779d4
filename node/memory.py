"""Giving freed memory back to the system after bulk work (glibc only; elsewhere a no-op).

A put frees tens of MiB of segment and shard buffers, but glibc keeps freed
chunks in its heaps (one arena per thread that allocated, up to 8 per core)
and returns them only when a heap's top is free: measured, a writer stayed
at 160 MiB after a 64 MiB put. Two arenas (the trio thread and the workers)
bound how many heaps hold such leftovers, and `malloc_trim(0)` after a put
returns every free page of every arena (madvise), so the RSS falls back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only: musl and others have none
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before worker threads start); whether it applied."""
    libc = _libc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


def release_free_memory() -> bool:
    """Return free heap pages to the system; whether any were released (cheap: well
    under a millisecond; no cyclic GC, which costs tens of ms on a loaded machine)."""
    libc = _libc()
    return libc is not None and libc.malloc_trim(0) == 1
