"""Giving memory back to the system after a big answer (glibc only).

A 10 MiB output passes through buffers of several MiB; glibc keeps freed
heap memory for reuse, so an idle agent would sit on it for weeks. Two
calls through ctypes, both guarded (not glibc, no ctypes: they do nothing):
a fixed mmap threshold at start, so big buffers are mapped and unmapped
instead of growing the heap, and malloc_trim() after a big answer.
Called from the main thread.
"""

import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024
BIG_ANSWER_BYTES = 1024 * 1024

_libc = None


def _load():
    global _libc
    if _libc is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = libc.mallopt and libc.malloc_trim and libc
        except (ImportError, OSError, AttributeError):
            _libc = False
    return _libc


def tune_allocator():
    """Keep big buffers out of the heap; True when glibc took the settings."""
    libc = _load()
    if not libc:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    log.debug("allocator tuned: %s", ok)
    return ok


def release():
    """Hand freed memory back to the system (after a big answer)."""
    libc = _load()
    if libc:
        libc.malloc_trim(0)
