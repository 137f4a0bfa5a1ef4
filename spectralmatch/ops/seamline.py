"""Cut lines between overlapping images: one polygon per image, no gaps, no overlaps."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from attrs import define, field

from .._validation import BOOLEAN, NON_NEGATIVE, NONE, PATH, POSITIVE, AnyOf, InstanceOf, check
from ..engine.published import ResumeMode, takes_engine_keywords
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.regions import as_region, tidy, union, voronoi_regions
from ..masks.vector import polygons_by_name, read_layer
from ..raster.collection import ImageCollection, ImagesLike
from .least_cost import CoarseGrid, CutCosts, least_cost_labels, pixel_side, redrawn
from .ranking import RankFunction, painted, ranked_footprints
from .vectors import reusable_vector, write_atomically, write_frame

#: The name of a field or a layer.
NAME = InstanceOf((str,), "a name (a string)")
OPTIONAL_PATH = AnyOf((NONE, PATH))


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
        regions = voronoi_regions(footprints)
        tidied = tidy(regions, footprints, pixel_side(collection))
        kept = {name: region for name, region in tidied.items() if not region.is_empty}
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
        score = RankFunction.parse(rank_function)
        layer = read_layer(input_polygons, "footprints", layer=input_layer)
        if image_field_name not in layer.columns:
            raise SpectralMatchError(f"{input_polygons}: no field {image_field_name!r}")
        if layer.crs is None:
            raise SpectralMatchError(f"{input_polygons}: footprints have no CRS")
        ranked = ranked_footprints(layer, image_field_name, score, rank_descending)
        regions = painted([(name, footprint) for name, footprint, _ in ranked])
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
        grid = CoarseGrid.over(collection, decimation)
        values, cover = grid.sample(collection)
        start = grid.nearest_centre_labels(collection, cover)
        labels = least_cost_labels(start, CutCosts.of(values, cover).between, cover)
        footprints = {image.name: image.footprint for image in collection}
        side = pixel_side(collection)
        regions = redrawn(voronoi_regions(footprints), grid, (start, labels), footprints, side)
        return cls(tidy(regions, footprints, side), collection.crs)

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
        aoi = union(read_layer(aoi_path, "area of interest").to_crs(self.crs).geometry)
        clipped = {
            name: as_region(region.intersection(aoi)) for name, region in self.polygons.items()
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
        region = as_region(union(chosen.dropna()))
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
            {name: as_region(region) for name, region in regions.items()}, field, seams.crs
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
