"""Figures of a normalization: profiles, histograms, the overlap graph, block surfaces and
where images still disagree.

Each ``*_figure`` function returns a matplotlib figure (its lines and images hold the
plotted numbers); each ``plot_*`` function draws the same figure off screen, writes it as
a PNG at the given path and returns the path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from ..geo.overlap import OverlapGraph
from ..model.base import check_is_fitted
from ..raster.collection import ImageCollection
from ..raster.image import Image
from ..stats.histogram import Histogram
from .metrics import overlap_differences
from .plots import pyplot, save_figure

#: Bins per band of the histograms drawn (coarser lattices merge exactly).
PLOT_BINS = 256
#: Line styles of the two states.
STYLES: dict[str, Literal["--", "-"]] = {"before": "--", "after": "-"}
#: Up to this many images, the figures name each image (legend entries, labels on the
#: maps); beyond, the names would cover the data, and only the states are named.
NAMED_IMAGES = 12


def paired(before, after) -> tuple[ImageCollection, ImageCollection]:
    """The two collections, checked to hold the same number of images and bands (the
    images of ``after`` are the images of ``before`` corrected, in the same order)."""
    before, after = ImageCollection.coerce(before), ImageCollection.coerce(after)
    if len(before) != len(after):
        raise SpectralMatchError(
            f"{len(before)} images before ({before.images[0].path.parent}) but {len(after)} "
            f"after ({after.images[0].path.parent}): give the same images before and after"
        )
    for first, second in zip(before, after, strict=True):
        if first.count != second.count:
            raise SpectralMatchError(
                f"{second.path}: {second.count} bands, but {first.path} has {first.count}"
            )
    return before, after


def band_names(image: Image) -> list[str]:
    """The image's band descriptions, or "band 1", "band 2", ... where they are missing."""
    return [text or f"band {band}" for band, text in enumerate(image.descriptions, start=1)]


def _label_map_axes(axis) -> None:
    axis.set_xlabel("x (CRS units)")
    axis.set_ylabel("y (CRS units)")
    axis.ticklabel_format(useOffset=False, style="plain")
    axis.tick_params(axis="x", labelrotation=30)


def _colour(index: int):
    return pyplot().get_cmap("tab10")(index % 10)


# ---------------------------------------------------------------------- spectral profiles


def profile_figure(before, after, title: str = "Mean spectral profiles"):
    """One line per image: its mean per band (from :meth:`Image.statistics`, read window by
    window), dashed before and solid after, one colour per image."""
    before, after = paired(before, after)
    figure, axis = pyplot().subplots(figsize=(8, 5), constrained_layout=True)
    bands = np.arange(1, before.images[0].count + 1)
    for index, pair in enumerate(zip(before, after, strict=True)):
        for state, image in zip(STYLES, pair, strict=True):
            axis.plot(
                bands[: image.count],
                image.statistics().mean,
                STYLES[state],
                color=_colour(index),
                marker="o",
                label=f"{pair[0].name} ({state})",
            )
    axis.set_xticks(bands, band_names(before.images[0]))
    axis.set_xlabel("Band")
    axis.set_ylabel("Mean value (image units)")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    _legend(axis, len(before), fontsize="small", ncol=2)
    return figure


def _legend(axis, images: int, **options) -> None:
    """A legend naming each image's lines, or, beyond :data:`NAMED_IMAGES`, only what the
    two line styles mean (the title says how many images are drawn)."""
    if images <= NAMED_IMAGES:
        axis.legend(**options)
        return
    from matplotlib.lines import Line2D

    states = [Line2D([], [], color="black", linestyle=style) for style in STYLES.values()]
    axis.legend(states, [f"{images} images {state}" for state in STYLES], fontsize="small")


def plot_spectral_profiles(before, after, path: str | os.PathLike) -> Path:
    """Write :func:`profile_figure` of the two collections as a PNG at ``path``."""
    return save_figure(profile_figure(before, after), path)


# ---------------------------------------------------------------------- histograms


def image_histogram(image: Image, max_bins: int = PLOT_BINS) -> Histogram:
    """The histogram of every valid pixel of ``image``, merged window by window."""
    histogram = Histogram.empty(image.count, np.dtype(image.dtype).kind in "iub", max_bins)
    with image.open() as dataset:
        for window in image.windows():
            histogram = histogram.merge(
                Histogram.from_array(*image.read(window, dataset), max_bins)
            )
    return histogram


