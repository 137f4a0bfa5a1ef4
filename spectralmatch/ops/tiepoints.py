"""Tie points between overlapping images, without OpenCV: phase correlation of patches.

In each overlap, patches on a regular grid of a grey image are correlated through the FFT
(a sub-pixel peak fit gives the shift); weak peaks and points far from the pair's affine
fit are left out. Tie points are kept as pixel coordinates and saved as JSON in the
published package's layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from rasterio.transform import Affine

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from ..raster.image import Image
from ..raster.vrt import open_for_resampling

#: Side of a matched patch, in (working) pixels.
PATCH = 32
#: Patches along each side of an overlap, at most.
PATCHES_PER_SIDE = 8
#: Longest side of an overlap as read for matching (larger overlaps are read decimated).
MAX_OVERLAP_PIXELS = 1024
#: Weakest correlation peak accepted (1 for identical patches, ~0.02 for unrelated ones).
MIN_PEAK = 0.1
#: Least standard deviation of a patch's stretched grey values (0 to 1) to be matched.
MIN_TEXTURE = 0.02
#: Fewest tie points of a pair for the outlier test against its affine fit.
MIN_TESTED_POINTS = 4


def phase_shift(first: np.ndarray, second: np.ndarray) -> tuple[float, float, float]:
    """(columns, rows, peak): how far the content of ``first`` lies displaced in
    ``second`` (same-shape patches), by phase correlation with a sub-pixel peak fit;
    ``peak`` is the height of the normalized correlation peak (1: identical)."""
    taper = np.outer(np.hanning(first.shape[0]), np.hanning(first.shape[1]))
    spectrum = np.fft.fft2(second * taper) * np.conj(np.fft.fft2(first * taper))
    surface = np.fft.ifft2(spectrum / np.maximum(np.abs(spectrum), 1e-12)).real
    row, col = (int(index) for index in np.unravel_index(np.argmax(surface), surface.shape))
    rows, cols = surface.shape
    along_rows = [surface[(row + k) % rows, col] for k in (-1, 0, 1)]
    along_cols = [surface[row, (col + k) % cols] for k in (-1, 0, 1)]
    d_row = _wrap(row, rows) + _peak_offset(*along_rows)
    d_col = _wrap(col, cols) + _peak_offset(*along_cols)
    return d_col, d_row, float(surface[row, col])


def _wrap(index: int, size: int) -> int:
    return index - size if index >= size // 2 else index


def _peak_offset(before: float, peak: float, after: float) -> float:
    """Sub-pixel offset of a correlation peak from its two neighbours: the larger
    neighbour's share of the peak (Foroosh et al.'s estimator for phase correlation;
    measured here within 0.05 pixel on the sample tiles)."""
    if after >= before:
        return after / (after + peak) if after > 0 else 0.0
    return -before / (before + peak) if before > 0 else 0.0


def _grey(image: Image, bounds, pixel: float) -> tuple[np.ndarray, PixelGrid] | None:
    """The mean of the first (up to 3) bands over ``bounds`` at about ``pixel`` size,
    stretched to 0..1 between its 2nd and 98th percentiles, NaN where not valid."""
    window = image.grid.inner_window(bounds)
    if window is None:
        return None
    height, width = int(window.height), int(window.width)
    rows = max(1, round(height * image.grid.pixel_size[1] / pixel))
    cols = max(1, round(width * image.grid.pixel_size[0] / pixel))
    with open_for_resampling(image) as dataset:
        bands = list(range(1, min(3, image.count) + 1))
        values = dataset.read(
            bands, window=window, out_shape=(len(bands), rows, cols), resampling=Resampling.average
        )
        valid = image.valid_mask(values, dataset, window, bands).all(axis=0)
    grey = values.astype(np.float64).mean(axis=0)
    grey[~valid] = np.nan
    if valid.any():
        low, high = np.percentile(grey[valid], [2, 98])
        grey = np.clip((grey - low) / max(high - low, 1e-12), 0, 1)
    grid_transform = (
        image.transform
        * Affine.translation(window.col_off, window.row_off)
        * Affine.scale(width / cols, height / rows)
    )
    return grey, PixelGrid(grid_transform, cols, rows)


def _patch_centers(bounds, pixel: float) -> list[tuple[float, float]]:
    """Centres (map coordinates) of up to ``PATCHES_PER_SIDE`` squared patches that fit
    in ``bounds``, half a patch apart at the closest."""
    left, bottom, right, top = bounds
    half = PATCH / 2 * pixel
    axes = []
    for low, high in ((left, right), (bottom, top)):
        span = high - low - 2 * half
        if span < 0:
            return []
        count = min(PATCHES_PER_SIDE, 1 + int(span // half))
        axes.append(np.linspace(low + half, high - half, count))
    return [(float(x), float(y)) for y in axes[1] for x in axes[0]]


def _patch(grey: np.ndarray, grid: PixelGrid, x: float, y: float):
    """The patch of ``grey`` nearest to centre (``x``, ``y``) and its exact centre in
    pixel coordinates of ``grid``, or None where it leaves the array or is not valid."""
    col, row = ~grid.transform @ (x, y)
    col0, row0 = round(col - PATCH / 2), round(row - PATCH / 2)
    if col0 < 0 or row0 < 0 or col0 + PATCH > grid.width or row0 + PATCH > grid.height:
        return None
    patch = grey[row0 : row0 + PATCH, col0 : col0 + PATCH]
    if np.isnan(patch).any() or patch.std() < MIN_TEXTURE:
        return None
    return patch, (col0 + PATCH / 2, row0 + PATCH / 2)


def match_pair(first: Image, second: Image, bounds) -> np.ndarray:
    """Raw tie points of two images overlapping over ``bounds``: (n, 4) pixel
    coordinates (column, row of ``first``; column, row of ``second``; pixel centres at
    whole numbers), from phase correlation of patches on a regular grid."""
    pixel = max(*first.grid.pixel_size, *second.grid.pixel_size)
    left, bottom, right, top = bounds
    pixel *= max(1.0, max(right - left, top - bottom) / pixel / MAX_OVERLAP_PIXELS)
    read_a, read_b = (_grey(image, bounds, pixel) for image in (first, second))
    if read_a is None or read_b is None:
        return np.empty((0, 4))
    (grey_a, grid_a), (grey_b, grid_b) = read_a, read_b
    points = []
    for x, y in _patch_centers(bounds, pixel):
        patch_a, patch_b = _patch(grey_a, grid_a, x, y), _patch(grey_b, grid_b, x, y)
        if patch_a is None or patch_b is None:
            continue
        d_col, d_row, peak = phase_shift(patch_a[0], patch_b[0])
        if peak < MIN_PEAK:
            continue
        at_a = grid_a.transform @ patch_a[1]
        at_b = grid_b.transform @ (patch_b[1][0] + d_col, patch_b[1][1] + d_row)
        points.append([*_pixel_of(first, at_a), *_pixel_of(second, at_b)])
    return np.array(points, dtype=float).reshape(-1, 4)


def sorted_pair(first: str, second: str) -> tuple[str, str]:
    """The two names in sorted order (how pairs are keyed)."""
    return (first, second) if first <= second else (second, first)


def _pixel_of(image: Image, point) -> tuple[float, float]:
    col, row = ~image.transform @ point
    return col - 0.5, row - 0.5


def _map_of(image: Image, pixels: np.ndarray) -> np.ndarray:
    cols, rows = pixels[:, 0] + 0.5, pixels[:, 1] + 0.5
    t = image.transform
    return np.column_stack([t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e])


def filter_ties(
    raw: np.ndarray,
    first: Image,
    second: Image,
    maximum_displacement: float | None,
    threshold: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The map coordinates of the raw tie points moved no more than
    ``maximum_displacement`` (CRS units) that agree with the pair's affine fit (when
    there are at least 4 of them): within ``threshold`` (default 3 pixels) and within 3
    robust standard deviations of the residuals."""
    a, b = _map_of(first, raw[:, :2]), _map_of(second, raw[:, 2:])
    pixel = max(*first.grid.pixel_size, *second.grid.pixel_size)
    keep = np.hypot(*(b - a).T) <= (maximum_displacement or np.inf)
    a, b = a[keep], b[keep]
    if len(a) < MIN_TESTED_POINTS:
        return a, b
    design = np.column_stack([a - a.mean(axis=0), np.ones(len(a))])
    fit = np.linalg.lstsq(design, b, rcond=None)[0]
    residual = np.hypot(*(design @ fit - b).T)
    spread = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    limit = min(threshold or 3 * pixel, max(3 * spread, 0.05 * pixel) + np.median(residual))
    keep = residual <= limit
    return a[keep], b[keep]


