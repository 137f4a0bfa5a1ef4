"""Cut lines between overlapping images: one polygon per image, no gaps, no overlaps."""

from __future__ import annotations

import ast
import math
import operator
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from attrs import define, field

from .._validation import BOOLEAN, NON_NEGATIVE, NONE, PATH, POSITIVE, AnyOf, InstanceOf, check
from ..engine.published import ResumeMode, takes_engine_keywords
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..masks.vector import polygons_by_name, read_layer
from ..raster.collection import ImageCollection, ImagesLike
from .vectors import reusable_vector, write_atomically, write_frame

#: The name of a field or a layer.
NAME = InstanceOf((str,), "a name (a string)")
OPTIONAL_PATH = AnyOf((NONE, PATH))

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
    attributes : dict of str to dict
        Image name -> further fields written with its polygon (``Seamline.weighted``
        keeps the footprint's attributes, ``weighted_score`` and ``weighted_rank``).
    """

    polygons: dict[str, Any]
    crs: Any
    attributes: dict[str, dict[str, Any]] = field(factory=dict)

    @classmethod
    @takes_engine_keywords
    def voronoi(
        cls,
        input_images: ImagesLike,
        output_mask: str | os.PathLike | None = None,
        *,
        aoi_path: str | os.PathLike | None = None,
        vector_mask: tuple[str | os.PathLike, str] | None = None,
        image_field_name: str = "image",
        min_point_spacing: float = 10.0,
        min_cut_length: float = 0.0,
        debug_vectors_path: str | os.PathLike | None = None,
    ) -> Seamline:
        """Split every overlap by nearest footprint centre, within the footprints.

        A point of the union goes to the image, among those covering it, whose footprint
        centroid is nearest: each image keeps its footprint less the parts of other
        footprints that lie on their side of the perpendicular bisector of the centres.
        Then every part of a region but its largest (and a largest part under a pixel)
        goes to the neighbour that covers it and borders it most, if there is one: each
        region is a valid Polygon or MultiPolygon without stray islands or slivers. Two
        images with one centre (the same footprint) have no bisector: the first of them
        keeps their overlap (with a warning), and an image left with nothing gets no
        polygon.

        Parameters
        ----------
        input_images : folder, glob pattern, list of paths or ImageCollection
        output_mask : path, optional
            Also write the seamlines there (layer ``"seamlines"``), one feature per image
            with its name in ``image_field_name``.
        aoi_path : path, optional
            A vector file whose polygons bound the result: each region is clipped to them,
            and an image left with nothing gets no polygon (with a warning).
        vector_mask : (path, field), optional
            Take each image's footprint from the polygons of this file whose ``field``
            equals the image's name (or, failing that, is part of it), instead of
            tracing its valid pixels.
        image_field_name : str
            The field of ``output_mask`` (and of the debug layers) holding the names.
        min_point_spacing, min_cut_length : float
            Accepted for the published call (> 0 and >= 0); they tune the sampling of the
            published cut, a path through a Voronoi diagram of points spaced along each
            overlap. Here each cut is the exact bisector of two footprint centres, which
            has neither points nor short edges to drop, so they change nothing.
        debug_vectors_path : path, optional
            Write the intermediate geometries there, one layer each: ``footprints``,
            ``centres``, ``voronoi_regions`` (before tidying) and ``cutlines`` (the shared
            edge of each pair of neighbouring regions).

        Returns
        -------
        Seamline

        Examples
        --------
        >>> seams = Seamline.voronoi("data/")
        >>> sorted(seams.polygons)[:2]
        ['tile_00', 'tile_01']
        """
        _check_voronoi_options(
            aoi_path, vector_mask, image_field_name, min_point_spacing, min_cut_length
        )
        collection = ImageCollection.coerce(input_images)
        if vector_mask is None:
            footprints = {image.name: image.footprint for image in collection}
        else:
            footprints = _footprints_from_file(collection, *vector_mask)
        regions = _voronoi_regions(footprints)
        tidy = _tidy(regions, footprints, _pixel_side(collection))
        kept = {name: region for name, region in tidy.items() if not region.is_empty}
        seams = cls(kept, collection.crs)
        if aoi_path is not None:
            seams = seams._clipped(aoi_path)
        if debug_vectors_path is not None:
            _write_debug_layers(debug_vectors_path, footprints, regions, seams, image_field_name)
        if output_mask is not None:
            seams.to_file(output_mask, image_field_name, layer="seamlines")
        return seams

    @classmethod
    @takes_engine_keywords
    def weighted(
        cls,
        input_polygons: str | os.PathLike,
        output_mask: str | os.PathLike | None = None,
        *,
        rank_function: str,
        image_field_name: str = "image",
        input_layer: str | None = None,
        output_layer: str = "seamlines",
        rank_descending: bool = True,
    ) -> Seamline:
        """Seamlines from ranked footprints: where footprints overlap, the best-ranked
        image supplies the mosaic.

        Parameters
        ----------
        input_polygons : path
            A polygon layer of footprints with a CRS; features with the same
            ``image_field_name`` are one image's (their union).
        output_mask : path, optional
            Also write the seamlines there, as layer ``output_layer``.
        rank_function : str
            An arithmetic expression of the footprints' numeric fields, each written in
            braces, e.g. ``"{cloud_cover}"`` or ``"1 / ({sun_elevation} + 1)"``; it may use
            ``+ - * / // % **`` and ``abs min max round sqrt log log10 exp``. An image's
            score is computed from its first feature's values.
        image_field_name : str
            The field naming each footprint's image (also in ``output_mask``).
        input_layer : str, optional
            The layer of ``input_polygons`` to read (default: its first).
        rank_descending : bool
            True: the highest score wins; False: the lowest. Ties go to the image whose
            name sorts first.

        Returns
        -------
        Seamline
            The regions in rank order: each image's footprint less those ranked above it.
            An image wholly hidden by better ones gets no region (with a warning).
        """
        check("Seamline.weighted", "rank_descending", rank_descending, BOOLEAN)
        check("Seamline.weighted", "output_layer", output_layer, NAME)
        check("Seamline.weighted", "image_field_name", image_field_name, NAME)
        score = _RankFunction.parse(rank_function)
        layer = read_layer(input_polygons, "footprints", layer=input_layer)
        if image_field_name not in layer.columns:
            raise SpectralMatchError(f"{input_polygons}: no field {image_field_name!r}")
        if layer.crs is None:
            raise SpectralMatchError(f"{input_polygons}: footprints have no CRS")
        ranked = _ranked_footprints(layer, image_field_name, score, rank_descending)
        regions = _painted([(name, footprint) for name, footprint, _ in ranked])
        attributes = {
            name: {**values, "weighted_rank": rank}
            for rank, (name, _, values) in enumerate(ranked, start=1)
            if name in regions
        }
        seams = cls(regions, layer.crs, attributes)
        if output_mask is not None:
            seams.to_file(output_mask, image_field_name, layer=output_layer)
        return seams

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
        regions = _redrawn(_voronoi_regions(footprints), grid, (start, labels), footprints, side)
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
        frame = _named_frame(self.polygons, field, self.crs)
        columns = sorted({key for values in self.attributes.values() for key in values} - {field})
        for column in columns:
            frame[column] = [self.attributes.get(name, {}).get(column) for name in self.polygons]
        return frame

    def to_file(
        self, path: str | os.PathLike, field: str = "image", layer: str | None = None
    ) -> Path:
        """Write the polygons as a MultiPolygon layer (e.g. a GeoPackage; the format
        follows the extension) named ``layer`` (default: the file stem), with ``field``
        naming the image.

        The file is written under a temporary name beside ``path`` and renamed when
        complete: a failure leaves ``path`` as it was.

        Raises
        ------
        SpectralMatchError
            If the file cannot be written.
        """
        return write_frame(path, self.to_geodataframe(field), layer, "seamlines")

    def _clipped(self, aoi_path: str | os.PathLike) -> Seamline:
        """The regions within the polygons of ``aoi_path``; images outside it dropped."""
        aoi = _union(read_layer(aoi_path, "area of interest").to_crs(self.crs).geometry)
        clipped = {
            name: _as_region(region.intersection(aoi)) for name, region in self.polygons.items()
        }
        outside = [name for name, region in clipped.items() if region.is_empty]
        if outside:
            warnings.warn(
                f"{aoi_path}: {', '.join(outside)} lie outside the area of interest and "
                "get no seamline polygon",
                SpectralMatchWarning,
                stacklevel=3,
            )
        return Seamline({k: v for k, v in clipped.items() if not v.is_empty}, self.crs)


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


def _voronoi_regions(footprints: dict[str, Any]) -> dict[str, Any]:
    """Image name -> its footprint less the parts of other footprints whose centroid is
    nearer (before :func:`_tidy`). Of two images with one centroid (no bisector), the
    first keeps their overlap, with a warning naming both."""
    centres = {name: footprint.centroid for name, footprint in footprints.items()}
    left, bottom, right, top = _union(footprints.values()).bounds
    reach = 4 * math.hypot(right - left, top - bottom)
    regions = {}
    earlier: list[str] = []
    for name, footprint in footprints.items():
        region = footprint
        for other, other_footprint in footprints.items():
            if other == name or not region.intersects(other_footprint):
                continue
            if centres[name].equals(centres[other]):
                if other in earlier:
                    _warn_same_centre(other, name)
                    region = region.difference(other_footprint)
                continue
            nearer = _half_plane(centres[name], centres[other], reach)
            region = region.difference(other_footprint.intersection(nearer))
        regions[name] = region
        earlier.append(name)
    return regions


def _warn_same_centre(first: str, second: str) -> None:
    warnings.warn(
        f"Seamline.voronoi: {first} and {second} have the same footprint centre, so no "
        f"bisector between them: their overlap goes to {first}, the first of the two",
        SpectralMatchWarning,
        stacklevel=5,
    )


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
    from shapely.geometry import Polygon

    regions = dict(regions)
    offered = []
    for name, region in regions.items():
        parts = sorted(_polygon_parts(region, side), key=lambda part: part.area, reverse=True)
        kept = 1 if parts and parts[0].area >= side * side else 0
        regions[name] = parts[0] if kept else Polygon()
        offered += [(name, part) for part in parts[kept:]]
    _hand_over(regions, offered, footprints, side)
    return {name: _as_region(region, side) for name, region in regions.items()}


def _as_region(geometry, side: float = 0.0) -> Any:
    """``geometry``'s polygons (see :func:`_polygon_parts`) as one Polygon or
    MultiPolygon (an empty Polygon if it has none)."""
    from shapely.geometry import MultiPolygon, Polygon

    parts = _polygon_parts(geometry, side)
    return parts[0] if len(parts) == 1 else MultiPolygon(parts) if parts else Polygon()


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


@takes_engine_keywords
def voronoi_center_seamline(
    input_images: ImagesLike,
    output_mask: str | os.PathLike,
    *,
    aoi_path: str | os.PathLike | None = None,
    vector_mask: tuple[str | os.PathLike, str] | None = None,
    image_field_name: str = "image",
    min_point_spacing: float = 10.0,
    min_cut_length: float = 0.0,
    debug_vectors_path: str | os.PathLike | None = None,
    resume_from_outputs: ResumeMode = "no",
) -> str:
    """Write Voronoi-centre seamlines of the images to ``output_mask`` (GeoPackage or any
    OGR format by extension, layer ``"seamlines"``), one feature per image with its name
    in ``image_field_name``; the keywords are those of :meth:`Seamline.voronoi`.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`. With
    ``resume_from_outputs`` ``"yes"`` an existing ``output_mask`` is kept (``"validate"``:
    if it reads as a layer with features).

    Returns
    -------
    str
        ``output_mask``.
    """
    if reusable_vector(output_mask, resume_from_outputs):
        return str(output_mask)
    Seamline.voronoi(
        input_images,
        output_mask,
        aoi_path=aoi_path,
        vector_mask=vector_mask,
        image_field_name=image_field_name,
        min_point_spacing=min_point_spacing,
        min_cut_length=min_cut_length,
        debug_vectors_path=debug_vectors_path,
    )
    return str(output_mask)


@takes_engine_keywords
def weighted_seamline(
    input_polygons: str | os.PathLike,
    output_mask: str | os.PathLike,
    *,
    rank_function: str,
    image_field_name: str = "image",
    input_layer: str | None = None,
    output_layer: str = "seamlines",
    rank_descending: bool = True,
    resume_from_outputs: ResumeMode = "no",
) -> str:
    """Write seamlines from ranked footprints to ``output_mask`` (layer ``output_layer``):
    where footprints overlap, the best-ranked image wins; the keywords are those of
    :meth:`Seamline.weighted`.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`. With
    ``resume_from_outputs`` ``"yes"`` an existing ``output_mask`` is kept (``"validate"``:
    if it reads as a layer with features).

    Returns
    -------
    str
        ``output_mask``.
    """
    if reusable_vector(output_mask, resume_from_outputs):
        return str(output_mask)
    Seamline.weighted(
        input_polygons,
        output_mask,
        rank_function=rank_function,
        image_field_name=image_field_name,
        input_layer=input_layer,
        output_layer=output_layer,
        rank_descending=rank_descending,
    )
    return str(output_mask)


def _check_voronoi_options(
    aoi_path, vector_mask, image_field_name, min_point_spacing, min_cut_length
) -> None:
    owner = "Seamline.voronoi"
    check(owner, "aoi_path", aoi_path, OPTIONAL_PATH)
    check(owner, "image_field_name", image_field_name, NAME)
    check(owner, "min_point_spacing", min_point_spacing, POSITIVE)
    check(owner, "min_cut_length", min_cut_length, NON_NEGATIVE)
    if vector_mask is not None and not (
        isinstance(vector_mask, (tuple, list))
        and len(vector_mask) == 2
        and PATH.accepts(vector_mask[0])
        and NAME.accepts(vector_mask[1])
    ):
        raise SpectralMatchError(
            f"{owner}: vector_mask must be (path, field name), got {vector_mask!r}"
        )


def _footprints_from_file(
    collection: ImageCollection, path: str | os.PathLike, field: str
) -> dict[str, Any]:
    """Image name -> the union of the polygons of ``path`` whose ``field`` equals the
    name, or (if none does) is part of it; a clear error for an image with none."""
    layer = read_layer(path, "footprints")
    if field not in layer.columns:
        raise SpectralMatchError(f"{path}: no field {field!r}")
    if layer.crs is not None and collection.crs is not None:
        layer = layer.to_crs(collection.crs)
    values = layer[field].astype(str)
    footprints = {}
    for name in collection.names:
        chosen = layer.geometry[values == name]
        if chosen.empty:
            chosen = layer.geometry[[value in name for value in values]]
        region = _as_region(_union(chosen.dropna()))
        if region.is_empty:
            raise SpectralMatchError(f"{path}: no polygon whose {field!r} matches image {name}")
        footprints[name] = region
    return footprints


def _write_debug_layers(
    path: str | os.PathLike,
    footprints: dict[str, Any],
    regions: dict[str, Any],
    seams: Seamline,
    field: str,
) -> None:
    """Write the footprints, their centres, the raw Voronoi regions and the cut lines
    between neighbouring seamline regions to ``path``, one layer each, atomically."""
    import geopandas

    centres = {name: footprint.centroid for name, footprint in footprints.items()}
    names = list(seams.polygons)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    cuts = {pair: _cut_line(*(seams.polygons[name] for name in pair)) for pair in pairs}
    cuts = {pair: line for pair, line in cuts.items() if not line.is_empty}
    layers = {
        "footprints": _named_frame(footprints, field, seams.crs),
        "centres": geopandas.GeoDataFrame(
            {field: list(centres)}, geometry=list(centres.values()), crs=seams.crs
        ),
        "voronoi_regions": _named_frame(
            {name: _as_region(region) for name, region in regions.items()}, field, seams.crs
        ),
        "cutlines": geopandas.GeoDataFrame(
            {"first": [a for a, _ in cuts], "second": [b for _, b in cuts]},
            geometry=list(cuts.values()),
            crs=seams.crs,
        ),
    }

    def write(temporary: Path) -> None:
        for name, frame in layers.items():
            frame.to_file(temporary, layer=name)

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(target, write)
    except Exception as error:  # noqa: BLE001 - any writer failure names the file
        raise SpectralMatchError(f"{path}: cannot write debug vectors ({error})") from error


def _cut_line(first, second) -> Any:
    """The shared edge of two regions as a MultiLineString (empty if they only touch at
    points or not at all)."""
    import shapely
    from shapely.geometry import MultiLineString

    shared = first.boundary.intersection(second.boundary)
    lines = [
        part
        for part in shapely.get_parts(shared)
        if part.geom_type == "LineString" and not part.is_empty
    ]
    merged = shapely.line_merge(MultiLineString(lines)) if lines else MultiLineString()
    return MultiLineString([merged]) if merged.geom_type == "LineString" else merged


def _named_frame(polygons: dict[str, Any], field: str, crs: Any) -> Any:
    """A GeoDataFrame of ``polygons``: ``field`` holds the names, every geometry a
    MultiPolygon (one geometry type for the whole layer)."""
    import geopandas
    from shapely.geometry import MultiPolygon

    geometries = [
        MultiPolygon([region]) if region.geom_type == "Polygon" else region
        for region in polygons.values()
    ]
    return geopandas.GeoDataFrame({field: list(polygons)}, geometry=geometries, crs=crs)


def _ranked_footprints(layer, field: str, score: _RankFunction, descending: bool):
    """(name, footprint, attributes with ``weighted_score``) of each image, best-ranked
    first."""
    scored = []
    for name, features in layer.groupby(field, sort=False):
        values = features.iloc[0].drop(labels=[features.geometry.name]).to_dict()
        value = score(values, f"image {name}")
        attributes = {**values, "weighted_score": value}
        key = (-value if descending else value, str(name))
        scored.append((key, str(name), _union(features.geometry), attributes))
    return [(name, footprint, values) for _, name, footprint, values in sorted(scored)]


def _painted(ranked: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each footprint less the ones ranked above it; wholly hidden images dropped (with
    a warning)."""
    from shapely.geometry import Polygon

    regions: dict[str, Any] = {}
    covered = Polygon()
    hidden = []
    for name, footprint in ranked:
        region = _as_region(footprint.difference(covered))
        if region.is_empty:
            hidden.append(name)
            continue
        regions[name] = region
        covered = covered.union(footprint)
    if hidden:
        warnings.warn(
            f"Seamline.weighted: {', '.join(hidden)} are wholly covered by better-ranked "
            "images and get no seamline polygon",
            SpectralMatchWarning,
            stacklevel=4,
        )
    return regions


_RANK_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
}
_RANK_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@define
class _RankFunction:
    """A parsed ``rank_function``: arithmetic over ``{field}`` placeholders, evaluated
    on a feature's values without ``eval``."""

    text: str
    tree: ast.expr
    fields: dict[str, str]  # variable name in the tree -> field name

    @classmethod
    def parse(cls, text: Any) -> _RankFunction:
        if not isinstance(text, str) or not _PLACEHOLDER.search(text):
            raise SpectralMatchError(
                "Seamline.weighted: rank_function must be an expression of fields in "
                f"braces, e.g. '{{cloud_cover}}', got {text!r}"
            )
        names: dict[str, str] = {}
        for match in _PLACEHOLDER.finditer(text):
            names.setdefault(match.group(1), f"field_{len(names)}")
        rewritten = _PLACEHOLDER.sub(lambda match: names[match.group(1)], text)
        try:
            tree = ast.parse(rewritten, mode="eval").body
        except SyntaxError as error:
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {text!r} is not an expression ({error.msg})"
            ) from None
        return cls(text, tree, {variable: field for field, variable in names.items()})

    def __call__(self, values: dict[str, Any], what: str) -> float:
        """The score of a feature with ``values`` (``what`` names it in errors)."""
        missing = [field for field in self.fields.values() if field not in values]
        if missing:
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {self.text!r} uses {missing[0]!r}, "
                "which is not a field of input_polygons"
            )
        try:
            score = float(self._evaluate(self.tree, values))
        except (ArithmeticError, TypeError, ValueError) as error:
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {self.text!r} fails for {what} ({error})"
            ) from None
        if not math.isfinite(score):
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {self.text!r} gives {score} for {what}"
            )
        return score

    def _evaluate(self, node: ast.expr, values: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.fields:
            return values[self.fields[node.id]]
        if isinstance(node, ast.BinOp) and type(node.op) in _RANK_OPERATORS:
            left, right = self._evaluate(node.left, values), self._evaluate(node.right, values)
            return _RANK_OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _RANK_OPERATORS:
            return _RANK_OPERATORS[type(node.op)](self._evaluate(node.operand, values))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _RANK_FUNCTIONS
            and not node.keywords
        ):
            arguments = [self._evaluate(argument, values) for argument in node.args]
            return _RANK_FUNCTIONS[node.func.id](*arguments)
        raise ValueError(f"{ast.unparse(node)!r} is not allowed")
