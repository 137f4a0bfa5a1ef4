"""An ordered set of images normalized together, and how users name them."""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

from attrs import define, evolve, field

from .._typing import Bounds, PathsLike
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.blocks import union_bounds
from ..masks.base import combine
from ..masks.convert import MaskLike, as_mask
from .image import Image

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


def resolve_paths(inputs: PathsLike, *, recursive: bool = True) -> list[Path]:
    """Raster paths from a folder, a glob pattern, a file, a ``(folder, pattern)`` pair,
    or a list of any of these.

    Folders give their raster files (``.tif``, ``.tiff``, ``.vrt``, ``.img``, ``.jp2``)
    in sorted order; globs are expanded and sorted, ``**`` reaching into subfolders when
    ``recursive``; a pair ``(folder, "*.tif")`` is the pattern inside that folder (its
    first item an existing folder, its second a relative glob pattern); order is
    otherwise kept.

    Raises
    ------
    SpectralMatchError
        When an entry matches nothing, or is neither a path nor such a pair.
    """
    if isinstance(inputs, (str, os.PathLike)) or is_folder_pattern(inputs):
        return _resolve_entry(inputs, recursive)
    return [path for entry in inputs for path in _resolve_entry(entry, recursive)]


def is_folder_pattern(entry: object) -> bool:
    """Whether ``entry`` is a ``(folder, pattern)`` pair: an existing folder and a relative
    glob pattern."""
    if not (isinstance(entry, tuple) and len(entry) == 2):
        return False
    folder, pattern = entry
    return (
        isinstance(folder, (str, os.PathLike))
        and os.path.isdir(folder)
        and isinstance(pattern, str)
        and glob.has_magic(pattern)
        and not os.path.isabs(pattern)
    )


def folder_pattern(folder: str | os.PathLike, pattern: str) -> str:
    """The glob pattern ``pattern`` inside ``folder`` (whose name is taken literally)."""
    return os.path.join(glob.escape(os.fspath(folder)), pattern)


def _resolve_entry(entry: object, recursive: bool) -> list[Path]:
    """The raster files one entry of :func:`resolve_paths` stands for."""
    if isinstance(entry, tuple) and is_folder_pattern(entry):
        text = folder_pattern(*entry)
    elif isinstance(entry, (str, os.PathLike)):
        text = os.fspath(entry)
    else:
        raise SpectralMatchError(
            f"{entry!r}: not a path, nor a (folder, pattern) pair such as ('data', '*.tif')"
        )
    if os.path.isdir(text):
        found = _files_only(
            p
            for p in Path(text).iterdir()
            if p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith(".")
        )
        if not found:
            raise SpectralMatchError(f"{text}: folder holds no raster files")
        return found
    if glob.has_magic(text):
        found = _files_only(Path(p) for p in glob.glob(text, recursive=recursive))
        if not found:
            raise SpectralMatchError(f"{text}: pattern matches no file")
        return found
    if os.path.exists(text):
        return [Path(text)]
    raise SpectralMatchError(f"{text}: no such file or folder")


def _files_only(paths: Iterable[Path]) -> list[Path]:
    """The files among ``paths``, sorted; a folder (named like a raster) is skipped with
    a warning."""
    files = []
    for path in sorted(paths):
        if path.is_dir():
            warnings.warn(f"{path}: skipped, a folder, not a raster", SpectralMatchWarning, 3)
        else:
            files.append(path)
    return files


def _as_images(images: Iterable[Image | str | os.PathLike]) -> list[Image]:
    return [image if isinstance(image, Image) else Image(image) for image in images]