def bin_edges(histogram: Histogram, band: int) -> np.ndarray:
    """The edges of the bins of ``band`` in reported units."""
    counts = histogram.counts[band]
    lattice = histogram.firsts[band] + np.arange(len(counts) + 1)
    edges = histogram.origin + lattice * 2.0 ** histogram.exponents[band]
    return histogram.gains[band] * edges + histogram.offsets[band]


def histogram_figure(before, after, max_bins: int = PLOT_BINS):
    """One panel per band: each image's distribution of values (a density, so images of
    different sizes compare) before (dashed) and after (solid)."""
    before, after = paired(before, after)
    names = band_names(before.images[0])
    figure, axes = pyplot().subplots(
        1, len(names), figsize=(4.2 * len(names), 3.8), constrained_layout=True, squeeze=False
    )
    for index, pair in enumerate(zip(before, after, strict=True)):
        for state, image in zip(STYLES, pair, strict=True):
            histogram = image_histogram(image, max_bins)
            for band, axis in enumerate(axes[0]):
                edges = bin_edges(histogram, band)
                total = histogram.counts[band].sum()
                density = histogram.counts[band] / max(total, 1) / np.diff(edges)
                axis.stairs(
                    density,
                    edges,
                    linestyle=STYLES[state],
                    color=_colour(index),
                    label=f"{pair[0].name} ({state})",
                )
    for axis, name in zip(axes[0], names, strict=True):
        axis.set_title(name)
        axis.set_xlabel("Value (image units)")
        axis.set_ylabel("Density")
    _legend(axes[0, -1], len(before), fontsize="x-small")
    return figure


def plot_histograms(before, after, path: str | os.PathLike) -> Path:
    """Write :func:`histogram_figure` of the two collections as a PNG at ``path``."""
    return save_figure(histogram_figure(before, after), path)


# ---------------------------------------------------------------------- overlap graph


def _draw_footprints(axis, collection: ImageCollection) -> None:
    """Each image's footprint, named up to :data:`NAMED_IMAGES` images."""
    for index, image in enumerate(collection):
        footprint = image.footprint
        for polygon in getattr(footprint, "geoms", [footprint]):
            axis.plot(*polygon.exterior.xy, color=_colour(index), linewidth=1)
        if len(collection) <= NAMED_IMAGES:
            point = footprint.representative_point()
            axis.annotate(image.name, (point.x, point.y), fontsize="x-small", ha="center")


def overlap_residuals(images) -> dict[tuple[int, int], float]:
    """Per overlapping pair (positions in the collection), the mean absolute difference
    over their common valid pixels, averaged over bands (:func:`overlap_differences`)."""
    collection = ImageCollection.coerce(images)
    return {
        (collection.index(difference.first), collection.index(difference.second)): float(
            np.nanmean(difference.mean_abs_difference)
        )
        for difference in overlap_differences(collection)
    }


