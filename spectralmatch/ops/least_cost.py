"""Least-cost seamlines: cuts moved, on a coarse grid of the images' pixels, to where the
images differ least."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from attrs import define

from ..errors import SpectralMatchError
from ..geo.regions import hand_over, polygon_parts, union
from ..raster.blockcache import limit_block_cache
from ..raster.collection import ImageCollection
from ..raster.image import GDAL_ERRORS, Image, error_cause
from ..raster.vrt import nan_masked_vrt

#: Rows and columns of a part of the coarse grid (starts and stops within it).
Window = tuple[slice, slice]


@define
class Cropped:
    """One image's array on the coarse grid (the grid in the last two axes), kept over
    its own part of the grid, ``window``: ``fill`` elsewhere. A mosaic of n images would
    otherwise hold n whole grids."""

    array: np.ndarray
    window: Window
    fill: Any

    @classmethod
    def of(cls, whole: np.ndarray, keep: np.ndarray, fill: Any) -> Cropped:
        """``whole`` kept over the bounding box of ``keep`` (rows, cols), where every
        value other than ``fill`` lies."""
        rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
        window = (slice(0, 0), slice(0, 0))
        if len(rows):
            window = (
                slice(int(rows[0]), int(rows[-1]) + 1),
                slice(int(cols[0]), int(cols[-1]) + 1),
            )
        return cls(whole[(Ellipsis,) + window].copy(), window, fill)

    def over(self, window: Window) -> np.ndarray:
        """The array over ``window`` of the grid."""
        shape = tuple(part.stop - part.start for part in window)
        result = np.full(self.array.shape[:-2] + shape, self.fill, dtype=self.array.dtype)
        meet = (_meet(self.window[0], window[0]), _meet(self.window[1], window[1]))
        if all(part.stop > part.start for part in meet):
            into, out_of = _within(meet, window), _within(meet, self.window)
            result[(Ellipsis,) + into] = self.array[(Ellipsis,) + out_of]
        return result


def _meet(one: slice, other: slice) -> slice:
    return slice(max(one.start, other.start), min(one.stop, other.stop))


def _within(window: Window, origin: Window) -> Window:
    """``window`` counted from the start of ``origin``."""
    rows, cols = window
    return (
        slice(rows.start - origin[0].start, rows.stop - origin[0].start),
        slice(cols.start - origin[1].start, cols.stop - origin[1].start),
    )


@define
class CoarseGrid:
    """A coarse north-up grid over the union of a collection."""

    transform: Any
    shape: tuple[int, int]

    @classmethod
    def over(cls, collection: ImageCollection, decimation: int) -> CoarseGrid:
        from rasterio.transform import from_origin

        left, bottom, right, top = collection.bounds
        size = decimation * pixel_side(collection)
        shape = (math.ceil((top - bottom) / size), math.ceil((right - left) / size))
        return cls(from_origin(left, top, size, size), shape)

    def sample(self, collection: ImageCollection) -> tuple[list[Cropped], list[Cropped]]:
        """Each image's values (bands, rows, cols; NaN where invalid) and coverage (every
        band valid) on the grid, each kept over its own part of the grid only."""
        values, covers = [], []
        grid = np.empty((collection.count, *self.shape))  # one image at a time
        for image in collection:
            grid.fill(np.nan)
            self._average(image, grid)
            valid = ~np.isnan(grid)
            values.append(Cropped.of(grid, np.any(valid, axis=0), np.nan))
            cover = np.asarray(np.all(valid, axis=0))
            covers.append(Cropped.of(cover, cover, False))
        return values, covers

    def _average(self, image: Image, grid: np.ndarray) -> None:
        """Average ``image``'s valid values onto ``grid`` (bands, rows, cols), read by
        GDAL's warper window by window (:func:`nan_masked_vrt`)."""
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        limit_block_cache()
        try:
            with rasterio.open(nan_masked_vrt(image)) as dataset:
                reproject(
                    rasterio.band(dataset, list(range(1, image.count + 1))),
                    grid,
                    dst_transform=self.transform,
                    dst_crs=image.crs,
                    dst_nodata=np.nan,
                    resampling=Resampling.average,
                )
        except GDAL_ERRORS as error:
            raise SpectralMatchError(
                f"{image.path}: cannot be read ({error_cause(error)})"
            ) from None

    def nearest_centre_labels(self, collection: ImageCollection, cover: Sequence[Cropped]):
        """Index + 1 of the covering image with the nearest footprint centroid (0: none;
        the first image of any tie)."""
        rows, cols = np.indices(self.shape)
        x, y = self.transform @ (cols + 0.5, rows + 0.5)
        nearest = np.full(self.shape, np.inf)
        labels = np.zeros(self.shape, dtype=int)
        for k, (image, covered) in enumerate(zip(collection, cover, strict=True)):
            centre = image.footprint.centroid
            part = covered.window
            distance = np.hypot(x[part] - centre.x, y[part] - centre.y)
            distance = np.where(covered.array, distance, np.inf)
            closer = distance < nearest[part]
            nearest[part][closer], labels[part][closer] = distance[closer], k + 1
        return labels

    def polygon(self, cells: np.ndarray):
        """The union of ``cells`` as a shapely geometry."""
        from rasterio.features import shapes
        from shapely.geometry import shape
        from shapely.ops import unary_union

        if not cells.any():
            from shapely.geometry import Polygon

            return Polygon()
        return unary_union(
            [
                shape(geometry)
                for geometry, value in shapes(
                    cells.astype(np.uint8), mask=cells, transform=self.transform
                )
                if value
            ]
        )


