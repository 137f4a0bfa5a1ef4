"""Where an example writes: the folder named on its command line, or a new temporary one.

Every example takes that folder as its first argument and writes nothing anywhere else;
figures are never written over an existing file, so the figures tracked in docs/images
are regenerated into a new folder and copied from there on purpose (README.md says how).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def output_folder(argv: list[str] | None = None) -> Path:
    """The folder given as the first command-line argument (made if missing), or a new
    temporary folder; printed either way, so the outputs can be found."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="spectralmatch-example-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"writing into {folder}")
    return folder


def new_file(folder: Path, name: str) -> Path:
    """``folder / name``, refused if it exists: an example never writes over a file."""
    path = Path(folder) / name
    if path.exists():
        raise FileExistsError(f"{path} exists: give an example a new or empty folder")
    return path
