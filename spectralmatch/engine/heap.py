"""The C heap of a process whose passes run in threads: glibc's malloc, tuned.

glibc gives threads that allocate at the same time arenas of their own, up to eight per
core, and memory freed in one arena serves only the threads that use it. A pass
allocates a few window-sized arrays per task from its worker threads and GDAL's
compression threads; left alone, freed windows pile up in a dozen arenas (a fit then a
transform of nine 3000 x 3000 images peaked at 384 to 509 MB on 2 cores; with the arenas
bounded to the cores, at 316 to 350 MB).

An arena also gives freed memory back to the system as soon as a few windows' worth lies
free at its top, and the next window takes it back page by page, each page zeroed by the
kernel on first touch: on scale-9x3000 that was 116 000 page faults and 1.2 s of
system time. Keeping freed windows in the arenas (:func:`keep_freed_windows`) takes a
third of the faults away and 2 to 3 % of the time of a match.

These are the process's settings, not a library's to make behind its host's back: the
``spectralmatch`` command makes them for itself, and a program that runs the passes may
call these functions first, or start with glibc's ``MALLOC_*`` variables set.
"""

from __future__ import annotations

import ctypes
import os
import platform

#: glibc's ``mallopt`` parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Allocations from this size up are mapped apart, and unmapped when freed: glibc's own
#: ceiling for its sliding threshold, so that windows come from the arenas.
MMAP_THRESHOLD = 32 << 20

#: An arena gives memory back to the system only when more than this lies free at its
#: top: a few windows, so that what the heap keeps stays bounded (256 MiB was no faster
#: and peaked 26 MB higher on scale-9x3000).
TRIM_THRESHOLD = 64 << 20


def limit_malloc_arenas(workers: int) -> bool:
    """Bound glibc's malloc arenas to ``workers`` (at least 2); whether it was done.

    Nothing is done under another C library or where ``MALLOC_ARENA_MAX`` is set. The
    bound holds for arenas made afterwards (glibc fixes it when its ninth is made), so
    it is set before a pass starts its threads.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not _glibc():
        return False
    return _mallopt(M_ARENA_MAX, max(2, workers))


def keep_freed_windows() -> bool:
    """Let glibc's arenas keep the memory freed windows leave (up to
    :data:`TRIM_THRESHOLD` each) for the next windows; whether it was done.

    Nothing is done under another C library or where ``MALLOC_TRIM_THRESHOLD_`` or
    ``MALLOC_MMAP_THRESHOLD_`` is set (setting either fixes both of glibc's sliding
    thresholds).
    """
    if {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"} & os.environ.keys() or not _glibc():
        return False
    return _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def _mallopt(parameter: int, value: int) -> bool:
    return bool(ctypes.CDLL(None).mallopt(parameter, value))
