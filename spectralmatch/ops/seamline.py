"""Cut lines between overlapping images: one polygon per image, no gaps, no overlaps."""

from __future__ import annotations

import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from attrs import define

from ..errors import SpectralMatchError
from ..masks.vector import polygons_by_name
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.files import TEMPORARY_PREFIX

#: Fraction of a pixel's side within which two regions are taken to touch.
_TOUCH = 1e-3


@define
class Seamline:
    """Per image, the polygon of the mosaic it supplies (a partition of the union of the
    images' footprints).

    Attributes
    ----------
    polygons : dict of str to shapely geometry
        Image name -> Polygon or MultiPolygon, in the images' CRS.
    crs : rasterio CRS
    """

    polygons: dict[str, Any]
    crs: Any

    @classmethod
    def voronoi(cls, images: ImagesLike) -> Seamline:
        """Split every overlap by nearest footprint centre, within the footprints.

        A point of the union goes to the image, among those covering it, whose footprint
        centroid is nearest: each image keeps its footprint less the parts of other
        footprints that lie on their side of the perpendicular bisector of the centres.
        Then every part of a region but its largest (and a largest part under a pixel)
        goes to the neighbour that covers it and borders it most, if there is one: each
        region is a valid Polygon or MultiPolygon without stray islands or slivers.

        Examples
        --------
        >>> seams = Seamline.voronoi("data/")
        >>> sorted(seams.polygons)[:2]
        ['tile_00', 'tile_01']
        """
        collection = ImageCollection.coerce(images)
        footprints = {image.name: image.footprint for image in collection}
        regions = _voronoi_regions(collection)
        return cls(_tidy(regions, footprints, _pixel_side(collection)), collection.crs)

    @classmethod
    def least_cost(cls, images: ImagesLike, decimation: int = 4) -> Seamline:
        """Voronoi-centre seamlines whose cuts are moved to where the images differ least.

        On a grid ``decimation`` times coarser than the finest image, the cut between
        each pair of neighbouring images is replaced by the least-cost path (Dijkstra)
        between the ends of its Voronoi cut, through their overlap, the cost of a cell
        being the images' absolute difference summed over the bands (each band scaled by
        its spread): see :func:`least_cost_labels`. Where cells change sides, and in the
        cells around them, each image's region follows the cells it is given (within
        its footprint); elsewhere it is its Voronoi region. What that leaves to no image
        (cells straddling a footprint's edge) goes to the covering image that borders it
        most. The regions are then tidied as in :meth:`voronoi`: they partition the union
        of the footprints, each within its own footprint.
        """
        collection = ImageCollection.coerce(images)
        grid = _CoarseGrid.over(collection, decimation)
        values, cover = grid.sample(collection)
        start = grid.nearest_centre_labels(collection, cover)
        labels = least_cost_labels(start, _differences(values, cover), cover)
        footprints = {image.name: image.footprint for image in collection}
        side = _pixel_side(collection)
        regions = _redrawn(_voronoi_regions(collection), grid, (start, labels), footprints, side)
        return cls(_tidy(regions, footprints, side), collection.crs)

    @classmethod
    def coerce(
        cls, seamlines: Seamline | str | os.PathLike, field: str = "image", crs: Any = None
    ) -> Seamline:
        """A Seamline as it is, or read from a vector file with one polygon per image
        (``field`` holding the image's name), reprojected to ``crs`` when given."""
        if isinstance(seamlines, Seamline):
            return seamlines
        return cls(polygons_by_name(seamlines, field, crs, "seamlines"), crs)

    def to_geodataframe(self, field: str = "image"):
        """A GeoDataFrame with one row per image: ``field`` (its name) and its region as
        a MultiPolygon (one geometry type for the whole layer)."""
        import geopandas
        from shapely.geometry import MultiPolygon

        geometries = [
            MultiPolygon([region]) if getattr(region, "geom_type", None) == "Polygon" else region
            for region in self.polygons.values()
        ]
        return geopandas.GeoDataFrame(
            {field: list(self.polygons)}, geometry=geometries, crs=self.crs
        )

    def to_file(self, path: str | os.PathLike, field: str = "image") -> Path:
        """Write the polygons as a MultiPolygon layer (e.g. a GeoPackage; the format
        follows the extension) with ``field`` naming the image.

        The file is written under a temporary name beside ``path`` and renamed when
        complete: a failure leaves ``path`` as it was.

        Raises
        ------
        SpectralMatchError
            If the file cannot be written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.to_geodataframe(field)
        try:
            _write_atomically(path, lambda temporary: frame.to_file(temporary, layer=path.stem))
        except Exception as error:  # noqa: BLE001 - any writer failure names the file
            raise SpectralMatchError(f"{path}: cannot write seamlines ({error})") from error
        return path


@define
class _CoarseGrid:
    """A coarse north-up grid over the union of a collection."""

    transform: Any
    shape: tuple[int, int]

    @classmethod
    def over(cls, collection: ImageCollection, decimation: int) -> _CoarseGrid:
        from rasterio.transform import from_origin

        left, bottom, right, top = collection.bounds
        size = decimation * _pixel_side(collection)
        shape = (math.ceil((top - bottom) / size), math.ceil((right - left) / size))
        return cls(from_origin(left, top, size, size), shape)

    def sample(self, collection: ImageCollection) -> tuple[np.ndarray, np.ndarray]:
        """Values (images, bands, rows, cols; NaN where invalid) and coverage on the grid."""
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        values = np.full((len(collection), collection.count, *self.shape), np.nan)
        for k, image in enumerate(collection):
            with image.open() as dataset:
                data = dataset.read().astype(np.float64)
                data[~image.valid_mask(data, dataset)] = np.nan
            reproject(
                data,
                values[k],
                src_transform=image.transform,
                src_crs=image.crs,
                dst_transform=self.transform,
                dst_crs=image.crs,
                src_nodata=np.nan,
                dst_nodata=np.nan,
                resampling=Resampling.average,
            )
        return values, ~np.isnan(values).any(axis=1)

    def nearest_centre_labels(self, collection: ImageCollection, cover: np.ndarray):
        """Index + 1 of the covering image with the nearest footprint centroid (0: none)."""
        rows, cols = np.indices(self.shape)
        x, y = self.transform @ (cols + 0.5, rows + 0.5)
        distance = np.full((len(collection), *self.shape), np.inf)
        for k, image in enumerate(collection):
            centre = image.footprint.centroid
            distance[k] = np.where(cover[k], np.hypot(x - centre.x, y - centre.y), np.inf)
        labels = np.argmin(distance, axis=0) + 1
        labels[~cover.any(axis=0)] = 0
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


def _pixel_side(collection: ImageCollection) -> float:
    """The shortest pixel side of the collection's images."""
    return min(min(abs(i.transform.a), abs(i.transform.e)) for i in collection)