def overlap_graph_figure(before, after):
    """Footprints and the overlap graph, before and after: each edge joins the centres of
    two overlapping images and is coloured by their residual (:func:`overlap_residuals`),
    on one colour scale for both panels."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    before, after = paired(before, after)
    residuals = [overlap_residuals(before), overlap_residuals(after)]
    scale = Normalize(0, max([*residuals[0].values(), *residuals[1].values(), 1e-12]))
    centres = [image.footprint.representative_point() for image in before]
    figure, axes = pyplot().subplots(1, 2, figsize=(11, 5.2), constrained_layout=True)
    panels = zip(axes, (before, after), residuals, STYLES, strict=True)
    for axis, collection, values, state in panels:
        _draw_footprints(axis, collection)
        segments = [[(centres[i].x, centres[i].y), (centres[j].x, centres[j].y)] for i, j in values]
        lines = LineCollection(segments, cmap="viridis", norm=scale, linewidths=3)
        lines.set_array(np.array(list(values.values())))
        axis.add_collection(lines)
        axis.set_title(f"Overlap residuals {state}")
        axis.set_aspect("equal")
        _label_map_axes(axis)
    figure.colorbar(lines, ax=axes, label="Mean absolute difference (image units)")
    return figure


def plot_overlap_graph(before, after, path: str | os.PathLike) -> Path:
    """Write :func:`overlap_graph_figure` of the two collections as a PNG at ``path``."""
    return save_figure(overlap_graph_figure(before, after), path)


# ---------------------------------------------------------------------- block surfaces


def block_surface_figure(block_map, images=None):
    """The shifts of a fitted :class:`~spectralmatch.BlockMap` on its block grid: one row
    per image, one column per band, on one symmetric colour scale per band; the image's
    footprint is outlined where ``images`` (the fitted images) are given."""
    check_is_fitted(block_map, "surfaces_")
    shifts, grid = block_map.shifts_, block_map.grid_
    extent = (
        grid.left,
        grid.left + grid.cols * grid.block_width,
        grid.top - grid.rows * grid.block_height,
        grid.top,
    )
    collection = None if images is None else ImageCollection.coerce(images)
    n_images, n_bands = shifts.shape[:2]
    figure, axes = pyplot().subplots(
        n_images,
        n_bands,
        figsize=(3.2 * n_bands + 1, 3 * n_images),
        constrained_layout=True,
        squeeze=False,
    )
    for band in range(n_bands):
        limit = max(float(np.abs(shifts[:, band]).max()), 1e-12)
        for row, name in enumerate(block_map.images_):
            axis = axes[row, band]
            picture = axis.imshow(
                shifts[row, band], extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit
            )
            if collection is not None:
                footprint = collection[name].footprint
                for polygon in getattr(footprint, "geoms", [footprint]):
                    axis.plot(*polygon.exterior.xy, color="black", linewidth=0.8)
            axis.set_title(f"{name}, band {band + 1}", fontsize="small")
            axis.set_axis_off()
        figure.colorbar(picture, ax=axes[:, band], label="Shift (image units)", shrink=0.6)
    return figure


def plot_block_surfaces(block_map, path: str | os.PathLike, images=None) -> Path:
    """Write :func:`block_surface_figure` as a PNG at ``path``."""
    return save_figure(block_surface_figure(block_map, images), path)


# ---------------------------------------------------------------------- disagreement


def disagreement_map(
    images, max_size: int = 800
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Where overlapping images still disagree, on a decimated grid of their union extent.

    Each cell of an overlap holds ``|a - b|`` averaged over bands (both images read with
    nearest neighbour onto the cell), and averaged over the pairs overlapping there; NaN
    where no two valid images overlap.

    Returns
    -------
    values : float ndarray (rows, cols)
    extent : (left, right, bottom, top) for ``imshow``
    """
    collection = ImageCollection.coerce(images)
    left, bottom, right, top = collection.bounds
    pixel = max(right - left, top - bottom) / max_size
    shape = (math.ceil((top - bottom) / pixel), math.ceil((right - left) / pixel))
    canvas = PixelGrid.from_bounds(
        (left, top - shape[0] * pixel, left + shape[1] * pixel, top), shape[1], shape[0]
    )
    total, count = np.zeros(shape), np.zeros(shape)
    for edge in OverlapGraph.from_collection(collection).edges:
        window = edge.window_in(canvas)
        if window is None:
            continue
        cells = canvas.window_grid(window)
        reads = []
        for image in (collection.images[edge.first], collection.images[edge.second]):
            with image.open() as dataset:
                reads.append(image.read_on_grid(cells, dataset))
        (first, first_valid), (second, second_valid) = reads
        joint = (first_valid & second_valid).all(axis=0)
        difference = np.abs(first.astype(np.float64) - second).mean(axis=0)
        rows, cols = window.toslices()
        total[rows, cols] += np.where(joint, difference, 0)
        count[rows, cols] += joint
    values = np.divide(total, count, out=np.full(shape, np.nan), where=count > 0)
    bounds = canvas.bounds
    return values, (bounds[0], bounds[2], bounds[1], bounds[3])


def disagreement_figure(images, max_size: int = 800, title: str = "Where images disagree"):
    """:func:`disagreement_map` over the images' footprints, with a colour bar."""
    collection = ImageCollection.coerce(images)
    values, extent = disagreement_map(collection, max_size)
    figure, axis = pyplot().subplots(figsize=(7, 6), constrained_layout=True)
    picture = axis.imshow(values, extent=extent, cmap="magma", interpolation="nearest")
    _draw_footprints(axis, collection)
    figure.colorbar(picture, ax=axis, label="Mean absolute difference over bands (image units)")
    axis.set_title(title)
    _label_map_axes(axis)
    return figure


def plot_disagreement(images, path: str | os.PathLike, max_size: int = 800) -> Path:
    """Write :func:`disagreement_figure` of ``images`` as a PNG at ``path``."""
    return save_figure(disagreement_figure(images, max_size), path)
