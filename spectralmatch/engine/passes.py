"""The two passes over the pixels, as side-effect-free tasks.

- :func:`measure`: one image, or a group of its windows, in; its statistics out (whole
  image and its side of each overlap, as small mergeable accumulators).
- :func:`write_corrected`: one image in; its corrected copy written, atomically.

A task opens its own datasets and returns its results; it changes nothing shared, so
any :class:`~spectralmatch.engine.executors.Executor` can run it. Memory is bounded by
the window size times the number of workers, never by image size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from attrs import define, field, frozen
from rasterio.windows import Window

from .._interrupt import check_interrupted
from .._typing import WorkingDtype
from ..geo.blocks import BlockGrid, positions_in
from ..geo.cells import CellGrid
from ..geo.grid import PixelGrid, intersect, local_slices, offset_in, shifted
from ..geo.overlap import OverlapEdge
from ..raster.blockcache import limit_block_cache
from ..raster.convert import BandAffine, converts_compiled, to_dtype_counting
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.records import forget_record, write_record
from ..raster.write import output_profile, write_raster
from ..stats.histogram import Histogram
from ..stats.moments import Moments
from ..stats.requests import Plan

#: Corrects one window of an image: (image, window, values as float, valid) -> values.
#: ``values`` may be a decimated read spanning ``window``; its shape gives the grid.
Correction = Callable[[Image, Window, np.ndarray, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------- statistics


@frozen
class Partner:
    """The other image of an overlap, as a measuring task needs it."""

    edge: OverlapEdge
    index: int
    image: Image


@define
class MeasureTask:
    """Measure ``windows`` of ``image``: whole-image statistics (``whole``) and its side
    of the overlaps with ``partners``, as ``plan`` asks, after ``correct``."""

    image: Image
    index: int
    windows: list[Window]
    partners: list[Partner]
    whole: bool
    plan: Plan
    correct: Correction | None = None


@frozen
class CellRows:
    """Moments of rows of an overlap's cells (a :class:`CellGrid` of ``shape``), in
    ``parts``: (first row, the moments of the rows from it, flattened row by row). A task
    over a band of the mosaic holds only the rows of cells it meets, so the memory of a
    pass does not grow with its tasks; the parts are put together once, in order."""

    shape: tuple[int, int]
    parts: tuple[tuple[int, Moments], ...]

    @classmethod
    def whole(cls, moments: Moments, shape: tuple[int, int]) -> CellRows:
        """All the cells' moments."""
        return cls(shape, ((0, moments),))

    def merge(self, other: CellRows) -> CellRows:
        """Both together (exact: :meth:`full` merges rows that both hold)."""
        return CellRows(self.shape, self.parts + other.parts)

    def full(self) -> Moments:
        """The moments of every cell (none counted in the rows no part holds)."""
        bands = self.parts[0][1].count.shape[0]
        cells = Moments.empty((bands, self.shape[0] * self.shape[1]), extremes=False)
        for first, moments in self.parts:
            start = first * self.shape[1]
            cells.merge_at(slice(start, start + moments.count.shape[-1]), moments)
        return cells


@define
class Measurement:
    """What one image (or part of it) contributes: whole-image statistics and its side
    of each overlap; ``reads`` counts the windows read per image position."""

    index: int
    whole: Moments | None = None
    whole_histogram: Histogram | None = None
    pairs: dict[OverlapEdge, Moments] = field(factory=dict)
    blocks: dict[OverlapEdge, dict[BlockGrid, Moments]] = field(factory=dict)
    histograms: dict[OverlapEdge, Histogram] = field(factory=dict)
    cells: dict[OverlapEdge, CellRows] = field(factory=dict)
    reads: dict[int, int] = field(factory=dict)

    def merge(self, other: Measurement) -> Measurement:
        """Both parts of one image together (exact)."""
        reads = dict(self.reads)
        for index, count in other.reads.items():
            reads[index] = reads.get(index, 0) + count
        return Measurement(
            self.index,
            _merged(self.whole, other.whole),
            _merged(self.whole_histogram, other.whole_histogram),
            _merged_by_key(self.pairs, other.pairs),
            {
                edge: _merged_by_key(self.blocks.get(edge, {}), other.blocks.get(edge, {}))
                for edge in {**self.blocks, **other.blocks}
            },
            _merged_by_key(self.histograms, other.histograms),
            _merged_by_key(self.cells, other.cells),
            reads,
        )


