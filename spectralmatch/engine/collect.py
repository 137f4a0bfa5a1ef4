"""The statistics pass: plan the tasks, run them, assemble what the steps are handed."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from attrs import define, field, frozen
from rasterio.windows import Window

from ..errors import SpectralMatchError
from ..geo.cells import CellGrid
from ..geo.grid import PixelGrid, common_grid, intersect, offset_in
from ..geo.overlap import OverlapEdge
from ..raster.collection import ImageCollection
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..stats.histogram import Histogram
from ..stats.moments import Moments
from ..stats.overlap import OverlapStatistics, PairMoments
from ..stats.requests import Plan, Request
from .cache import Entry, StatisticsCache
from .executors import Executor, SerialExecutor
from .passes import (
    CellRows,
    Correction,
    JointTask,
    Measurement,
    MeasureTask,
    Partner,
    measure,
    measure_jointly,
    window_groups,
)


@define
class StatisticsPass:
    """How a pass is run: window size, executor, progress bars and the cache."""

    window_size: int = DEFAULT_WINDOW_SIZE
    executor: Executor = field(factory=SerialExecutor)
    progress: bool = False
    cache: StatisticsCache | None = None

    def collect(
        self,
        collection: ImageCollection,
        edges: Sequence[OverlapEdge],
        requests: Iterable[Request],
        whole_images: Iterable[int] | None = None,
        correct: Correction | None = None,
    ) -> OverlapStatistics:
        """Measure ``requests`` on ``collection`` in one windowed pass per image.

        Parameters
        ----------
        collection : ImageCollection
        edges : list of OverlapEdge
            Overlaps to measure; a pixel counts for an edge where both images are valid
            (the partner's validity is read on this image's grid, nearest neighbour).
        requests : iterable of Request
            What to measure (the union of some steps' requests).
        whole_images : iterable of int, optional
            Images whose whole-image statistics are wanted (default: all).
        correct : callable, optional
            Applied to every window before it is measured: the statistics of the images
            as corrected by steps already fitted. Such statistics are not cached.

        Raises
        ------
        SpectralMatchError
            If an image whose whole-image statistics were asked for has no valid pixel.
        """
        plan = Plan.of(requests)
        edges = list(edges) if plan.overlaps else []
        wanted = set(range(len(collection)) if whole_images is None else whole_images)
        if not plan.whole_images:
            wanted = set()
        cache = self.cache if correct is None else None
        known = {
            index: self._cached(collection, index, edges, index in wanted, plan, cache)
            for index in sorted(wanted | {i for edge in edges for i in (edge.first, edge.second)})
        }
        measured: dict[int, Measurement] = {}
        for result in self._run(collection, edges, wanted, known, plan, correct):
            measured[result.index] = (
                result if result.index not in measured else measured[result.index].merge(result)
            )
        for index, result in measured.items():
            self._store(cache, collection, index, result, plan)
            known[index] = known[index].merge(result)
        return _assemble(collection, edges, wanted, known)

    def _run(
        self,
        collection: ImageCollection,
        edges: list[OverlapEdge],
        wanted: set[int],
        known: dict[int, Measurement],
        plan: Plan,
        correct: Correction | None,
    ) -> list[Measurement]:
        """Measure what ``known`` lacks: jointly where the images share one pixel grid
        (every pixel read once), else image by image (each reads its partners'
        validity over their overlaps, resampled to its own grid)."""
        todo_edges = [
            edge
            for edge in edges
            if edge not in known[edge.first].pairs or edge not in known[edge.second].pairs
        ]
        todo_whole = {index for index in wanted if known[index].whole is None}
        involved = sorted(
            todo_whole | {i for edge in todo_edges for i in (edge.first, edge.second)}
        )
        grid = common_grid([collection.images[i].grid for i in involved]) if involved else None
        if grid is None:
            tasks = self._tasks(collection, edges, wanted, known, plan, correct)
            return self.executor.map(measure, tasks, progress=self.progress, label="statistics")
        overlaps = {edge: edge.window_in(grid) for edge in todo_edges}
        joint = [
            _band_task(collection, grid, windows, overlaps, todo_whole, plan, correct)
            for windows in _window_rows(
                grid, self.window_size, collection, involved, todo_whole, todo_edges
            )
        ]
        # the most work first, so that the workers finish together; the results are
        # merged in the tasks' own order all the same, on which their bits depend
        order = sorted(range(len(joint)), key=lambda k: -_pixels(joint[k]))
        ran = self.executor.map(
            measure_jointly, [joint[k] for k in order], progress=self.progress, label="statistics"
        )
        results = [part for _, part in sorted(zip(order, ran, strict=True), key=lambda p: p[0])]
        return [
            _without_known(measurement, known[measurement.index])
            for part in results
            for measurement in part
        ]

    def _tasks(
        self,
        collection: ImageCollection,
        edges: list[OverlapEdge],
        wanted: set[int],
        known: dict[int, Measurement],
        plan: Plan,
        correct: Correction | None,
    ) -> list[MeasureTask]:
        """One task per image with something left to measure (several per image when
        there are fewer images than workers)."""
        todo = []
        for index, found in known.items():
            image = collection.images[index]
            partners = [
                Partner(edge, edge.other(index), collection.images[edge.other(index)])
                for edge in edges
                if index in (edge.first, edge.second) and edge not in found.pairs
            ]
            whole = index in wanted and found.whole is None
            if not partners and not whole:
                continue
            windows = list(image.windows(self.window_size))
            if not whole:
                overlaps = [p.edge.window_in(image.grid) for p in partners]
                windows = [w for w in windows if any(o and intersect(w, o) for o in overlaps)]
            todo.append((index, windows, partners, whole))
        groups = max(1, math.ceil(self.executor.workers / max(len(todo), 1)))
        return [
            MeasureTask(collection.images[index], index, group, partners, whole, plan, correct)
            for index, windows, partners, whole in todo
            for group in window_groups(windows, groups)
        ]

    @staticmethod
    def _cached(
        collection: ImageCollection,
        index: int,
        edges: list[OverlapEdge],
        whole: bool,
        plan: Plan,
        cache: StatisticsCache | None,
    ) -> Measurement:
        """What ``cache`` already holds of image ``index``'s statistics."""
        found = Measurement(index)
        if cache is None:
            return found
        image = collection.images[index]
        if whole:
            stored = cache.load(cache.whole_key(image, plan))
            if stored is not None:
                found.whole = _moments(stored, "whole")
                found.whole_histogram = _histogram(stored, "histogram")
        for edge in edges:
            if index not in (edge.first, edge.second):
                continue
            partner = collection.images[edge.other(index)]
            stored = cache.load(cache.pair_key(image, partner, edge, plan))
            moments = _moments(stored, "pair") if stored is not None else None
            if stored is None or moments is None:
                continue
            found.pairs[edge] = moments
            found.blocks[edge] = {
                grid: block
                for k, grid in enumerate(plan.grids)
                if (block := _moments(stored, f"block{k}")) is not None
            }
            histogram = _histogram(stored, "histogram")
            if histogram is not None:
                found.histograms[edge] = histogram
            cells = _moments(stored, "cells")
            if cells is not None and plan.cell_side is not None:
                shape = CellGrid.over(edge.bounds, plan.cell_side, plan.grids).shape
                found.cells[edge] = CellRows.whole(cells, shape)
        return found

    @staticmethod
    def _store(
        cache: StatisticsCache | None,
        collection: ImageCollection,
        index: int,
        measured: Measurement,
        plan: Plan,
    ) -> None:
        if cache is None:
            return
        image = collection.images[index]
        if measured.whole is not None:
            whole: Entry = {"whole": measured.whole}
            if measured.whole_histogram is not None:
                whole["histogram"] = measured.whole_histogram
            cache.store(cache.whole_key(image, plan), whole)
        for edge, moments in measured.pairs.items():
            pair: Entry = {"pair": moments}
            pair.update({f"block{k}": measured.blocks[edge][g] for k, g in enumerate(plan.grids)})
            if edge in measured.histograms:
                pair["histogram"] = measured.histograms[edge]
            if edge in measured.cells:
                pair["cells"] = measured.cells[edge].full()
            partner = collection.images[edge.other(index)]
            cache.store(cache.pair_key(image, partner, edge, plan), pair)


#: Images a window of the joint statistics pass reads at full size: where more images
#: overlap, the windows are narrower, so that memory stays that of this many windows.
FULL_WINDOWS = 4


def _band_task(
    collection: ImageCollection,
    grid: PixelGrid,
    windows: list[Window],
    overlaps: dict[OverlapEdge, Window | None],
    whole: set[int],
    plan: Plan,
    correct: Correction | None,
) -> JointTask:
    """The task of ``windows`` (one band of rows of ``grid``): the overlaps the band
    meets, and the images it reads (a vast mosaic's task carries its band's only)."""
    top, bottom = int(windows[0].row_off), int(windows[0].row_off + windows[0].height)
    band = Window(0, top, grid.width, bottom - top)
    edges = [edge for edge, window in overlaps.items() if window and intersect(band, window)]
    met = {edge_image for edge in edges for edge_image in (edge.first, edge.second)}
    for index in whole:
        image = collection.images[index]
        if intersect(band, Window(*offset_in(grid, image.grid), image.width, image.height)):
            met.add(index)
    return JointTask(
        {index: collection.images[index] for index in sorted(met)},
        grid,
        windows,
        edges,
        frozenset(whole & met),
        plan,
        correct,
    )


def _pixels(task: JointTask) -> int:
    """How much a task reads and measures, to order the tasks by: the pixels of each of
    its windows in every image it reads, and in every overlap (whose two sides cost
    about what a read costs)."""
    extents = [
        Window(*offset_in(task.grid, image.grid), image.width, image.height)
        for image in task.images.values()
    ]
    areas = extents + [o for edge in task.edges if (o := edge.window_in(task.grid))]
    return sum(
        int(met.width * met.height)
        for window in task.windows
        for area in areas
        if (met := intersect(window, area)) is not None
    )


def _window_rows(
    grid: PixelGrid,
    size: int,
    collection: ImageCollection,
    involved: list[int],
    whole: set[int],
    edges: list[OverlapEdge],
) -> list[list[Window]]:
    """The windows of ``grid`` where something is to be measured, one list per band of
    the mosaic (a task each: as many, in the same order, whatever the number of workers,
    so the statistics are merged alike on any executor). Windows are ``size`` wide and
    as tall as their band (see :func:`_bands`); only those an area meets are listed (scenes
    far apart span a vast mosaic)."""
    images = {i: collection.images[i] for i in involved}
    extents = {
        i: Window(*offset_in(grid, image.grid), image.width, image.height)
        for i, image in images.items()
    }
    areas = [extents[i] for i in sorted(whole)]
    areas += [window for edge in edges if (window := edge.window_in(grid)) is not None]
    tiles = [
        _TileRows(int(extents[i].row_off), image.height, _tile_height(image))
        for i, image in images.items()
    ]
    rows = []
    for top, bottom in _bands(grid.height, tiles, size):
        # where many images overlap (a deep time series), narrower windows: a window
        # reads every image it meets
        depth = max(_columns(list(extents.values()), top, bottom, size).values(), default=0)
        width = size if depth <= FULL_WINDOWS else max(size * FULL_WINDOWS // depth, 64)
        columns = _columns(areas, top, bottom, width)
        if columns:
            rows.append(
                [
                    Window(c * width, top, min(width, grid.width - c * width), bottom - top)
                    for c in sorted(columns)
                ]
            )
    # the longest rows first: the order their results are merged in
    return sorted(rows, key=len, reverse=True)


def _columns(areas: list[Window], top: int, bottom: int, width: int) -> Counter[int]:
    """The columns of windows ``width`` wide in rows ``[top, bottom)`` that ``areas``
    meet, each with how many of them meet it."""
    met: Counter[int] = Counter()
    for area in areas:
        if area.row_off < bottom and area.row_off + area.height > top:
            first, stop = int(area.col_off), int(area.col_off + area.width)
            met.update(range(first // width, (stop - 1) // width + 1))
    return met


@frozen
class _TileRows:
    """An image's rows in the mosaic (from ``top``, ``height`` of them), read by GDAL in
    blocks of ``tile`` rows."""

    top: int
    height: int
    tile: int

    def cut_at(self, row: int) -> bool:
        """Whether an edge between mosaic rows ``row - 1`` and ``row`` cuts a block."""
        return self.top < row < self.top + self.height and (row - self.top) % self.tile != 0


def _tile_height(image: Image) -> int:
    """Rows of the image's tiles; 1 for a striped image (its strips are not weighed)."""
    return int(image.profile.get("blockysize", 1)) if image.profile.get("tiled") else 1


def _bands(height: int, tiles: list[_TileRows], size: int) -> list[tuple[int, int]]:
    """Bands of rows ``[top, bottom)`` of a mosaic ``height`` rows tall, each at most
    ``size`` rows and at least three quarters of that (but the last), whose edges cut the
    fewest images' blocks: a block an edge cuts is decoded by the tasks of both bands.
    They depend on the mosaic and its images only, so that statistics measured in part
    (the rest from the cache) add up as a whole measurement does."""
    bands = []
    start = 0
    while height - start > size:
        low, high = start + (3 * size) // 4, start + size
        candidates = {high} | {
            row
            for rows in tiles
            if rows.tile > 1 and rows.top < high and rows.top + rows.height > low
            for row in range(_first_edge(rows, low), high + 1, rows.tile)
        }
        best = min(candidates, key=lambda row: (sum(r.cut_at(row) for r in tiles), -row))
        bands.append((start, best))
        start = best
    bands.append((start, height))
    return bands


def _first_edge(rows: _TileRows, low: int) -> int:
    """The first block edge of ``rows`` at or after mosaic row ``low``."""
    return rows.top + -(-(low - rows.top) // rows.tile) * rows.tile


def _without_known(measurement: Measurement, known: Measurement) -> Measurement:
    """``measurement`` less the overlap sides ``known`` already holds (a joint task
    measures both sides of an overlap when either is missing)."""
    pairs = {e: m for e, m in measurement.pairs.items() if e not in known.pairs}
    return Measurement(
        measurement.index,
        measurement.whole,
        measurement.whole_histogram,
        pairs,
        {e: blocks for e, blocks in measurement.blocks.items() if e in pairs},
        {e: h for e, h in measurement.histograms.items() if e in pairs},
        {e: c for e, c in measurement.cells.items() if e in pairs},
        measurement.reads,
    )


def _moments(entry: Entry, name: str) -> Moments | None:
    value = entry.get(name)
    return value if isinstance(value, Moments) else None


def _histogram(entry: Entry, name: str) -> Histogram | None:
    value = entry.get(name)
    return value if isinstance(value, Histogram) else None


def _assemble(
    collection: ImageCollection,
    edges: list[OverlapEdge],
    wanted: set[int],
    known: dict[int, Measurement],
) -> OverlapStatistics:
    """The measurements of every image put together as one collection's statistics."""
    images = [known[i].whole if i in wanted else None for i in range(len(collection))]
    for index in sorted(wanted):
        moments = images[index]
        if moments is not None and not moments.count.any():
            image = collection.images[index]
            masked = " left by its mask" if image.mask is not None else ""
            raise SpectralMatchError(
                f"{image.path}: has no valid pixels{masked} (nodata={image.nodata})"
            )
    pairs = []
    for edge in edges:
        first, second = known[edge.first], known[edge.second]
        histograms = None
        if edge in first.histograms and edge in second.histograms:
            histograms = (first.histograms[edge], second.histograms[edge])
        blocks = {
            grid: (first.blocks[edge][grid], second.blocks[edge][grid])
            for grid in first.blocks.get(edge, {})
        }
        cells = None
        if edge in first.cells and edge in second.cells:
            cells = (first.cells[edge].full(), second.cells[edge].full())
        pairs.append(
            PairMoments(edge, first.pairs[edge], second.pairs[edge], blocks, histograms, cells)
        )
    reads = dict.fromkeys(collection.names, 0)
    for found in known.values():
        for index, count in found.reads.items():
            reads[collection.names[index]] += count
    return OverlapStatistics(
        collection.names,
        images,
        pairs,
        [known[i].whole_histogram if i in wanted else None for i in range(len(collection))],
        collection.crs,
        reads,
        bounds=[image.bounds for image in collection],
    )
