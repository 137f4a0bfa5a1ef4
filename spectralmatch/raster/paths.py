"""Paths: finding inputs, naming outputs (one per input image, never an input itself), and
pairing files by name."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._typing import OutputsLike
from ..errors import SpectralMatchError
from .collection import ImageCollection, folder_pattern, resolve_paths

#: What stands for each input's name in an output template (``"out/$_Global.tif"``).
TEMPLATE_SYMBOLS = ("$", "*")


def output_arguments(collection: ImageCollection, output_images: OutputsLike) -> dict:
    """``out_dir`` or ``outputs`` for :func:`resolve_outputs` (and ``Mosaic.transform``)
    from what the function API takes: a folder (the outputs keep the input file names), a
    template where ``$`` or ``*`` stands for each image's name (``"out/$_Global.tif"``) or
    a ``(folder, template)`` pair, for one image the output file itself (a path with a
    suffix that is not a folder), or a list of one path per image.
    """
    if isinstance(output_images, (str, os.PathLike)):
        return _one_path_arguments(os.fspath(output_images), collection)
    if _is_folder_template(output_images):
        return _one_path_arguments(os.path.join(*output_images), collection)
    return {"outputs": list(output_images)}


def _one_path_arguments(text: str, collection: ImageCollection) -> dict:
    if any(symbol in text for symbol in TEMPLATE_SYMBOLS) or names_a_file(text):
        return {"outputs": _paths_from(text, collection)}
    return {"out_dir": text}


def resolve_outputs(
    collection: ImageCollection,
    out_dir: str | os.PathLike | None = None,
    outputs: Sequence[str | os.PathLike] | None = None,
) -> list[Path]:
    """Output paths: given one per image, or the input file names (as ``.tif``) in the
    folder ``out_dir``.

    Creates the output folders; refuses two images written to one path and paths that are
    inputs.
    """
    if (out_dir is None) == (outputs is None):
        raise SpectralMatchError("give either out_dir or outputs")
    if outputs is not None:
        paths = [_literal_path(p) for p in outputs]
        if len(paths) != len(collection):
            raise SpectralMatchError(f"{len(paths)} output paths for {len(collection)} images")
    else:
        assert out_dir is not None
        paths = [Path(out_dir) / image.path.with_suffix(".tif").name for image in collection]
    check_unique(paths, collection.names)
    inputs = InputFiles(image.path for image in collection)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        inputs.refuse(path)
    return paths


def _paths_from(text: str, collection: ImageCollection) -> list[Path]:
    """The output paths a template or a file name stands for."""
    if any(symbol in text for symbol in TEMPLATE_SYMBOLS):
        return fill_template(text, collection.names, TEMPLATE_SYMBOLS)
    if len(collection) > 1:
        raise SpectralMatchError(
            f"{text}: one output file for {len(collection)} images; give a folder, or a "
            f"template where $ stands for each image's name (such as "
            f"{Path(text).with_stem('$_' + Path(text).stem)})"
        )
    return [Path(text)]


def _literal_path(path: str | os.PathLike) -> Path:
    """One output path of a list, refused when it holds a template symbol."""
    if any(symbol in os.fspath(path) for symbol in TEMPLATE_SYMBOLS):
        raise SpectralMatchError(
            f"{path}: $ and * stand for each image's name in a template; give a template as "
            "one path (not in a list), or name each output in full"
        )
    return Path(path)


def _is_folder_template(entry: object) -> bool:
    """Whether ``entry`` is an output pair ``(folder, template)``."""
    return (
        isinstance(entry, tuple)
        and len(entry) == 2
        and isinstance(entry[0], (str, os.PathLike))
        and isinstance(entry[1], str)
        and any(symbol in entry[1] for symbol in TEMPLATE_SYMBOLS)
        and not os.path.isabs(entry[1])
    )


def names_a_file(text: str) -> bool:
    """Whether an output path names a file: it has a suffix and is not an existing folder."""
    return Path(text).suffix != "" and not os.path.isdir(text)


def fill_template(template: str, names: Sequence[str], symbols: Sequence[str]) -> list[Path]:
    """One path per name, each of ``symbols`` in ``template`` replaced by the name.

    Raises
    ------
    SpectralMatchError
        When the template's file name has no suffix (``"out/$"`` names no file type).
    """
    if Path(template).suffix == "":
        raise SpectralMatchError(
            f"{template}: a template names files; end it with a file name such as $.tif"
        )
    paths = []
    for name in names:
        text = template
        for symbol in symbols:
            text = text.replace(symbol, name)
        paths.append(Path(text))
    return paths


def check_unique(paths: Sequence[Path], names: Sequence[str]) -> None:
    """Refuse two inputs mapped to one output path."""
    first: dict[Path, str] = {}
    for path, name in zip(paths, names, strict=True):
        if path in first:
            raise SpectralMatchError(
                f"{path}: {first[path]} and {name} would be written to this same output path"
            )
        first[path] = name


class InputFiles:
    """The files a job reads, known by identity (device and inode, as
    :func:`os.path.samefile` compares them), so that no output is written over one of
    them: one ``stat`` per input once, then one per output, whatever their numbers.

    Paths that name no local file (GDAL's virtual paths, files not yet there) cannot be
    written over and have no identity.
    """

    def __init__(self, paths: Iterable[str | os.PathLike]) -> None:
        self._identities = {_identity(path) for path in paths} - {None}

    def refuse(self, output: Path) -> None:
        """Raise if ``output`` is one of the inputs (under any name)."""
        if _identity(output) in self._identities:
            raise SpectralMatchError(
                f"{output}: is an input image; refusing to overwrite it "
                "(choose another output folder)"
            )


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def search_paths(
    search_pattern: str | os.PathLike,
    *,
    default_file_pattern: str | None = None,
    recursive: bool = False,
    match_to_paths: tuple[Sequence[str], str] | None = None,
    debug_logs: bool = False,
) -> list[str] | list[str | None]:
    """Files found from a glob pattern or a folder.

    Parameters
    ----------
    search_pattern : path
        A glob pattern (``"data/*.tif"``), a folder, or a file.
    default_file_pattern : str, optional
        The pattern to search inside ``search_pattern`` when it is a folder (``"*.tif"``);
        without it a folder gives its raster files (``.tif``, ``.tiff``, ``.vrt``,
        ``.img``, ``.jp2``).
    recursive : bool, default False
        Let ``**`` in a pattern reach into subfolders at any depth.
    match_to_paths : (reference_paths, match_regex), optional
        Pair the files found with ``reference_paths`` through :func:`match_paths`, and
        return its result (one entry per reference, None where nothing matched).
    debug_logs : bool, default False
        Print how many files were found.

    Returns
    -------
    list of str
        The files found, sorted (a folder's or a pattern's).

    Raises
    ------
    SpectralMatchError
        When nothing matches, naming the folder or the pattern.

    Examples
    --------
    >>> search_paths("data/tile_0[12].tif")
    ['data/tile_01.tif', 'data/tile_02.tif']
    >>> len(search_paths("data", default_file_pattern="*.tif"))
    4
    """
    text = os.fspath(search_pattern)
    if default_file_pattern is not None and os.path.isdir(text):
        text = folder_pattern(text, default_file_pattern)
    found = [str(path) for path in resolve_paths(text, recursive=recursive)]
    if debug_logs:
        print(f"Found {len(found)} file(s) from {text}")
    if match_to_paths is not None:
        return match_paths(found, *match_to_paths, debug_logs=debug_logs)
    return found


def create_paths(
    template_pattern: str | os.PathLike,
    paths_or_bases: Sequence[str | os.PathLike],
    *,
    default_file_pattern: str | None = None,
    debug_logs: bool = False,
    replace_symbol: str = "$",
    create_folders: bool = True,
) -> list[str]:
    """One output path per input, from a template where ``$`` stands for the input's name.

    Parameters
    ----------
    template_pattern : path
        A template (``"out/$_Global.tif"``), or a folder, which takes
        ``default_file_pattern`` as its template.
    paths_or_bases : list of paths or names
        The inputs; each one's name is its file name without the suffix.
    default_file_pattern : str, optional
        The template inside a folder (``"$_Global.tif"``); without it, ``"$.tif"``: the
        outputs keep the input names.
    debug_logs : bool, default False
        Print the paths created.
    replace_symbol : str, default "$"
        What stands for each input's name in the template.
    create_folders : bool, default True
        Create the folders of the paths.

    Returns
    -------
    list of str
        One path per input, in order.

    Raises
    ------
    SpectralMatchError
        When two inputs would get the same path (a template without the symbol, or two
        inputs with one name), or the template names no file type (``"out/$"``).

    Examples
    --------
    >>> create_paths("out/$_Global.tif", ["data/tile_00.tif", "data/tile_01.tif"],
    ...              create_folders=False)
    ['out/tile_00_Global.tif', 'out/tile_01_Global.tif']
    >>> create_paths("out", ["tile_00", "tile_01"], create_folders=False)
    ['out/tile_00.tif', 'out/tile_01.tif']
    """
    text = os.fspath(template_pattern)
    if replace_symbol not in text and not names_a_file(text):
        text = os.path.join(text, default_file_pattern or f"{replace_symbol}.tif")
    names = [Path(ref).stem for ref in paths_or_bases]
    paths = fill_template(text, names, [replace_symbol])
    check_unique(paths, [os.fspath(ref) for ref in paths_or_bases])
    if create_folders:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
    if debug_logs:
        print(f"Created {len(paths)} path(s): {', '.join(map(str, paths))}")
    return [str(path) for path in paths]


def match_paths(
    input_match_paths: Sequence[str | os.PathLike],
    reference_paths: Sequence[str | os.PathLike],
    match_regex: str,
    debug_logs: bool = False,
) -> list[str | None]:
    """For each reference, the input whose key (taken from its file name) it contains.

    ``match_regex`` is searched in the file name of each of ``input_match_paths``; its
    first group (or the whole match) is that file's key. A reference is paired with the
    input whose key appears in the reference's file name; when several do, the longest
    key wins (``tile_10`` before ``tile_1``).

    Parameters
    ----------
    input_match_paths : list of paths
        The files to pair with the references; those the regex does not match are left
        out.
    reference_paths : list of paths
        The files to pair them with, in the order of the result.
    match_regex : str
        A regular expression, such as ``r"(.*)_Mask\\.gpkg$"``.
    debug_logs : bool, default False
        Print each pairing.

    Returns
    -------
    list of str or None
        One entry per reference: its input, or None when no key appears in its name.

    Raises
    ------
    SpectralMatchError
        When two inputs give the same key, or a key is empty (it would match every name).

    Examples
    --------
    >>> match_paths(["masks/tile_01_Mask.gpkg", "masks/tile_00_Mask.gpkg"],
    ...             ["data/tile_00.tif", "data/tile_01.tif", "data/tile_02.tif"],
    ...             r"(.*)_Mask\\.gpkg$")
    ['masks/tile_00_Mask.gpkg', 'masks/tile_01_Mask.gpkg', None]
    """
    keys = _keys(input_match_paths, re.compile(match_regex))
    matched: list[str | None] = []
    for reference in reference_paths:
        name = os.path.basename(reference)
        found = [key for key in keys if key in name]
        matched.append(keys[max(found, key=len)] if found else None)
        if debug_logs:
            print(f"{reference} <- {matched[-1]}")
    return matched


def _keys(paths: Sequence[str | os.PathLike], regex: re.Pattern[str]) -> dict[str, str]:
    """The key the regex takes from each file name, and its path."""
    keys: dict[str, str] = {}
    for path in (os.fspath(p) for p in paths):
        found = regex.search(os.path.basename(path))
        if found is None:
            continue
        key = found.group(1) if found.groups() else found.group(0)
        if not key:
            raise SpectralMatchError(f"{path}: match_regex {regex.pattern!r} gives an empty key")
        if key in keys:
            raise SpectralMatchError(
                f"{path}: gives the key {key!r}, as {keys[key]} does; "
                "a reference could be paired with either"
            )
        keys[key] = path
    return keys