def _merged(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a if b is None else a.merge(b)


def _merged_by_key(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    return {key: _merged(a.get(key), b.get(key)) for key in {**a, **b}}


def measure(task: MeasureTask) -> Measurement:
    """The statistics of ``task.windows`` of one image (a pure function: a task)."""
    limit_block_cache()
    image, plan = task.image, task.plan
    overlaps = {p.edge: p.edge.window_in(image.grid) for p in task.partners}
    partners = [p for p in task.partners if overlaps[p.edge] is not None]
    sides = {p.edge: _OverlapSide(image.count, plan, p.edge) for p in partners}
    whole = _WholeImage(image.count, plan) if task.whole else None
    with image.open() as dataset, _PartnerReader() as reader:
        for window in task.windows:
            check_interrupted()
            values, valid = image.read(window, dataset)
            valid = image.included(values, valid, image.grid.window_grid(window))
            if task.correct is not None:
                values = task.correct(image, window, values.astype(np.float64), valid)
            if whole is not None:
                whole.add(values, valid)
            for partner in partners:
                part = intersect(window, overlaps[partner.edge])
                if part is None:
                    continue
                rows, cols = local_slices(part, window)
                cells = image.grid.window_grid(part)
                joint = valid[:, rows, cols] & reader.valid_on(partner, cells)
                sides[partner.edge].add(values[:, rows, cols], joint, cells)
    for side in sides.values():
        side.finish()
    return _measurement(task.index, whole, sides, {**reader.reads, task.index: len(task.windows)})


def _measurement(
    index: int,
    whole: _WholeImage | None,
    sides: dict[OverlapEdge, _OverlapSide],
    reads: dict[int, int],
) -> Measurement:
    """What image ``index`` measured: its whole-image accumulator and overlap sides."""
    return Measurement(
        index,
        whole.moments if whole is not None else None,
        whole.histogram if whole is not None else None,
        {edge: side.moments for edge, side in sides.items()},
        {edge: side.blocks for edge, side in sides.items()},
        {edge: side.histogram for edge, side in sides.items() if side.histogram is not None},
        {edge: rows for edge, side in sides.items() if (rows := side.cell_rows) is not None},
        reads,
    )


@define
class JointTask:
    """Measure the images over ``windows`` of their common pixel ``grid``: each image's
    pixels in a window are read once and serve its whole-image statistics (for the
    images in ``whole``) and its side of every overlap in ``edges`` there, the
    partner's validity coming from the partner's own read.

    ``images`` maps positions in the collection to the images these windows may need.
    """

    images: dict[int, Image]
    grid: PixelGrid
    windows: list[Window]
    edges: list[OverlapEdge]
    whole: frozenset[int]
    plan: Plan
    correct: Correction | None = None


def measure_jointly(task: JointTask) -> list[Measurement]:
    """The statistics of every image of ``task`` over its windows (a pure function: a
    task), one :class:`Measurement` per image read."""
    limit_block_cache()
    places = {i: offset_in(task.grid, image.grid) for i, image in task.images.items()}
    overlaps = {edge: edge.window_in(task.grid) for edge in task.edges}
    sides: dict[tuple[OverlapEdge, int], _OverlapSide] = {}
    wholes = {i: _WholeImage(task.images[i].count, task.plan) for i in sorted(task.whole)}
    reads = dict.fromkeys(task.images, 0)
    with contextlib.ExitStack() as stack:
        datasets = _LazyDatasets(task.images, stack)
        for window in task.windows:
            check_interrupted()
            meeting = [e for e, o in overlaps.items() if o and intersect(window, o)]
            wanted = task.whole | {i for edge in meeting for i in (edge.first, edge.second)}
            read: dict[int, _Read] = {}
            for index in sorted(wanted):
                image = task.images[index]
                extent = Window(*places[index], image.width, image.height)
                own = intersect(window, extent)
                if own is None:
                    continue
                read[index] = _read(task, image, own, places[index], datasets[index])
                reads[index] += 1
                if index in wholes:
                    wholes[index].add(read[index].values, read[index].valid)
            for edge in meeting:
                part = intersect(window, overlaps[edge])
                _add_overlap(task, edge, overlaps[edge], part, read, sides, places)
    for side in sides.values():
        side.finish()
    return [
        _measurement(
            index,
            wholes.get(index),
            {edge: side for (edge, i), side in sides.items() if i == index},
            {index: windows},
        )
        for index, windows in reads.items()
        if windows
    ]


def _add_overlap(
    task: JointTask,
    edge: OverlapEdge,
    overlap: Window,
    part: Window,
    read: dict[int, _Read],
    sides: dict[tuple[OverlapEdge, int], _OverlapSide],
    places: dict[int, tuple[int, int]],
) -> None:
    """Add ``part`` of ``edge`` (of ``overlap``, windows of the common grid) to both its
    sides, where both images are valid."""
    first, second = read[edge.first].at(part), read[edge.second].at(part)
    joint = first[1] & second[1]
    count = None  # the same pixels on both sides, counted once
    for index, (values, _) in ((edge.first, first), (edge.second, second)):
        if (edge, index) not in sides:
            met = _met(task, edge, overlap, index, places)
            sides[edge, index] = _OverlapSide(values.shape[0], task.plan, edge, met)
        cells = task.images[index].grid.window_grid(_moved(part, places[index]))
        count = sides[edge, index].add(values, joint, cells, count)


@frozen
class _Read:
    """An image's pixels over ``own`` (a window of the common grid) and their validity."""

    own: Window
    values: np.ndarray
    valid: np.ndarray

    def at(self, part: Window) -> tuple[np.ndarray, np.ndarray]:
        """Values and validity over ``part``, a window of the common grid inside ``own``."""
        rows, cols = local_slices(part, self.own)
        return self.values[:, rows, cols], self.valid[:, rows, cols]


def _met(
    task: JointTask,
    edge: OverlapEdge,
    overlap: Window,
    index: int,
    places: dict[int, tuple[int, int]],
) -> PixelGrid:
    """The pixels of ``edge`` (``overlap`` on the common grid) that ``task``'s windows
    meet, on image ``index``'s grid."""
    top = min(int(w.row_off) for w in task.windows)
    bottom = max(int(w.row_off + w.height) for w in task.windows)
    band = Window(0, top, task.grid.width, bottom - top)
    met = intersect(band, overlap)
    if met is None:
        raise ValueError(f"no window of this task meets {edge}")
    return task.images[index].grid.window_grid(_moved(met, places[index]))


def _moved(window: Window, place: tuple[int, int]) -> Window:
    """A window of the common grid as a window of the image at ``place`` in it."""
    return shifted(window, -place[0], -place[1])


def _read(task: JointTask, image: Image, own: Window, place: tuple[int, int], dataset) -> _Read:
    """Read ``own`` of ``image``, less its mask, through ``task.correct``."""
    local = _moved(own, place)
    values, valid = image.read(local, dataset)
    valid = image.included(values, valid, image.grid.window_grid(local))
    if task.correct is not None:
        values = task.correct(image, local, values.astype(np.float64), valid)
    return _Read(own, values, valid)


class _LazyDatasets:
    """Datasets of ``images``, opened on first use and closed with ``stack``."""

    def __init__(self, images: dict[int, Image], stack: contextlib.ExitStack) -> None:
        self.images, self.stack = images, stack
        self.opened: dict[int, Any] = {}

    def __getitem__(self, index: int) -> Any:
        if index not in self.opened:
            self.opened[index] = self.stack.enter_context(self.images[index].open())
        return self.opened[index]


class _WholeImage:
    """Accumulates an image's whole-image moments (and histogram)."""

    def __init__(self, count: int, plan: Plan) -> None:
        self.bins = plan.image_bins
        self.moments = Moments.empty(count)
        self.histogram: Histogram | None = None

    def add(self, values: np.ndarray, valid: np.ndarray) -> None:
        self.moments = self.moments.merge(Moments.from_array(values, valid))
        if self.bins is not None:
            self.histogram = _merged(self.histogram, Histogram.from_array(values, valid, self.bins))


class _OverlapSide:
    """Accumulates one image's side of one overlap: moments, per block, per cell,
    histogram. With cells, the blocks' and the overlap's moments are recomposed from
    them (the cells nest in the blocks), so the pixels are summed once."""

    def __init__(
        self, count: int, plan: Plan, edge: OverlapEdge, extent: PixelGrid | None = None
    ) -> None:
        """``extent``: the pixels this side may meet (default: the whole overlap)."""
        self.grids = plan.grids
        self.bins = plan.overlap_bins
        self.moments = Moments.empty(count)
        # per grid, only the blocks near the overlap: a grid spans the whole mosaic
        self.near = {grid: grid.blocks_near(edge.bounds) for grid in plan.grids}
        self.blocks = {
            g: Moments.empty((count, len(self.near[g])), extremes=False) for g in plan.grids
        }
        self.cell_grid = None
        self.cells: Moments | None = None
        self.first_row = 0
        if plan.cell_side is not None:
            self.cell_grid = CellGrid.over(edge.bounds, plan.cell_side, plan.grids)
            rows, columns = self.cell_grid.shape
            if extent is not None:
                met = self.cell_grid.pixel_cells(extent)[0]
                self.first_row, rows = int(met[0]), int(met[-1]) + 1 - int(met[0])
            self.cells = Moments.empty((count, rows * columns), extremes=False)
        self.histogram: Histogram | None = None

    def add(
        self,
        values: np.ndarray,
        joint: np.ndarray,
        cells: PixelGrid,
        count: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Count ``values`` (on ``cells``) where ``joint`` is true; returns the pixels
        counted per cell (None without cells), which the other side of the overlap,
        counting where the same ``joint`` is true, may pass as ``count``."""
        counted = None
        if self.cell_grid is not None and self.cells is not None:
            index, row_starts, col_starts = self.cell_grid.runs(cells)
            part = Moments.from_blocks(values, joint, row_starts, col_starts, count)
            self.cells.merge_at(index - self.first_row * self.cell_grid.shape[1], part)
            counted = part.count
        else:
            self._add_blocks(values, joint, cells)
        if self.bins is not None:
            self.histogram = _merged(self.histogram, Histogram.from_array(values, joint, self.bins))
        return counted

    def _add_blocks(self, values: np.ndarray, joint: np.ndarray, cells: PixelGrid) -> None:
        measured = None
        for grid in self.grids:
            blocks, row_starts, col_starts = grid.window_blocks(cells)
            measured = Moments.from_blocks(values, joint, row_starts, col_starts)
            self.blocks[grid].merge_at(positions_in(self.near[grid], blocks), measured)
        # with a grid, the whole overlap's moments are the sum of its blocks'
        part = measured.total() if measured is not None else Moments.from_array(values, joint)
        self.moments = self.moments.merge(part)

    def finish(self) -> None:
        """Recompose the blocks' and the overlap's moments from the cells."""
        if self.cell_grid is None or self.cells is None:
            return
        self.moments = self.cells.total()
        held = slice(self.first_row * self.cell_grid.shape[1], None)
        held = slice(held.start, held.start + self.cells.count.shape[-1])
        self.blocks = {
            grid: self.cells.grouped(
                positions_in(near, self.cell_grid.block_index(grid)[held]), len(near)
            )
            for grid, near in self.near.items()
        }

    @property
    def cell_rows(self) -> CellRows | None:
        """The cells measured, with the rows they are."""
        if self.cell_grid is None or self.cells is None:
            return None
        return CellRows(self.cell_grid.shape, ((self.first_row, self.cells),))


class _PartnerReader:
    """The partners' datasets, opened on first use and closed together."""

    def __init__(self) -> None:
        self.datasets: dict[int, Any] = {}
        self.reads: dict[int, int] = {}

    def __enter__(self) -> _PartnerReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for dataset in self.datasets.values():
            dataset.close()

    def valid_on(self, partner: Partner, cells: PixelGrid) -> np.ndarray:
        """Validity of the partner on ``cells``, less what its mask excludes."""
        if partner.index not in self.datasets:
            self.datasets[partner.index] = partner.image.open()
        self.reads[partner.index] = self.reads.get(partner.index, 0) + 1
        values, valid = partner.image.read_on_grid(cells, self.datasets[partner.index])
        return partner.image.included(values, valid, cells)


def window_groups(windows: Sequence[Window], groups: int) -> list[list[Window]]:
    """``windows`` in ``groups`` runs of consecutive windows (as even as possible)."""
    groups = max(1, min(groups, len(windows)))
    bounds = np.linspace(0, len(windows), groups + 1).round().astype(int)
    return [list(windows[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# ---------------------------------------------------------------------- transform


def working_dtype_for(dtype: str) -> WorkingDtype:
    """The precision that holds every value of ``dtype`` exactly: float64 for float64 and
    for integers wider than 16 bits (float32 has a 24-bit mantissa), else float32."""
    kind, size = np.dtype(dtype).kind, np.dtype(dtype).itemsize
    return "float64" if size > (4 if kind == "f" else 2) else "float32"


@define
class WriteTask:
    """Write ``image`` through ``correct`` (None: unchanged) and then ``affine`` (None:
    none) to ``path``, in ``dtype`` (default: the image's), computing in
    ``working_dtype`` (default: :func:`working_dtype_for`); with ``records``, record the
    output as complete there, made by ``digest`` (:mod:`spectralmatch.raster.records`).

    ``affine`` is a last step's correction given as gains and offsets
    (:meth:`~spectralmatch.model.adjuster.StepChain.split_affine`): the conversion to
    the output dtype applies it in the same pass."""

    image: Image
    path: Path
    correct: Correction | None
    cog: bool = False
    window_size: int = DEFAULT_WINDOW_SIZE
    working_dtype: WorkingDtype | None = None
    creation_options: dict[str, Any] = field(factory=dict)
    dtype: str | None = None
    records: Path | None = None
    digest: str = ""
    affine: BandAffine | None = None


class _ReusedArray:
    """One array of ``dtype`` that holds each window's values in turn.

    A new array per window would be new memory each time, every page of which the
    kernel zeroes before it is written (a third of a second of CPU over the nine images
    of scale-9x3000); this one grows to the largest window and is then reused.
    """

    def __init__(self, dtype: str) -> None:
        self._flat = np.empty(0, dtype)

    def holding(self, values: np.ndarray) -> np.ndarray:
        """``values`` cast into this array (valid until the next call)."""
        if self._flat.size < values.size:
            self._flat = np.empty(values.size, self._flat.dtype)
        held = self._flat[: values.size].reshape(values.shape)
        np.copyto(held, values)
        return held


@frozen
class Written:
    """An output written: its path, and how many of its valid values (pixels x bands)
    were clipped to the output dtype's range."""

    path: Path
    valid: int
    clipped: int


def write_corrected(task: WriteTask) -> Written:
    """Write the corrected image, window by window, atomically (a task).

    The output keeps the input's grid, nodata, band descriptions and valid mask, and its
    dtype unless the task gives one; it appears under ``task.path`` only once complete
    (as a Cloud Optimized GeoTIFF with ``cog``).
    """
    limit_block_cache()
    image = task.image
    dtype = task.dtype or image.dtype
    working = task.working_dtype or working_dtype_for(
        max(image.dtype, dtype, key=lambda d: np.dtype(d).itemsize)
    )
    profile = output_profile(image, dtype, **task.creation_options)
    tile = profile["blockxsize"]
    window_size = max(tile, task.window_size // tile * tile)
    counts = np.zeros(2, dtype=np.int64)  # valid, clipped
    if task.records is not None:
        forget_record(task.records, task.path)
    working_values = _ReusedArray(working)
    # with no step before the affine one, the compiled conversion takes the pixels as read
    as_read = (
        task.correct is None
        and working == "float32"
        and converts_compiled(image.dtype, dtype, image.nodata)
    )
    with image.open() as source:

        def pieces() -> Iterator[tuple[Window, np.ndarray, np.ndarray | None]]:
            for window in image.windows(window_size):
                values, valid = image.read(window, source)
                if not as_read:
                    values = working_values.holding(values)
                    if task.correct is not None:
                        values = task.correct(image, window, values, valid)
                counts[0] += int(np.count_nonzero(valid))
                mask = None
                if image.uses_mask_band:
                    mask = valid.any(axis=0).astype(np.uint8) * 255
                converted, clipped = to_dtype_counting(
                    values, valid, dtype, image.nodata, task.affine
                )
                counts[1] += clipped
                yield window, converted, mask

        path = write_raster(
            task.path, profile, pieces(), descriptions=image.descriptions, cog=task.cog
        )
    if task.records is not None:
        write_record(task.records, path, task.digest)
    return Written(path, int(counts[0]), int(counts[1]))