@define(eq=False)
class ImageCollection:
    """Images that are normalized together: same band count, same CRS, unique names.

    Parameters
    ----------
    images : sequence of Image or paths
        Validated on construction (metadata only; no pixel is read).
    any_grid : bool, default False
        Accept images on any grid: in different CRSs, with other band counts, or with a
        rotated or sheared geotransform (only alignment, which puts them on one grid,
        takes such a collection).

    Raises
    ------
    SpectralMatchError
        Naming the file: unreadable, different band count, different CRS, duplicate name.

    Examples
    --------
    >>> collection = ImageCollection.from_paths("data/")
    >>> len(collection), collection.names[:2]
    (4, ['tile_00', 'tile_01'])
    """

    images: list[Image] = field(converter=_as_images)
    any_grid: bool = field(default=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.images:
            raise SpectralMatchError("no images given")
        validate_unique_names(self.images)
        if not self.any_grid:
            validate_compatible(self.images)
            for image in self.images:
                image.grid  # noqa: B018 - raises the one clear error for a rotated image

    @classmethod
    def from_paths(cls, inputs: PathsLike, mask: MaskLike = None) -> ImageCollection:
        """Collection of the rasters in a folder, a glob pattern, or a list of paths, each
        with ``mask`` (see :class:`Image`) left out of the fit."""
        return cls([Image(path, mask=mask) for path in resolve_paths(inputs)])

    def with_mask(self, mask: MaskLike) -> ImageCollection:
        """The same images, each also leaving out of the fit what ``mask`` excludes (on top
        of its own mask).

        Examples
        --------
        >>> from spectralmatch import CloudMask
        >>> clear = ImageCollection.from_paths("data/").with_mask(CloudMask())
        """
        extra = as_mask(mask)
        images = [evolve(image, mask=combine(image.mask, extra)) for image in self.images]
        return ImageCollection(images, any_grid=self.any_grid)

    @classmethod
    def coerce(
        cls, images: ImageCollection | Image | PathsLike, *, any_grid: bool = False
    ) -> ImageCollection:
        """Accept a collection, one image, or anything :func:`resolve_paths` takes."""
        if isinstance(images, ImageCollection):
            if any_grid == images.any_grid:
                return images
            return cls(images.images, any_grid=any_grid)
        if isinstance(images, Image):
            return cls([images], any_grid=any_grid)
        if isinstance(images, (str, os.PathLike)) or is_folder_pattern(images):
            return cls(resolve_paths(images), any_grid=any_grid)
        items = list(images)
        if all(isinstance(item, Image) for item in items):
            return cls(cast(list[Image], items), any_grid=any_grid)
        return cls(resolve_paths(items), any_grid=any_grid)

    @property
    def names(self) -> list[str]:
        return [image.name for image in self.images]

    @property
    def count(self) -> int:
        """Number of bands shared by every image."""
        return self.images[0].count

    @property
    def crs(self):
        return self.images[0].crs

    @property
    def bounds(self) -> Bounds:
        """Union of the images' bounds: (left, bottom, right, top)."""
        return union_bounds([image.bounds for image in self.images])

    def index(self, key: str | int | os.PathLike) -> int:
        """Position of an image given by name, index or path."""
        if isinstance(key, int):
            if not -len(self) <= key < len(self):
                raise SpectralMatchError(f"image index {key} out of range for {len(self)} images")
            return key % len(self)
        text = os.fspath(key)
        for position, image in enumerate(self.images):
            if text in (image.name, image.path.name) or _same_file(text, image.path):
                return position
        raise SpectralMatchError(f"{text}: not one of the images ({', '.join(self.names)})")

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Image]:
        return iter(self.images)

    def __getitem__(self, key: str | int) -> Image:
        return self.images[self.index(key)]


def validate_unique_names(images: Sequence[Image]) -> None:
    """Raise a clear error if two images have one name (their outputs would collide)."""
    seen: dict[str, Path] = {}
    for image in images:
        if image.name in seen:
            raise SpectralMatchError(
                f"{image.path}: duplicate image name {image.name!r} (also {seen[image.name]}); "
                "names are file stems and must be unique"
            )
        seen[image.name] = image.path


def validate_compatible(images: Sequence[Image]) -> None:
    """Raise a clear error unless the images can be normalized together."""
    first = images[0]
    for image in images:
        if image.count != first.count:
            raise SpectralMatchError(
                f"{image.path}: has {image.count} bands, {first.path} has {first.count}; "
                "all images need the same bands"
            )
        if image.crs != first.crs:
            raise SpectralMatchError(
                f"{image.path}: CRS {_crs_name(image.crs)} differs from {first.path} "
                f"({_crs_name(first.crs)}); reproject the images to one CRS first "
                "(spectralmatch align --dst-crs, or align_rasters(crs=...))"
            )


def _crs_name(crs) -> str:
    if crs is None:
        return "none"
    return crs.to_string() or "custom"


def _same_file(text: str, path: Path) -> bool:
    try:
        return os.path.exists(text) and os.path.samefile(text, path)
    except OSError:
        return False


#: What a function taking images accepts: a collection, one image, or paths.
ImagesLike = ImageCollection | Image | PathsLike