def pixel_side(collection: ImageCollection) -> float:
    """The shortest pixel side of the collection's images."""
    return min(min(abs(i.transform.a), abs(i.transform.e)) for i in collection)


@define
class CutCosts:
    """Cost of a cut through each cell between two images: their absolute difference
    summed over the bands, each scaled by its spread over all the images (1000 where
    they do not overlap). Taken pair by pair when asked: a mosaic of n images has n**2
    pairs, most of which never meet."""

    values: Sequence[Cropped]  # each image's (bands, rows, cols), NaN where invalid
    cover: Sequence[Cropped]
    spread: np.ndarray

    @classmethod
    def of(cls, values: Sequence[Cropped], cover: Sequence[Cropped]) -> CutCosts:
        return cls(values, cover, np.maximum(_spread(values), 1e-12)[:, None, None])

    def between(self, first: int, second: int, window: Window) -> np.ndarray:
        """The cost of a cut between images ``first`` and ``second`` over ``window``."""
        one, other = self.values[first].over(window), self.values[second].over(window)
        gap = np.nansum(np.abs(one - other) / self.spread, axis=0)
        covered = self.cover[first].over(window) & self.cover[second].over(window)
        return np.where(covered, gap, 1e3)


def _spread(values: Sequence[Cropped]) -> np.ndarray:
    """Per band, the standard deviation of every image's valid values together (0
    where there is none)."""
    count = sum(np.count_nonzero(~np.isnan(v.array), axis=(1, 2)) for v in values)
    total = sum(np.nansum(v.array, axis=(1, 2)) for v in values)
    mean = np.divide(total, count, out=np.zeros(len(values[0].array)), where=count > 0)
    squares = sum(np.nansum((v.array - mean[:, None, None]) ** 2, axis=(1, 2)) for v in values)
    return np.sqrt(np.divide(squares, count, out=np.zeros_like(mean), where=count > 0))


def redrawn(voronoi, grid: CoarseGrid, relabelling, footprints, side: float):
    """The Voronoi regions (in label order) redrawn from the cells' new labels where the
    labels changed (``relabelling`` is the labels before and after) and in the cells
    around; what this leaves to no image goes to the covering image that borders it most.
    """
    from scipy import ndimage

    before, after = relabelling
    around = ndimage.binary_dilation(after != before, structure=np.ones((3, 3), bool))
    zone = grid.polygon(around)
    regions = {
        name: region.difference(zone).union(
            grid.polygon((after == k + 1) & around).intersection(footprints[name])
        )
        for k, (name, region) in enumerate(voronoi.items())
    }
    claimed = union(regions.values())
    rest = [
        (name, part)
        for name, region in voronoi.items()
        for part in polygon_parts(region.difference(claimed), side)
    ]
    hand_over(regions, rest, footprints, side)
    return regions


#: Cells a pair's work reaches beyond the cells both images cover: the 3 x 3 dilations
#: that find its cut, its border and each image's own cells.
PAIR_MARGIN = 2


