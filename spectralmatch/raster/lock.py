"""One run at a time per output folder: an exclusive lock held while a run writes there.

The folder itself is locked with the operating system's file locks (``flock`` on its
descriptor; on Windows, ``msvcrt.locking`` on a ``.spectralmatch.lock`` file in it), so
nothing is added to the folder and a killed run's lock is released by the system with
it. A second run into the same folder fails at once with a message naming the folder.
Whoever takes the lock removes the temporary files a killed run left there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import SpectralMatchError
from .files import remove_leftovers

#: Folders this process holds: their locked descriptor and how many holders (the lock
#: is re-entrant within a process).
_held: dict[Path, tuple[int, int]] = {}
_guard = threading.Lock()


def _open_locked(folder: Path) -> int | None:
    """A descriptor holding ``folder``'s lock, or None if another process holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        descriptor = os.open(folder / ".spectralmatch.lock", os.O_RDWR | os.O_CREAT, 0o666)
        lock = functools.partial(msvcrt.locking, descriptor, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        descriptor = os.open(folder, os.O_RDONLY)
        lock = functools.partial(fcntl.flock, descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        lock()
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _acquire(folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = _open_locked(folder)
    except OSError as error:
        raise SpectralMatchError(f"{folder}: cannot write there ({error.strerror})") from None
    if descriptor is None:
        raise SpectralMatchError(
            f"{folder}: another spectralmatch run is writing there; wait for it to finish "
            "or choose another output folder"
        )
    remove_leftovers(folder)
    return descriptor


@contextlib.contextmanager
def folder_lock(folders: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Hold the lock of every folder in ``folders`` (created if needed) in the block.

    Raises
    ------
    SpectralMatchError
        If another run holds one of them, or a folder cannot be written to.
    """
    taken: list[Path] = []
    try:
        for folder in sorted({Path(f).resolve() for f in folders}):
            with _guard:
                descriptor, holders = _held.get(folder) or (_acquire(folder), 0)
                _held[folder] = (descriptor, holders + 1)
            taken.append(folder)
        yield
    finally:
        for folder in taken:
            with _guard:
                descriptor, holders = _held.pop(folder)
                if holders > 1:
                    _held[folder] = (descriptor, holders - 1)
                else:
                    os.close(descriptor)
