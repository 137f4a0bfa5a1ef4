"""The function API: one call per step of the published folder-to-folder workflow.

Each function is a thin wrapper over the classes: inputs and outputs may be a folder,
a glob pattern or a list of paths, and outputs keep the input file names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ._typing import Correction, OutputsLike
from .errors import SpectralMatchError
from .model.block_map import BlockMap
from .model.global_model import GlobalModel
from .model.pipeline import Mosaic
from .raster.collection import ImageCollection, ImagesLike
from .raster.image import DEFAULT_WINDOW_SIZE
from .raster.paths import output_arguments


def model_references(
    specify_model_images: tuple[str, Sequence[str]] | None, names: list[str]
) -> list[str] | None:
    """Reference names from ``("include" | "exclude", names)``."""
    if specify_model_images is None:
        return None
    mode, listed = specify_model_images
    listed = [Path(name).stem for name in listed]
    if mode == "include":
        return listed
    if mode == "exclude":
        return [name for name in names if name not in listed]
    raise SpectralMatchError(
        f"specify_model_images mode must be 'include' or 'exclude', got {mode!r}"
    )


def global_regression(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    reference_images: Sequence[str | int] | None = None,
    specify_model_images: tuple[str, Sequence[str]] | None = None,
    weight_by_overlap: bool = True,
    custom_mean_factor: float = 1.0,
    custom_std_factor: float = 1.0,
    robust: bool = False,
    window_size: int = DEFAULT_WINDOW_SIZE,
    threads: int | None = None,
    save_as_cog: bool = False,
    save_model: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[str]:
    """Match images with one gain and offset per image and band (global model).

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    output_images : folder, pattern with ``*`` or list of paths
    reference_images : names or positions, optional
        Images held fixed; the rest are matched to them. Default: all images together.
    specify_model_images : ("include" | "exclude", list of names), optional
        Another way to give the reference images (the published package's form).
    weight_by_overlap : bool
        Weight each overlap by its pixel count.
    custom_mean_factor, custom_std_factor : float
        Weights of the mean and standard-deviation equations.
    robust : bool
        Down-weight overlaps that disagree with the rest (robust IRLS).
    window_size, threads, save_as_cog, progress
        Passed to :class:`Mosaic`.
    save_model : path, optional
        Save the fitted model as JSON there.

    Returns
    -------
    list of str
        The output paths.

    Examples
    --------
    >>> import tempfile
    >>> outputs = global_regression("data/", tempfile.mkdtemp())
    >>> [Path(path).name for path in outputs][:2]
    ['tile_00.tif', 'tile_01.tif']
    """
    collection = ImageCollection.coerce(input_images)
    if reference_images is None:
        reference_images = model_references(specify_model_images, collection.names)
    step = GlobalModel(
        reference=reference_images,
        weight_by_overlap=weight_by_overlap,
        mean_weight=custom_mean_factor,
        std_weight=custom_std_factor,
        robust=robust,
    )
    return _fit_transform(
        step, collection, output_images, window_size, threads, save_as_cog, save_model, progress
    )[1]


def local_block_adjustment(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    block_size: int | None = None,
    number_of_blocks: int | None = None,
    correction_method: Correction = "wallis",
    min_pixels: int = 100,
    smoothing: float = 0.0,
    reference_images: Sequence[str | int] | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    threads: int | None = None,
    save_as_cog: bool = False,
    save_model: str | os.PathLike | None = None,
    save_block_maps: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[str]:
    """Remove brightness that varies inside the images with a local block adjustment.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
        Usually the outputs of :func:`global_regression`.
    output_images : folder, pattern with ``*`` or list of paths
    block_size, number_of_blocks : int, optional
        Block side in pixels, or blocks along the longer side (see :class:`BlockMap`).
    correction_method : {"wallis", "offset", "gain", "gamma"}
    min_pixels, smoothing, reference_images
        See :class:`BlockMap`.
    window_size, threads, save_as_cog, progress
        Passed to :class:`Mosaic`.
    save_model : path, optional
        Save the fitted model (JSON and an ``.npz`` sidecar) there.
    save_block_maps : folder, optional
        Write the block surfaces there as GeoTIFFs (:meth:`BlockMap.to_rasters`).

    Returns
    -------
    list of str
        The output paths.

    Examples
    --------
    >>> import tempfile
    >>> outputs = local_block_adjustment("data/", tempfile.mkdtemp(), block_size=64)
    >>> len(outputs)
    4
    """
    collection = ImageCollection.coerce(input_images)
    step = BlockMap(
        block_size=block_size,
        n_blocks=number_of_blocks,
        correction=correction_method,
        min_pixels=min_pixels,
        smoothing=smoothing,
        reference=reference_images,
    )
    model, written = _fit_transform(
        step, collection, output_images, window_size, threads, save_as_cog, save_model, progress
    )
    fitted = model.steps_[0]
    if save_block_maps is not None and isinstance(fitted, BlockMap):
        fitted.to_rasters(save_block_maps)
    return written


def _fit_transform(
    step, collection, output_images, window_size, threads, cog, save_model, progress
) -> tuple[Mosaic, list[str]]:
    model = Mosaic(steps=[step], window_size=window_size, threads=threads, progress=progress)
    model.fit(collection)
    if save_model is not None:
        model.save(save_model)
    written = model.transform(collection, cog=cog, **output_arguments(collection, output_images))
    return model, [str(image.path) for image in written]