def _voronoi_regions(collection: ImageCollection) -> dict[str, Any]:
    """Image name -> its footprint less the parts of other footprints whose centroid is
    nearer (before :func:`_tidy`)."""
    footprints = {image.name: image.footprint for image in collection}
    centres = {name: footprint.centroid for name, footprint in footprints.items()}
    left, bottom, right, top = collection.bounds
    reach = 4 * math.hypot(right - left, top - bottom)
    regions = {}
    for name, footprint in footprints.items():
        region = footprint
        for other, other_footprint in footprints.items():
            if other == name or not region.intersects(other_footprint):
                continue
            nearer = _half_plane(centres[name], centres[other], reach)
            region = region.difference(other_footprint.intersection(nearer))
        regions[name] = region
    return regions


def _differences(values: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Cost of a cut through each cell between images i < j: their absolute difference
    summed over the bands, each scaled by its spread (1000 where they do not overlap)."""
    spread = np.maximum(np.nanstd(values, axis=(0, 2, 3)), 1e-12)[:, None, None]
    n = len(values)
    difference = np.zeros((n, n, *values.shape[2:]))
    for i in range(n):
        for j in range(i + 1, n):
            gap = np.nansum(np.abs(values[i] - values[j]) / spread, axis=0)
            difference[i, j] = np.where(cover[i] & cover[j], gap, 1e3)
    return difference


def _redrawn(voronoi, grid: _CoarseGrid, relabelling, footprints, side: float):
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
    claimed = _union(regions.values())
    rest = [
        (name, part)
        for name, region in voronoi.items()
        for part in _polygon_parts(region.difference(claimed), side)
    ]
    _hand_over(regions, rest, footprints, side)
    return regions


def _polygon_parts(geometry, side: float) -> list[Any]:
    """The polygons of ``geometry`` (made valid first); lines, points and polygons of no
    more area than floating-point dust (a square of a thousandth of a pixel ``side``)
    dropped."""
    import shapely

    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    parts = shapely.get_parts(shapely.get_parts(geometry))  # a collection's multi-parts too
    dust = (_TOUCH * side) ** 2
    return [part for part in parts if part.geom_type == "Polygon" and part.area > dust]


def _union(geometries) -> Any:
    """The union of ``geometries``."""
    import shapely

    return shapely.union_all(list(geometries))


def _hand_over(regions: dict[str, Any], pieces, footprints: dict[str, Any], side: float) -> None:
    """Add every ``(owner, piece)`` to the region, among those whose image's footprint
    covers the piece, that shares the longest boundary with it; to its owner's region if
    no such region borders it along more than a point."""
    tolerance = _TOUCH * side
    for owner, piece in pieces:
        near = piece.buffer(tolerance)
        shared = {
            name: region.intersection(near).area / tolerance
            for name, region in regions.items()
            if region.intersects(near)
            and piece.difference(footprints[name]).area <= tolerance * piece.length
        }
        taker = max(shared, key=shared.__getitem__, default=owner)
        if shared.get(taker, 0.0) <= 4 * tolerance:  # a corner only: about 1.6 tolerances
            taker = owner
        regions[taker] = regions[taker].union(piece)


def _tidy(regions: dict[str, Any], footprints: dict[str, Any], side: float) -> dict[str, Any]:
    """The regions as valid Polygons or MultiPolygons, each its largest part plus the
    other parts that no neighbour can take.

    Lines and points (slivers of overlay arithmetic) are dropped; every part but the
    largest, and a largest part under a pixel, is handed over to the neighbour that
    covers it and borders it most (see :func:`_hand_over`).
    """
    from shapely.geometry import MultiPolygon, Polygon

    regions = dict(regions)
    offered = []
    for name, region in regions.items():
        parts = sorted(_polygon_parts(region, side), key=lambda part: part.area, reverse=True)
        kept = 1 if parts and parts[0].area >= side * side else 0
        regions[name] = parts[0] if kept else Polygon()
        offered += [(name, part) for part in parts[kept:]]
    _hand_over(regions, offered, footprints, side)
    tidy = {}
    for name, region in regions.items():
        parts = _polygon_parts(region, side)
        tidy[name] = parts[0] if len(parts) == 1 else MultiPolygon(parts) if parts else Polygon()
    return tidy


def _write_atomically(path: Path, write) -> None:
    """Call ``write`` on a temporary name beside ``path`` (same extension), then rename
    what it wrote (with any companion files, e.g. a shapefile's) onto ``path``.

    On any error the temporary files are removed and ``path`` is left as it was. The
    files are created by ``write``, so they get the permissions the umask gives.
    """
    stem = f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}"  # removed by the next run if killed
    temporary = path.with_name(stem + path.suffix)
    try:
        write(temporary)
        for file in sorted(_named(path.parent, stem), key=lambda file: file == temporary):
            os.replace(file, path.with_name(path.stem + file.name[len(stem) :]))  # main last
    finally:
        for file in _named(path.parent, stem):
            if file.is_dir():  # a driver that writes a folder (e.g. shapefiles)
                shutil.rmtree(file)
            else:
                file.unlink()


def _named(folder: Path, stem: str) -> list[Path]:
    """The files of ``folder`` named ``stem`` plus an extension."""
    return [file for file in folder.iterdir() if file.name.startswith(f"{stem}.")]


def _half_plane(own, other, reach: float):
    """The side of the perpendicular bisector of ``own`` and ``other`` nearer ``other``."""
    from shapely.geometry import Polygon

    dx, dy = other.x - own.x, other.y - own.y
    length = math.hypot(dx, dy) or 1.0
    nx, ny = dx / length, dy / length  # towards ``other``
    mx, my = (own.x + other.x) / 2, (own.y + other.y) / 2
    tx, ty = -ny * reach, nx * reach  # along the bisector
    return Polygon(
        [
            (mx + tx, my + ty),
            (mx - tx, my - ty),
            (mx - tx + nx * reach, my - ty + ny * reach),
            (mx + tx + nx * reach, my + ty + ny * reach),
        ]
    )


def voronoi_center_seamline(
    input_images: ImagesLike, output_mask: str | os.PathLike, *, image_field_name: str = "image"
) -> str:
    """Write Voronoi-centre seamlines of the images as polygons (GeoPackage or any OGR
    format by extension), one feature per image with its name in ``image_field_name``."""
    return str(Seamline.voronoi(input_images).to_file(output_mask, image_field_name))


def least_cost_labels(labels: np.ndarray, difference: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Move the cut between every pair of neighbouring labels onto the cheapest path.

    Parameters
    ----------
    labels : int array (rows, cols)
        Image index + 1 of each cell (0 outside every image): the starting partition.
    difference : float array (n_images, n_images, rows, cols)
        Cost of a cut through each cell between two images (e.g. their absolute
        difference); only ``difference[i, j]`` with ``i < j`` is used.
    cover : bool array (n_images, rows, cols)
        Where each image has data.

    Returns
    -------
    The relabelled cells: within the overlap of each neighbouring pair, the cells on
    either side of the least-cost path between the ends of their current cut go to the
    image whose own (unshared) cells they touch.
    """
    from scipy import ndimage

    labels = labels.copy()
    n = cover.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            shared = cover[i] & cover[j] & ((labels == i + 1) | (labels == j + 1))
            if not shared.any():
                continue
            path = _cheapest_cut(labels, shared, difference[i, j], i + 1, j + 1)
            if path is None:
                continue
            pieces, count = ndimage.label(shared & ~path)
            own_i = ndimage.binary_dilation((labels == i + 1) & ~shared)
            own_j = ndimage.binary_dilation((labels == j + 1) & ~shared)
            for piece in range(1, count + 1):
                cells = pieces == piece
                touches_i, touches_j = (own_i & cells).any(), (own_j & cells).any()
                if touches_i != touches_j:
                    labels[cells] = i + 1 if touches_i else j + 1
    return labels


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
