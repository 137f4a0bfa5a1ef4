"""Vector files: written atomically, and merged (features kept, pooled or intersected)."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from .._validation import Options, check
from ..engine.published import takes_engine_keywords
from ..errors import SpectralMatchError
from ..masks.vector import read_layer
from ..raster.files import TEMPORARY_PREFIX

MergeMethod = Literal["intersection", "union", "keep"]
MERGE_METHODS: tuple[MergeMethod, ...] = ("intersection", "union", "keep")


def write_frame(
    path: str | os.PathLike, frame: Any, layer: str | None = None, what: str = "vectors"
) -> Path:
    """Write a GeoDataFrame to ``path`` (format by extension) as ``layer`` (default: the
    file stem), atomically: a failure leaves ``path`` as it was.

    Raises
    ------
    SpectralMatchError
        If the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, lambda temporary: frame.to_file(temporary, layer=layer or path.stem))
    except Exception as error:  # noqa: BLE001 - any writer failure names the file
        raise SpectralMatchError(f"{path}: cannot write {what} ({error})") from error
    return path


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write`` on a temporary name beside ``path`` (same extension), then rename
    what it wrote (with any companion files, e.g. a shapefile's) onto ``path``.

    On any error the temporary files are removed and ``path`` is left as it was. The
    files are created by ``write``, so they get the permissions the umask gives.
    """
    stem = f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}"  # removed by the next run if killed
    temporary = path.with_name(stem + path.suffix)
    try:
        write(temporary)
        for file in sorted(_named(path.parent, stem), key=lambda file: file == temporary):
            os.replace(file, path.with_name(path.stem + file.name[len(stem) :]))  # main last
    finally:
        for file in _named(path.parent, stem):
            if file.is_dir():  # a driver that writes a folder (e.g. shapefiles)
                shutil.rmtree(file)
            else:
                file.unlink()


def reusable_vector(path: str | os.PathLike, mode: str) -> bool:
    """Whether a resumed run keeps the vector file at ``path``: never with ``mode``
    ``"no"``; if it exists with ``"yes"``; if it exists and reads as a layer with at least
    one feature with ``"validate"``."""
    if mode == "no" or not Path(path).is_file():
        return False
    if mode == "yes":
        return True
    try:
        return len(read_layer(path)) > 0
    except SpectralMatchError:
        return False


def _named(folder: Path, stem: str) -> list[Path]:
    """The files of ``folder`` named ``stem`` plus an extension."""
    return [file for file in folder.iterdir() if file.name.startswith(f"{stem}.")]


@takes_engine_keywords
def merge_vectors(
    input_vectors: str | os.PathLike | Sequence[str | os.PathLike],
    merged_vector_path: str | os.PathLike,
    method: MergeMethod,
    *,
    create_name_attribute: tuple[str, str] | None = None,
) -> str:
    """Merge vector files into one layer.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``,
    ``resume_from_outputs``): see :func:`~spectralmatch.engine.published.takes_engine_keywords`.

    Parameters
    ----------
    input_vectors : folder, glob pattern or list of paths
        A folder means its ``*.gpkg`` files.
    merged_vector_path : path
        The file to write (format by extension), atomically.
    method : {"keep", "union", "intersection"}
        ``"keep"``: every feature of every file, each with its attributes. ``"union"``:
        the same features pooled into one layer (not dissolved), as the published
        package does. ``"intersection"``: the areas every file covers, with the
        attributes of the features that overlap there (the first file's where two files
        share a field name).
    create_name_attribute : (field, separator), optional
        Add ``field``: with ``"keep"`` the stem of the file each feature comes from; with
        ``"union"`` and ``"intersection"`` the stems of all files joined by ``separator``.

    Returns
    -------
    str
        ``merged_vector_path``.

    Raises
    ------
    SpectralMatchError
        For a bad method or name attribute, no input files, an unreadable file, or an
        intersection with no area.
    """
    check("merge_vectors", "method", method, Options(MERGE_METHODS))
    _check_name_attribute(create_name_attribute)
    paths = _vector_paths(input_vectors)
    frames = [read_layer(path, "vectors") for path in paths]
    crs = next((frame.crs for frame in frames if frame.crs is not None), None)
    frames = [_in_crs(frame, crs) for frame in frames]
    if create_name_attribute is not None and method == "keep":
        frames = [
            frame.assign(**{create_name_attribute[0]: path.stem})
            for frame, path in zip(frames, paths, strict=True)
        ]
    merged = _intersection(frames) if method == "intersection" else _pooled(frames, crs)
    if merged.empty:
        raise SpectralMatchError(
            f"merge_vectors: the {method} of {', '.join(p.name for p in paths)} has no feature"
        )
    if create_name_attribute is not None and method != "keep":
        field, separator = create_name_attribute
        merged[field] = separator.join(path.stem for path in paths)
    return str(write_frame(merged_vector_path, merged))


def _check_name_attribute(value: Any) -> None:
    if value is not None and not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(part, str) for part in value)
        and value[0]
    ):
        raise SpectralMatchError(
            "merge_vectors: create_name_attribute must be (field, separator), "
            f"two strings with a field name, got {value!r}"
        )


def _vector_paths(input_vectors: Any) -> list[Path]:
    """The files ``input_vectors`` names: a list, a folder's ``*.gpkg``, a glob pattern."""
    if isinstance(input_vectors, (str, os.PathLike)):
        text = str(input_vectors)
        if Path(text).is_dir():
            paths = sorted(Path(text).glob("*.gpkg"))
        elif glob.has_magic(text):
            paths = [Path(p) for p in sorted(glob.glob(text))]
        else:
            paths = [Path(text)]
    else:
        paths = [Path(path) for path in input_vectors]
    if not paths:
        raise SpectralMatchError(f"merge_vectors: no vector file in input_vectors {input_vectors}")
    return paths


def _in_crs(frame: Any, crs: Any) -> Any:
    """``frame`` reprojected to ``crs`` where both have one."""
    if crs is None or frame.crs is None or frame.crs == crs:
        return frame
    return frame.to_crs(crs)


def _pooled(frames: list[Any], crs: Any) -> Any:
    """Every feature of ``frames`` in one GeoDataFrame."""
    import geopandas
    import pandas

    return geopandas.GeoDataFrame(pandas.concat(frames, ignore_index=True), crs=crs)


def _intersection(frames: list[Any]) -> Any:
    """The areas every frame covers, with the attributes of the features there."""
    import geopandas

    merged = frames[0]
    for frame in frames[1:]:
        shared = set(merged.columns) & set(frame.columns) - {frame.geometry.name}
        merged = geopandas.overlay(
            merged, frame.drop(columns=list(shared)), how="intersection", keep_geom_type=True
        )
    return merged
