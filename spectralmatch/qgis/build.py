"""Build the installable QGIS plugin zip from the modules of this package.

Runs without QGIS. The zip holds one folder, ``spectralmatch_qgis`` (a name apart from
the library's, so that the plugins folder on ``sys.path`` does not hide the library):
``metadata.txt``, an ``__init__.py`` with ``classFactory``, and the provider and
algorithm modules, which import each other relatively and the library only when an
algorithm runs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

from .._version import __version__
from ..raster.files import write_atomically

#: The plugin's folder inside the zip (and in QGIS's plugins folder).
PLUGIN_FOLDER = "spectralmatch_qgis"
#: The modules of this package that make the plugin.
MODULES = ["plugin", "provider", "install", "algorithms", "running", "matching", "mosaic"]
MODULES += ["masks"]
#: The folder inside the plugin that holds the library's wheel, when one is bundled.
WHEELS = "wheels"
#: The WHEEL file of the library's wheel (pure Python).
WHEEL = """Wheel-Version: 1.0
Generator: spectralmatch qgis-plugin
Root-Is-Purelib: true
Tag: py3-none-any
"""
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


def plugin_files(wheel: Path | None = None) -> dict[str, bytes]:
    """Path inside the zip -> content; with ``wheel``, the library's wheel among them."""
    here = Path(__file__).parent
    files = {
        f"{PLUGIN_FOLDER}/metadata.txt": metadata().encode(),
        f"{PLUGIN_FOLDER}/__init__.py": INIT.encode(),
    }
    for module in MODULES:
        files[f"{PLUGIN_FOLDER}/{module}.py"] = (here / f"{module}.py").read_bytes()
    if wheel is not None:
        files[f"{PLUGIN_FOLDER}/{WHEELS}/{wheel.name}"] = wheel.read_bytes()
    return files


def library_wheel(folder: Path) -> Path:
    """A wheel of this library as installed (pure Python: its modules, ``py.typed`` and
    its metadata), written into ``folder`` without pip or the network."""
    from importlib.metadata import distribution

    package = Path(__file__).resolve().parents[1]
    files = {
        f"spectralmatch/{path.relative_to(package).as_posix()}": path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.suffix == ".py" or path.name == "py.typed"
    }
    installed = distribution("spectralmatch")  # a .dist-info, or an .egg-info in a checkout
    info = f"spectralmatch-{__version__}.dist-info"
    files[f"{info}/METADATA"] = str(installed.metadata).encode()  # the email-style text
    entry_points = installed.read_text("entry_points.txt")
    if entry_points is not None:
        files[f"{info}/entry_points.txt"] = entry_points.encode()
    files[f"{info}/WHEEL"] = WHEEL.encode()
    files[f"{info}/RECORD"] = _record(files, f"{info}/RECORD").encode()
    return _write_zip(folder / f"spectralmatch-{__version__}-py3-none-any.whl", files)


def _record(files: dict[str, bytes], record: str) -> str:
    """A wheel's RECORD: each file's sha256 and size, and the RECORD itself."""
    lines = []
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        lines.append(f"{name},sha256={digest.decode()},{len(content)}")
    return "\n".join([*lines, f"{record},,"]) + "\n"


def build_plugin(path: str | os.PathLike, wheel: str | os.PathLike | None = None) -> Path:
    """Write the plugin zip to ``path`` (atomically: complete or not at all).

    The zip carries a wheel of the library, which the plugin's install algorithm
    installs by default: ``wheel``, or one made of this library as installed.

    Parameters
    ----------
    path : str or path-like
        The zip to write; replaced if it exists.
    wheel : str or path-like, optional
        A wheel of the library to carry.

    Returns
    -------
    Path
        ``path``.
    """
    with tempfile.TemporaryDirectory() as scratch:
        carried = Path(wheel) if wheel is not None else library_wheel(Path(scratch))
        files = plugin_files(carried)
    return _write_zip(Path(path), files)


def _write_zip(path: Path, files: dict[str, bytes]) -> Path:
    """``files`` (name -> content) as a zip at ``path``, atomically, with fixed dates
    (the same files give the same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, content)
    return write_atomically(path, buffer.getvalue())
