"""glibc's allocator told to hand freed memory back to the OS (Linux with glibc; elsewhere nothing).

An ONNX Runtime call allocates its activations and frees them when it returns; glibc keeps freed
pages for reuse, in one arena per thread that ever allocated. A server whose scoring threads embed
prompts therefore keeps each thread's largest call for good. :func:`use_one_arena` (for a serving
process, before its threads start) and :func:`release_freed_memory` (after each embedding call)
bound that: on 736 AlpacaEval prompts embedded by ``minilm-int8``'s two threads, the process grew
by 10.7 MB with neither and shrank by 3.4 MB with both (trimming alone: +7.1 MB, one arena alone: +8.2).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from functools import cache
from typing import Any

#: ``mallopt``'s parameter number for the arena limit (``M_ARENA_MAX`` in glibc's malloc.h).
_M_ARENA_MAX = -8


@cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018  # musl has neither
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (``malloc_trim``)."""
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)


def use_one_arena() -> None:
    """Let every thread of this process allocate from the main arena (``M_ARENA_MAX`` = 1), so
    that :func:`release_freed_memory` reaches all freed memory. A setting for the whole process:
    only a process lmroute owns (``lmroute serve`` and its workers) calls it."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 1)
