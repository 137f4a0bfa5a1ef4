"""The C heap of a process whose passes run in threads: glibc's malloc arenas, bounded.

glibc gives threads that allocate at the same time arenas of their own, up to eight per
core, and memory freed in one arena serves only the threads that use it. A pass
allocates a few window-sized arrays per task from its worker threads and GDAL's
compression threads; left alone, freed windows pile up in a dozen arenas (a fit then a
transform of nine 3000 x 3000 images peaked at 384 to 509 MB on 2 cores; with the arenas
bounded to the cores, at 316 to 350 MB).

The bound is the process's, not a library's to set behind its host's back: the
``spectralmatch`` command sets it for itself, and a program that runs the passes may
call :func:`limit_malloc_arenas` first, or start with ``MALLOC_ARENA_MAX`` set.
"""

from __future__ import annotations

import ctypes
import os
import platform

#: glibc's ``mallopt`` parameter for the maximum number of arenas.
M_ARENA_MAX = -8


def limit_malloc_arenas(workers: int) -> bool:
    """Bound glibc's malloc arenas to ``workers`` (at least 2); whether it was done.

    Nothing is done under another C library or where ``MALLOC_ARENA_MAX`` is set. The
    bound holds for arenas made afterwards (glibc fixes it when its ninth is made), so
    it is set before a pass starts its threads.
    """
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_ARENA_MAX, max(2, workers)))
