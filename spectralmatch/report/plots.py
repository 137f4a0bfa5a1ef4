"""Figures with matplotlib (imported only when a plot is made)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from ..raster.collection import ImageCollection
from ..raster.files import atomic_path


def pyplot():
    """``matplotlib.pyplot`` drawing off screen (the Agg backend): no window ever opens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG at ``path`` (through a temporary file and a rename, so a
    failed or interrupted save leaves no partial file), close it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=dpi, format="png")
    finally:
        pyplot().close(figure)
    return path


def rgba_quicklook(values: np.ndarray, valid: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """``values`` (rows, cols, bands) stretched linearly between per-band ``limits``
    (:func:`stretch_limits`) to 0..1 (0.5 for a band whose limits are equal: a constant
    image), with an alpha channel that hides invalid pixels."""
    span = limits[:, 1] - limits[:, 0]
    scaled = np.divide(
        values - limits[:, 0], span, out=np.full(values.shape, 0.5), where=span > 0
    ).clip(0, 1)
    return np.dstack([np.nan_to_num(scaled), valid.astype(float)])


def composite(
    images, bands: Sequence[int] = (0, 1, 2), max_size: int = 800
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """A decimated mosaic of a collection on its union extent (later images on top).

    Returns
    -------
    values : float ndarray (rows, cols, len(bands)), NaN where no image is valid
    valid : bool ndarray (rows, cols)
    extent : (left, right, bottom, top) for ``imshow``
    """
    collection = ImageCollection.coerce(images)
    left, bottom, right, top = collection.bounds
    pixel = max(right - left, top - bottom) / max_size
    shape = (math.ceil((top - bottom) / pixel), math.ceil((right - left) / pixel))
    canvas = np.full((*shape, len(bands)), np.nan)
    for image in collection:
        b_left, b_bottom, b_right, b_top = image.bounds
        row0, col0 = round((top - b_top) / pixel), round((b_left - left) / pixel)
        rows = max(1, min(shape[0] - row0, round((b_top - b_bottom) / pixel)))
        cols = max(1, min(shape[1] - col0, round((b_right - b_left) / pixel)))
        indexes = [b + 1 for b in bands]
        with image.open() as dataset:
            values = dataset.read(
                indexes, out_shape=(len(bands), rows, cols), resampling=Resampling.nearest
            )
            valid = image.valid_mask(values, dataset, indexes=indexes).all(axis=0)
        target = canvas[row0 : row0 + rows, col0 : col0 + cols]
        target[valid] = np.moveaxis(values, 0, -1)[valid]
    return canvas, ~np.isnan(canvas).any(axis=-1), (left, right, bottom, top)


def stretch_limits(values: np.ndarray, percentiles: tuple[float, float] = (2, 98)) -> np.ndarray:
    """Per-band (low, high) percentiles of the finite values, shape (n_bands, 2)."""
    flat = values.reshape(-1, values.shape[-1])
    flat = flat[np.isfinite(flat).all(axis=1)]
    return np.percentile(flat, percentiles, axis=0).T


def plot_before_after(
    before,
    after,
    path: str | os.PathLike,
    bands: Sequence[int] = (0, 1, 2),
    titles: tuple[str, str] = ("Before", "After"),
    max_size: int = 800,
) -> Path:
    """Side-by-side quick-looks of two collections with one common colour stretch.

    The stretch comes from ``after``, so differences between the images of ``before``
    show as they are.
    """
    plt = pyplot()
    panels = [composite(images, bands, max_size) for images in (before, after)]
    limits = stretch_limits(panels[1][0])
    figure, axes = plt.subplots(1, 2, figsize=(10, 5.2), constrained_layout=True)
    for axis, (values, valid, extent), title in zip(axes, panels, titles, strict=True):
        rgba = rgba_quicklook(values, valid, limits)
        axis.imshow(rgba if len(bands) == 3 else rgba[..., 0], extent=extent)
        axis.set_title(title)
        axis.set_axis_off()
    return save_figure(figure, path)


def plot_masks(
    image,
    masks: dict[str, str | os.PathLike],
    path: str | os.PathLike,
    bands: Sequence[int] = (0, 1, 2),
    max_size: int = 800,
) -> Path:
    """The image, then the image under each mask: one panel per entry of ``masks``
    (title -> a mask raster on the image's grid, such as :func:`~spectralmatch.
    create_cloud_mask` or :func:`~spectralmatch.threshold_raster` write), its non-zero
    classes painted over the image in colour (class 1 red, 2 blue, 3 yellow) and its nodata
    left transparent."""
    from matplotlib.colors import ListedColormap

    plt = pyplot()

    values, valid, extent = composite([image], bands, max_size)
    limits = stretch_limits(values)
    picture = rgba_quicklook(values, valid, limits)
    colours = ListedColormap(
        [(0, 0, 0, 0), (0.9, 0.1, 0.1, 0.6), (0.1, 0.3, 0.9, 0.6), (1, 0.85, 0, 0.6)]
    )
    figure, axes = plt.subplots(
        1, len(masks) + 1, figsize=(4.6 * (len(masks) + 1), 4.8), constrained_layout=True
    )
    axes[0].imshow(picture, extent=extent)
    axes[0].set_title("Image")
    for axis, (title, mask_path) in zip(axes[1:], masks.items(), strict=True):
        classes, _, _ = composite([mask_path], (0,), max_size)
        axis.imshow(picture, extent=extent)
        axis.imshow(
            np.nan_to_num(classes[..., 0]).clip(0, 3),
            cmap=colours,
            vmin=0,
            vmax=3,
            extent=extent,
            interpolation="nearest",
        )
        axis.set_title(title)
    for axis in axes:
        axis.set_axis_off()
    return save_figure(figure, path)