def least_cost_labels(
    labels: np.ndarray, cost: Callable[[int, int, Window], np.ndarray], cover: Sequence[Cropped]
) -> np.ndarray:
    """Move the cut between every pair of neighbouring labels onto the cheapest path.

    Parameters
    ----------
    labels : int array (rows, cols)
        Image index + 1 of each cell (0 outside every image): the starting partition.
    cost : callable
        ``cost(i, j, window)``, ``i < j``: float array, the cost of a cut through each
        cell of ``window`` (row and column slices) between images ``i`` and ``j`` (e.g.
        :meth:`CutCosts.between`); asked only of the pairs whose covers meet, over where
        they meet and a margin.
    cover : sequence of Cropped
        Where each image has data (bool, rows x cols, each over its own part).

    Returns
    -------
    The relabelled cells: within the overlap of each neighbouring pair, the cells on
    either side of the least-cost path between the ends of their current cut go to the
    image whose own (unshared) cells they touch.
    """
    from scipy import ndimage

    labels = labels.copy()
    for i, j, window in _meeting_pairs(cover, labels.shape):
        # every cell both cover, and every cell the work below looks at, is in the window
        near = labels[window]
        both = cover[i].over(window) & cover[j].over(window)
        shared = both & ((near == i + 1) | (near == j + 1))
        if not shared.any():
            continue
        path = _cheapest_cut(near, shared, cost(i, j, window), i + 1, j + 1)
        if path is None:
            continue
        pieces, count = ndimage.label(shared & ~path)
        own_i = ndimage.binary_dilation((near == i + 1) & ~shared)
        own_j = ndimage.binary_dilation((near == j + 1) & ~shared)
        for piece in range(1, count + 1):
            cells = pieces == piece
            touches_i, touches_j = (own_i & cells).any(), (own_j & cells).any()
            if touches_i != touches_j:
                near[cells] = i + 1 if touches_i else j + 1
    return labels


def _meeting_pairs(
    cover: Sequence[Cropped], shape: tuple[int, int]
) -> list[tuple[int, int, Window]]:
    """The pairs ``i < j`` of images whose covers' bounding boxes meet, in order (every
    pair that shares a cell), each with where they meet and :data:`PAIR_MARGIN` around,
    within the grid of ``shape``."""
    boxes = np.array([[w.start for w in c.window] + [w.stop for w in c.window] for c in cover])
    pairs = []
    for i, box in enumerate(boxes):
        later = boxes[i + 1 :]
        starts = np.maximum(box[:2], later[:, :2])
        stops = np.minimum(box[2:], later[:, 2:])
        for offset in np.flatnonzero((stops > starts).all(axis=1)):
            (top, left) = np.maximum(starts[offset] - PAIR_MARGIN, 0)
            (bottom, right) = np.minimum(stops[offset] + PAIR_MARGIN, shape)
            window = (slice(int(top), int(bottom)), slice(int(left), int(right)))
            pairs.append((i, i + 1 + int(offset), window))
    return pairs


def _cheapest_cut(labels, shared, cost, first, second):
    """Cells of the least-cost 8-connected path inside ``shared`` between the two ends
    of the current cut between labels ``first`` and ``second`` (None if it has no two
    ends on the border of ``shared``)."""
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    cut = shared & (labels == first) & ndimage.binary_dilation(labels == second)
    border = shared & ndimage.binary_dilation(~shared, border_value=1)
    ends = np.argwhere(cut & border)
    if len(ends) < 2:
        return None
    distances = np.linalg.norm(ends[:, None] - ends[None], axis=-1)
    a, b = np.unravel_index(np.argmax(distances), distances.shape)
    index = -np.ones(shared.shape, dtype=int)
    cells = np.argwhere(shared)
    index[shared] = np.arange(len(cells))
    rows, cols, weights = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r, c = cells[:, 0] + dr, cells[:, 1] + dc
        inside = (r >= 0) & (r < shared.shape[0]) & (c >= 0) & (c < shared.shape[1])
        source, r, c = np.flatnonzero(inside), r[inside], c[inside]
        target = index[r, c]
        keep = target >= 0
        step = np.hypot(dr, dc)
        here = cost[cells[source[keep], 0], cells[source[keep], 1]]
        there = cost[r[keep], c[keep]]
        rows.append(source[keep])
        cols.append(target[keep])
        weights.append(step * (1e-3 + (here + there) / 2))
    graph = coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(cells), len(cells)),
    ).tocsr()
    start, stop = index[tuple(ends[a])], index[tuple(ends[b])]
    _, predecessors = dijkstra(graph, directed=False, indices=start, return_predecessors=True)
    if predecessors[stop] < 0 and stop != start:
        return None
    path = np.zeros(shared.shape, dtype=bool)
    node = stop
    while node >= 0:
        path[tuple(cells[node])] = True
        node = predecessors[node] if node != start else -1
    return path
