"""Files that appear whole or not at all: temporary names, atomic renames, leftovers.

Every file the package writes is first written under a temporary name in the same
folder, ``.spectralmatch-tmp-<random><suffix>``, and renamed onto its final name only
once complete. The temporary name is short (a long final name still fits the file
system's limit) and recognisable, so that the files a killed run left behind are
removed by the next run into that folder (:func:`remove_leftovers`). Files are created
with the permissions the user's umask gives, as any other program's would be.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import SpectralMatchError

#: The start of every temporary file or folder name.
TEMPORARY_PREFIX = ".spectralmatch-tmp-"


def new_temporary(folder: Path, suffix: str = "", *, directory: bool = False) -> Path:
    """Create an empty temporary file (or folder) in ``folder``; its name is unique.

    Raises
    ------
    SpectralMatchError
        Naming ``folder`` when it cannot be written to.
    """
    for _ in range(100):
        path = folder / f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}{suffix}"
        try:
            if directory:
                path.mkdir(mode=0o777)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue
        except OSError as error:
            raise SpectralMatchError(
                f"{folder}: cannot write there ({error.strerror or error})"
            ) from None
    raise SpectralMatchError(f"{folder}: cannot create a temporary file there")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tif") -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it only if the block succeeds.

    On any error or interrupt the temporary file (and any GDAL ``.aux.xml`` beside it)
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    temporary = new_temporary(path.parent, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.aux.xml").unlink(missing_ok=True)


@contextlib.contextmanager
def temporary_folder(parent: Path) -> Iterator[Path]:
    """A scratch folder in ``parent``, removed with everything in it after the block."""
    folder = new_temporary(parent, directory=True)
    try:
        yield folder
    finally:
        _remove(folder)


def write_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as temporary:
        temporary.write_bytes(data)
    return path


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files and folders an interrupted run left in ``folder``.

    Only safe while no other run writes there (hold :class:`~.lock.FolderLock`).
    Returns what was removed.
    """
    if not folder.is_dir():
        return []
    leftovers = sorted(folder.glob(f"{TEMPORARY_PREFIX}*"))
    for path in leftovers:
        _remove(path)
    return leftovers


#: Paths longer than this are handed to GDAL through a short symbolic link (GDAL's
#: path buffers hold about 2,000 characters; the OS allows 4,096).
LONG_PATH = 1000
_links: dict[Path, Path] = {}


def gdal_path(path: str | os.PathLike) -> str:
    """``path`` as GDAL can open it: itself, or when longer than :data:`LONG_PATH`, the
    same file through a short link to its folder (made once per folder and process, in
    the system's temporary folder, removed when the process exits)."""
    text = os.fspath(path)
    if len(text) <= LONG_PATH or sys.platform == "win32":
        return text
    folder = Path(text).parent
    if folder not in _links:
        if not _links:
            atexit.register(_remove_links)
        link = Path(tempfile.mkdtemp(prefix="spectralmatch-")) / "folder"
        link.symlink_to(folder, target_is_directory=True)
        _links[folder] = link
    return os.fspath(_links[folder] / Path(text).name)


def _remove_links() -> None:
    for link in _links.values():
        shutil.rmtree(link.parent, ignore_errors=True)
    _links.clear()
