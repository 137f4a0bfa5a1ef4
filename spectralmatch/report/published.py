"""The published package's comparison figures, on this package's statistics and plots."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from rasterio.enums import MaskFlags, Resampling

from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.grid import PixelGrid
from ..raster.image import Image
from .figures import profile_figure
from .plots import composite, pyplot, rgba_quicklook, save_figure, stretch_limits

WarpResampling = Literal["nearest", "bilinear", "cubic", "lanczos"]
#: Longest side, in cells, of the grid a difference map is drawn on.
DIFFERENCE_SIZE = 1600


def compare_image_spectral_profiles_pairs(
    image_groups_dict: Mapping[str, Sequence[str | os.PathLike]],
    output_figure_path: str | os.PathLike,
    title: str,
    xlabel: str,
    ylabel: str,
    line_width: float = 1,
    estimate_stats: bool = True,
) -> Path:
    """Plot the mean spectral profile of images before and after processing.

    Parameters
    ----------
    image_groups_dict : mapping of label -> (before path, after path)
        One colour per label; the before profile is dashed, the after profile solid.
    output_figure_path : path of the PNG to write
    title, xlabel, ylabel : str
        Texts of the figure.
    line_width : float, default 1
    estimate_stats : bool, default True
        Accepted for compatibility: the means are always exact (every valid pixel, read
        window by window).

    Returns
    -------
    Path of the figure.

    Raises
    ------
    SpectralMatchError
        When a label does not give exactly two images.
    """
    for label, group in image_groups_dict.items():
        if len(group) != 2:
            raise SpectralMatchError(
                f"image_groups_dict[{label!r}]: give two images (before, after), not {len(group)}"
            )
    before = [Image(group[0], name=label) for label, group in image_groups_dict.items()]
    after = [Image(group[1], name=label) for label, group in image_groups_dict.items()]
    figure = profile_figure(before, after, title)
    axis = figure.axes[0]
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    for line in axis.lines:
        line.set_linewidth(line_width)
    return save_figure(figure, output_figure_path)


def spectral_difference_band_average(
    before: str | os.PathLike,
    after: str | os.PathLike,
    resampling_method: WarpResampling = "bilinear",
    max_size: int | None = DIFFERENCE_SIZE,
) -> np.ndarray:
    """The signed difference ``after - before`` averaged over bands, on the grid of
    ``before`` (decimated to at most ``max_size`` cells along its longer side; None for
    full resolution).

    ``after`` is warped onto that grid (any CRS, resolution or extent) with
    ``resampling_method``. A cell holds a number only where both images are valid in
    every band (nodata, internal masks and non-finite values are honoured); NaN elsewhere.

    Raises
    ------
    SpectralMatchError
        When either image has no georeferencing, their band counts differ, or no cell is
        valid in both.
    """
    first, second = Image(before), Image(after)
    for image in (first, second):
        if image.crs is None or image.transform.is_identity:
            raise SpectralMatchError(
                f"{image.path}: has no CRS and affine geotransform; a difference of "
                "places needs both"
            )
    if first.count != second.count:
        raise SpectralMatchError(
            f"{second.path}: {second.count} bands, but {first.path} has {first.count}: "
            "the images must have the same number of bands"
        )
    factor = 1 if max_size is None else max(1, math.ceil(max(first.shape) / max_size))
    shape = (math.ceil(first.height / factor), math.ceil(first.width / factor))
    # the file's own transform: also a rotated grid (``Image.grid`` accepts north-up only)
    grid = PixelGrid(first.transform, first.width, first.height).resampled(shape)
    with first.open() as dataset:
        values = dataset.read(out_shape=(first.count, *shape), resampling=Resampling.nearest)
        valid = first.valid_mask(values, dataset).all(axis=0)
        valid &= (dataset.read_masks(out_shape=values.shape) > 0).all(axis=0)
    warped, warped_valid = _warped(second, first.crs, grid, resampling_method)
    valid &= warped_valid
    if not valid.any():
        raise SpectralMatchError(
            f"{first.path} and {second.path}: no overlapping pixels valid in both images "
            "in every band"
        )
    difference = (warped - values.astype(np.float64)).mean(axis=0)
    return np.where(valid, difference, np.nan)


def _warped(image: Image, crs, grid, resampling_method: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``image`` warped onto ``grid`` (in ``crs``) and where they are valid in
    every band."""
    from rasterio.vrt import WarpedVRT

    with image.open() as dataset:
        if image.nodata is not None and MaskFlags.per_dataset in dataset.mask_flag_enums[0]:
            warnings.warn(
                f"{image.path}: has both a nodata value and an internal mask; only the "
                "nodata value marks its invalid pixels in the difference",
                SpectralMatchWarning,
                stacklevel=3,
            )
        warped = WarpedVRT(
            dataset,
            crs=crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling[resampling_method],
            nodata=image.nodata,
            add_alpha=True,
        )
        with warped:
            bands = list(range(1, image.count + 1))
            values = warped.read(bands).astype(np.float64)
            # the alpha band: where the source was valid (its nodata, or its mask)
            valid = warped.read(warped.count) > 0
    if image.nodata is not None:  # per band (the alpha band is one for all bands)
        valid &= (values != image.nodata).all(axis=0)
    return values, valid & np.isfinite(values).all(axis=0)