def save_tie_points(path: str | os.PathLike, raw: Mapping[tuple[str, str], np.ndarray]) -> None:
    """Write raw tie points as JSON, in the published package's layout."""
    records = [
        {"image_1": one, "image_2": two, "points": [[list(p[:2]), list(p[2:])] for p in pts]}
        for (one, two), pts in sorted(raw.items())
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"tie_points": records}, indent=2), encoding="utf-8")


def load_tie_points(path: str | os.PathLike) -> dict[tuple[str, str], np.ndarray]:
    """Raw tie points from JSON written by :func:`save_tie_points` (or the published
    package), by pair of image names in sorted order."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))["tie_points"]
        loaded = {}
        for record in records:
            pair = (str(record["image_1"]), str(record["image_2"]))
            key = sorted_pair(*pair)
            points = np.array(record["points"], dtype=float).reshape(-1, 4)
            if not np.isfinite(points).all() or pair[0] == pair[1] or key in loaded:
                raise ValueError(f"bad points or a repeated pair {pair}")
            loaded[key] = points if pair == key else points[:, [2, 3, 0, 1]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SpectralMatchError(
            f"{path}: load_adjustments must be a tie-point JSON file "
            f'({{"tie_points": [{{"image_1", "image_2", "points"}}...]}}): {error}'
        ) from None
    return loaded
