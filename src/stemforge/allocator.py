"""Keep the C heap from holding memory the process no longer uses (glibc only; no-ops elsewhere).

Two measured effects on a separation with the official htdemucs model (2 cores):

- Loading a checkpoint leaves its decoded bytes as free-but-unreturned heap (~150 MB RSS);
  :func:`release_free_memory` (``malloc_trim``) hands it back to the OS.
- Every thread that allocates gets its own glibc arena, and each arena keeps its peak; with two
  segments computed in parallel, :func:`limit_malloc_arenas` (``mallopt(M_ARENA_MAX, 2)``) cut
  peak RSS from 1.81 to 1.53 GB on a 30 s track. It must run before the worker threads start.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from functools import lru_cache
from typing import Optional

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # from glibc's malloc.h


@lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - only glibc has it (musl does not)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS. True if it ran (glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (call before starting threads). True if it ran."""
    libc = _glibc()
    if libc is None or arenas < 1:
        return False
    ok = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    logger.debug("malloc arenas limited to %d: %s", arenas, ok)
    return ok