def compare_spatial_spectral_difference_band_average(
    input_images: Sequence[str | os.PathLike],
    output_figure_path: str | os.PathLike,
    title: str,
    diff_label: str,
    subtitle: str,
    scale: tuple[float, float] | None = None,
    *,
    resampling_method: WarpResampling = "bilinear",
) -> Path:
    """Map where two images differ: :func:`spectral_difference_band_average` of
    ``[before, after]`` on a colour scale centred on 0.

    Parameters
    ----------
    input_images : [before, after]
        Two georeferenced rasters with the same number of bands; the first gives the grid.
    output_figure_path : path of the PNG to write
    title, diff_label, subtitle : str
        Figure title, colour bar label, and text below the map.
    scale : (vmin, vmax), optional
        Fixes the colour scale (the larger magnitude of the two, both sides of 0).
        Default: the data's range.
    resampling_method : {"nearest", "bilinear", "cubic", "lanczos"}, default "bilinear"
        How the second image is warped onto the first one's grid.

    Returns
    -------
    Path of the figure.
    """
    if len(input_images) != 2:
        raise SpectralMatchError(
            f"input_images: give two images (before, after), not {len(input_images)}"
        )
    if resampling_method not in get_args(WarpResampling):
        raise SpectralMatchError(
            f"resampling_method={resampling_method!r}: use nearest, bilinear, cubic or lanczos"
        )
    before, after = input_images
    difference = spectral_difference_band_average(before, after, resampling_method)
    low, high = scale if scale is not None else (np.nanmin(difference), np.nanmax(difference))
    limit = max(abs(low), abs(high), 1e-12)
    figure, axis = pyplot().subplots(figsize=(8, 6), constrained_layout=True)
    picture = axis.imshow(difference, cmap="coolwarm", vmin=-limit, vmax=limit)
    figure.colorbar(picture, ax=axis, label=diff_label)
    axis.set_title(title)
    if subtitle:
        axis.text(0.5, -0.06, subtitle, ha="center", transform=axis.transAxes)
    axis.set_axis_off()
    return save_figure(figure, output_figure_path)


def compare_before_after_all_images(
    input_images_1: Sequence[str | os.PathLike],
    input_images_2: Sequence[str | os.PathLike],
    output_figure_path: str | os.PathLike,
    title: str,
    ylabel_1: str,
    ylabel_2: str,
    image_names: Sequence[str] | None = None,
) -> Path:
    """Quick-looks of images before (top row) and after (bottom row), one column per pair.

    Each row has one percentile stretch (2 to 98 %) over all its images, so differences
    between the images of a row show as they are. Rasters of three or more bands show
    their first three as RGB, others their first band in grey; nodata is transparent.

    Parameters
    ----------
    input_images_1, input_images_2 : sequences of paths of the same length
    output_figure_path : path of the PNG to write
    title, ylabel_1, ylabel_2 : str
        Figure title and the labels of the two rows.
    image_names : sequence of str, optional
        Column titles, one per pair.

    Returns
    -------
    Path of the figure.
    """
    if len(input_images_1) != len(input_images_2):
        raise SpectralMatchError(
            f"input_images_1 has {len(input_images_1)} images but input_images_2 has "
            f"{len(input_images_2)}: give one after image per before image"
        )
    if image_names is not None and len(image_names) != len(input_images_1):
        raise SpectralMatchError(
            f"image_names has {len(image_names)} names for {len(input_images_1)} image pairs"
        )
    rows = [_quicklook_row(images) for images in (input_images_1, input_images_2)]
    columns = len(input_images_1)
    figure, axes = pyplot().subplots(
        2, columns, figsize=(4 * columns, 8.4), constrained_layout=True, squeeze=False
    )
    for row, (pictures, label) in enumerate(zip(rows, (ylabel_1, ylabel_2), strict=True)):
        for column, (picture, extent) in enumerate(pictures):
            axis = axes[row, column]
            axis.imshow(picture, extent=extent)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0 and image_names is not None:
                axis.set_title(image_names[column])
        axes[row, 0].set_ylabel(label, fontsize="large")
    figure.suptitle(title)
    return save_figure(figure, output_figure_path)


def _quicklook_row(paths: Sequence[str | os.PathLike]) -> list[tuple[np.ndarray, tuple]]:
    """RGBA quick-looks of ``paths`` with one stretch for all of them."""
    images = [Image(path) for path in paths]
    panels = [
        composite([image], (0, 1, 2) if image.count >= 3 else (0, 0, 0), max_size=600)
        for image in images
    ]
    stacked = np.concatenate([values.reshape(-1, 3) for values, _, _ in panels])
    limits = stretch_limits(stacked[None])
    return [(rgba_quicklook(values, valid, limits), extent) for values, valid, extent in panels]
