"""Build the installable QGIS plugin zip from the modules of this package.

Runs without QGIS. The zip holds one folder, ``spectralmatch_qgis`` (a name apart from
the library's, so that the plugins folder on ``sys.path`` does not hide the library):
``metadata.txt``, an ``__init__.py`` with ``classFactory``, and the provider and
algorithm modules, which import each other relatively and the library only when an
algorithm runs.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from .._version import __version__
from ..raster.files import write_atomically

#: The plugin's folder inside the zip (and in QGIS's plugins folder).
PLUGIN_FOLDER = "spectralmatch_qgis"
#: The modules of this package that make the plugin.
MODULES = ["plugin", "provider", "install", "algorithms", "running", "matching", "mosaic"]
MODULES += ["masks"]
#: The oldest QGIS the plugin supports.
QGIS_MINIMUM = "3.22"

ABOUT = (
    "Processing algorithms of the spectralmatch library: match overlapping rasters "
    "(global and local models, reference images, masks, change detection), apply a saved "
    "model to new scenes, align, seamlines, clip, merge, cloud / NDVI / band math / "
    "threshold masks and polygons, and an HTML report. The library is installed into "
    "QGIS's Python by the algorithm 'Install or update the spectralmatch library'."
)

INIT = '''"""spectralmatch QGIS Processing plugin (built by 'spectralmatch qgis-plugin')."""

from .plugin import classFactory

__all__ = ["classFactory"]
'''


def metadata(version: str = __version__) -> str:
    """The plugin's metadata.txt."""
    return f"""[general]
name=spectralmatch
qgisMinimumVersion={QGIS_MINIMUM}
description=Relative radiometric normalization of raster mosaics and time series
version={version}
author=spectralmatch developers
email=spectralmatch@users.noreply.github.com
about={ABOUT}
tags=raster,mosaic,radiometric,normalization,remote sensing,processing
category=Analysis
hasProcessingProvider=yes
experimental=False
deprecated=False
"""


def plugin_files() -> dict[str, bytes]:
    """Path inside the zip -> content."""
    here = Path(__file__).parent
    files = {
        f"{PLUGIN_FOLDER}/metadata.txt": metadata().encode(),
        f"{PLUGIN_FOLDER}/__init__.py": INIT.encode(),
    }
    for module in MODULES:
        files[f"{PLUGIN_FOLDER}/{module}.py"] = (here / f"{module}.py").read_bytes()
    return files


def build_plugin(path: str | os.PathLike) -> Path:
    """Write the plugin zip to ``path`` (atomically: complete or not at all).

    Parameters
    ----------
    path : str or path-like
        The zip to write; replaced if it exists.

    Returns
    -------
    Path
        ``path``.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in plugin_files().items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, content)
    return write_atomically(path, buffer.getvalue())
