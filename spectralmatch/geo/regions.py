"""Regions of a mosaic as shapely geometry: Voronoi regions of footprints and the tidying
that makes them a partition (valid polygons, no slivers, no overlaps)."""

from __future__ import annotations

import math
import warnings
from typing import Any

from ..errors import SpectralMatchWarning

#: Fraction of a pixel's side within which two regions are taken to touch.
TOUCH = 1e-3


def voronoi_regions(footprints: dict[str, Any]) -> dict[str, Any]:
    """Image name -> its footprint less the parts of other footprints whose centroid is
    nearer (before :func:`tidy`). Of two images with one centroid (no bisector), the
    first keeps their overlap, with a warning naming both."""
    centres = {name: footprint.centroid for name, footprint in footprints.items()}
    left, bottom, right, top = union(footprints.values()).bounds
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


def polygon_parts(geometry, side: float) -> list[Any]:
    """The polygons of ``geometry`` (made valid first); lines, points and polygons of no
    more area than floating-point dust (a square of a thousandth of a pixel ``side``)
    dropped."""
    import shapely

    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    parts = shapely.get_parts(shapely.get_parts(geometry))  # a collection's multi-parts too
    dust = (TOUCH * side) ** 2
    return [part for part in parts if part.geom_type == "Polygon" and part.area > dust]


def union(geometries) -> Any:
    """The union of ``geometries``."""
    import shapely

    return shapely.union_all(list(geometries))


def hand_over(regions: dict[str, Any], pieces, footprints: dict[str, Any], side: float) -> None:
    """Add every ``(owner, piece)`` to the region, among those whose image's footprint
    covers the piece, that shares the longest boundary with it; to its owner's region if
    no such region borders it along more than a point."""
    tolerance = TOUCH * side
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


def tidy(regions: dict[str, Any], footprints: dict[str, Any], side: float) -> dict[str, Any]:
    """The regions as valid Polygons or MultiPolygons, each its largest part plus the
    other parts that no neighbour can take.

    Lines and points (slivers of overlay arithmetic) are dropped; every part but the
    largest, and a largest part under a pixel, is handed over to the neighbour that
    covers it and borders it most (see :func:`hand_over`).
    """
    from shapely.geometry import Polygon

    regions = dict(regions)
    offered = []
    for name, region in regions.items():
        parts = sorted(polygon_parts(region, side), key=lambda part: part.area, reverse=True)
        kept = 1 if parts and parts[0].area >= side * side else 0
        regions[name] = parts[0] if kept else Polygon()
        offered += [(name, part) for part in parts[kept:]]
    hand_over(regions, offered, footprints, side)
    return {name: as_region(region, side) for name, region in regions.items()}


def as_region(geometry, side: float = 0.0) -> Any:
    """``geometry``'s polygons (see :func:`polygon_parts`) as one Polygon or
    MultiPolygon (an empty Polygon if it has none)."""
    from shapely.geometry import MultiPolygon, Polygon

    parts = polygon_parts(geometry, side)
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
