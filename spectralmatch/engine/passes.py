"""Windowed passes over a collection: statistics in, corrected rasters out.

Work is split per image and run on a thread pool (rasterio and numpy release the GIL);
every task opens its own datasets. Memory is bounded by the window size times the
number of threads, never by image size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from attrs import define, field
from rasterio.windows import Window

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid, intersect, local_slices
from ..geo.overlap import OverlapEdge
from ..raster.collection import ImageCollection
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.write import output_profile, to_dtype, write_raster
from ..stats.moments import Moments
from ..stats.overlap import OverlapStatistics, PairMoments
from .cache import StatisticsCache

T = TypeVar("T")
R = TypeVar("R")

#: A function that corrects one window: (values as float, valid mask, window) -> values.
WindowFunction = Callable[[np.ndarray, np.ndarray, Window], np.ndarray]
#: The same for any image: (image, window, values, valid) -> values.
ImageWindowFunction = Callable[[Image, Window, np.ndarray, np.ndarray], np.ndarray]


def run_tasks(
    function: Callable[[T], R],
    items: Iterable[T],
    threads: int | None = None,
    progress: bool = False,
    label: str = "",
) -> list[R]:
    """``[function(item) for item in items]`` on ``threads`` threads, with a progress bar."""
    from tqdm.auto import tqdm

    items = list(items)
    workers = max(1, min(threads or os.cpu_count() or 1, len(items)))
    bar = tqdm(total=len(items), desc=label, unit="image", disable=not progress, leave=False)
    with bar:
        if workers == 1:
            results = []
            for item in items:
                results.append(function(item))
                bar.update()
            return results
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(function, item) for item in items]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            return [future.result() for future in futures]


# ---------------------------------------------------------------------- statistics


@define
class ImageStatistics:
    """What one image contributes: its whole-image moments (if wanted), its side of each
    overlap (whole, and per block of each grid), and how many windows were read, per
    image position (its own and its partners')."""

    whole: Moments | None = None
    pairs: dict[OverlapEdge, Moments] = field(factory=dict)
    blocks: dict[OverlapEdge, dict[Any, Moments]] = field(factory=dict)
    reads: dict[int, int] = field(factory=dict)


def collect_statistics(
    collection: ImageCollection,
    edges: list[OverlapEdge],
    whole_images: Iterable[int] | None = None,
    grids: Sequence[Any] = (),
    correct: ImageWindowFunction | None = None,
    window_size: int = DEFAULT_WINDOW_SIZE,
    threads: int | None = None,
    progress: bool = False,
    cache: StatisticsCache | None = None,
) -> OverlapStatistics:
    """Whole-image and pairwise-overlap moments in one windowed pass per image.

    Parameters
    ----------
    collection : ImageCollection
    edges : list of OverlapEdge
        Overlaps to measure; a pixel counts for an edge where both images are valid
        (the partner's validity is mapped onto this image's grid, nearest neighbour).
    whole_images : iterable of int, optional
        Images whose whole-image moments are wanted (default: all).
    grids : sequence of BlockGrid
        Block grids on which the overlaps' moments are also wanted per block.
    correct : callable, optional
        ``correct(image, window, values, valid)`` applied to every window before it is
        measured: the statistics of images as corrected by steps already fitted.
    cache : StatisticsCache, optional
        Statistics found there are not measured again; new ones are stored (not with
        ``correct``). An image with nothing left to measure is not read at all.

    Raises
    ------
    SpectralMatchError
        If an image whose whole-image moments were asked for has no valid pixel.
    """
    wanted = set(range(len(collection)) if whole_images is None else whole_images)
    touching = {index for edge in edges for index in (edge.first, edge.second)}
    cache = cache if correct is None else None
    known = {
        index: _cached(collection, index, edges, index in wanted, grids, cache)
        for index in sorted(wanted | touching)
    }
    missing = {
        index: (
            [e for e in edges if index in (e.first, e.second) and e not in found.pairs],
            index in wanted and found.whole is None,
        )
        for index, found in known.items()
    }
    todo = [index for index, (own_edges, whole) in missing.items() if own_edges or whole]

    def task(index: int) -> ImageStatistics:
        own_edges, whole = missing[index]
        return _image_statistics(collection, index, own_edges, whole, grids, correct, window_size)

    for index, measured in zip(
        todo, run_tasks(task, todo, threads, progress, "statistics"), strict=True
    ):
        _store(cache, collection, index, measured, grids)
        known[index].pairs.update(measured.pairs)
        known[index].blocks.update(measured.blocks)
        known[index].whole = known[index].whole or measured.whole
        known[index].reads = measured.reads
    images = [
        known[i].whole if i in known and i in wanted else None for i in range(len(collection))
    ]
    for index in wanted:
        if not images[index].count.any():
            raise SpectralMatchError(
                f"{collection.images[index].path}: has no valid pixels "
                f"(nodata={collection.images[index].nodata})"
            )
    pairs = [
        PairMoments(
            edge,
            known[edge.first].pairs[edge],
            known[edge.second].pairs[edge],
            {
                grid: (known[edge.first].blocks[edge][grid], known[edge.second].blocks[edge][grid])
                for grid in grids
            },
        )
        for edge in edges
    ]
    reads = dict.fromkeys(collection.names, 0)
    for found in known.values():
        for index, count in found.reads.items():
            reads[collection.names[index]] += count
    return OverlapStatistics(collection.names, images, pairs, reads)


def _cached(collection, index, edges, whole, grids, cache) -> ImageStatistics:
    """What ``cache`` already holds of image ``index``'s statistics."""
    found = ImageStatistics()
    if cache is None:
        return found
    image = collection.images[index]
    if whole:
        stored = cache.load(cache.whole_key(image))
        found.whole = stored["whole"] if stored else None
    for edge in edges:
        if index not in (edge.first, edge.second):
            continue
        partner = collection.images[edge.other(index)]
        stored = cache.load(cache.pair_key(image, partner, edge, grids))
        if stored is not None:
            found.pairs[edge] = stored["pair"]
            found.blocks[edge] = {grid: stored[f"block{k}"] for k, grid in enumerate(grids)}
    return found


def _store(cache, collection, index, measured: ImageStatistics, grids) -> None:
    if cache is None:
        return
    image = collection.images[index]
    if measured.whole is not None:
        cache.store(cache.whole_key(image), {"whole": measured.whole})
    for edge, moments in measured.pairs.items():
        entry = {
            "pair": moments,
            **{f"block{k}": measured.blocks[edge][grid] for k, grid in enumerate(grids)},
        }
        partner = collection.images[edge.other(index)]
        cache.store(cache.pair_key(image, partner, edge, grids), entry)


def _image_statistics(
    collection: ImageCollection,
    index: int,
    edges: list[OverlapEdge],
    whole: bool,
    grids: Sequence[Any],
    correct: ImageWindowFunction | None,
    window_size: int,
) -> ImageStatistics:
    image = collection.images[index]
    overlaps = {edge: edge.window_in(image.grid) for edge in edges}
    overlaps = {edge: window for edge, window in overlaps.items() if window is not None}
    accumulator = _OverlapAccumulator(image, edges, grids)
    moments = Moments.empty(image.count)
    windows = list(image.windows(window_size))
    if not whole:
        windows = [w for w in windows if any(intersect(w, o) for o in overlaps.values())]
    with image.open() as dataset, _Partners(collection) as partners:
        for window in windows:
            values, valid = image.read(window, dataset)
            valid = image.included(values, valid, image.grid.window_grid(window))
            if correct is not None:
                values = correct(image, window, values.astype(np.float64), valid)
            if whole:
                moments = moments.merge(Moments.from_array(values, valid))
            for edge, overlap in overlaps.items():
                part = intersect(window, overlap)
                if part is not None:
                    rows, cols = local_slices(part, window)
                    joint = valid[:, rows, cols] & partners.valid_on_grid(
                        edge.other(index), image.grid.window_grid(part)
                    )
                    accumulator.add(edge, part, values[:, rows, cols], joint)
        reads = {**partners.reads, index: len(windows)}
        return ImageStatistics(
            moments if whole else None, accumulator.pairs, accumulator.blocks, reads
        )


class _OverlapAccumulator:
    """One image's moments over each of its overlaps, whole and per block of each grid."""

    def __init__(self, image: Image, edges: list[OverlapEdge], grids: Sequence[Any]) -> None:
        self.image = image
        self.grids = grids
        self.pairs = {edge: Moments.empty(image.count) for edge in edges}
        self.blocks = {
            edge: {grid: Moments.empty((image.count, grid.size), extremes=False) for grid in grids}
            for edge in edges
        }

    def add(self, edge: OverlapEdge, part: Window, values: np.ndarray, joint: np.ndarray) -> None:
        """Count ``values`` (the pixels of window ``part``) where ``joint`` is true."""
        measured = None
        for grid in self.grids:
            blocks, row_starts, col_starts = grid.window_blocks(self.image.grid.window_grid(part))
            measured = Moments.from_blocks(values, joint, row_starts, col_starts)
            self.blocks[edge][grid].merge_at(blocks, measured)
        # with a grid, the whole overlap's moments are the sum of its blocks'
        whole = measured.total() if measured is not None else Moments.from_array(values, joint)
        self.pairs[edge] = self.pairs[edge].merge(whole)


class _Partners:
    """The other images of a collection, opened on first use, closed together."""

    def __init__(self, collection: ImageCollection) -> None:
        self.collection = collection
        self.datasets: dict[int, Any] = {}
        self.reads: dict[int, int] = {}

    def __enter__(self) -> _Partners:
        return self

    def __exit__(self, *exc_info) -> None:
        for dataset in self.datasets.values():
            dataset.close()

    def valid_on_grid(self, index: int, grid: PixelGrid) -> np.ndarray:
        """Validity of image ``index`` on ``grid``, less what its mask excludes."""
        image = self.collection.images[index]
        if index not in self.datasets:
            self.datasets[index] = image.open()
        self.reads[index] = self.reads.get(index, 0) + 1
        values, valid = image.read_on_grid(grid, self.datasets[index])
        return image.included(values, valid, grid)


# ---------------------------------------------------------------------- transform


def write_corrected(
    image: Image,
    path: Path,
    correct: WindowFunction,
    *,
    cog: bool = False,
    window_size: int = DEFAULT_WINDOW_SIZE,
    working_dtype: str = "float32",
    **creation_options,
) -> Path:
    """Write ``correct`` applied to every window of ``image`` to ``path``, atomically.

    The output keeps the input's grid, dtype, nodata, band descriptions and valid mask;
    it appears under ``path`` only once complete (as a Cloud Optimized GeoTIFF with
    ``cog=True``).
    """
    profile = output_profile(image, **creation_options)
    tile = profile["blockxsize"]
    window_size = max(tile, window_size // tile * tile)
    with image.open() as source:

        def pieces():
            for window in image.windows(window_size):
                values, valid = image.read(window, source)
                corrected = correct(values.astype(working_dtype), valid, window)
                mask = None
                if image.nodata is None and image.profile["dataset_mask"]:
                    mask = valid.any(axis=0).astype(np.uint8) * 255
                yield window, to_dtype(corrected, valid, image.dtype, image.nodata), mask

        return write_raster(path, profile, pieces(), descriptions=image.descriptions, cog=cog)
