"""Cut lines between overlapping images: one polygon per image, no gaps, no overlaps."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from attrs import define

from .collection import ImageCollection, PathsLike


@define
class Seamline:
    """Per image, the polygon of the mosaic it supplies (a partition of the union of the
    images' footprints).

    Attributes
    ----------
    polygons : dict of str to shapely geometry
        Image name -> polygon, in the images' CRS.
    crs : rasterio CRS
    """

    polygons: dict[str, Any]
    crs: Any

    @classmethod
    def voronoi(cls, images: ImageCollection | PathsLike) -> Seamline:
        """Split every overlap by nearest footprint centre, within the footprints.

        A point of the union goes to the image, among those covering it, whose footprint
        centroid is nearest: each image keeps its footprint less the parts of other
        footprints that lie on their side of the perpendicular bisector of the centres.

        Examples
        --------
        >>> seams = Seamline.voronoi("data/")
        >>> sorted(seams.polygons)[:2]
        ['tile_00', 'tile_01']
        """
        collection = ImageCollection.coerce(images)
        footprints = {image.name: image.footprint for image in collection}
        centres = {name: footprint.centroid for name, footprint in footprints.items()}
        left, bottom, right, top = collection.bounds
        reach = 4 * math.hypot(right - left, top - bottom)
        polygons = {}
        for name, footprint in footprints.items():
            region = footprint
            for other, other_footprint in footprints.items():
                if other == name or not region.intersects(other_footprint):
                    continue
                nearer = _half_plane(centres[name], centres[other], reach)
                region = region.difference(other_footprint.intersection(nearer))
            polygons[name] = region
        return cls(polygons, collection.crs)

    def to_geodataframe(self, field: str = "image"):
        """A GeoDataFrame with one row per image: ``field`` (its name) and the polygon."""
        import geopandas

        return geopandas.GeoDataFrame({field: list(self.polygons)},
                                      geometry=list(self.polygons.values()), crs=self.crs)

    def to_file(self, path: str | os.PathLike, field: str = "image") -> Path:
        """Write the polygons (e.g. a GeoPackage) with ``field`` naming the image."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        self.to_geodataframe(field).to_file(path)
        return path


def _half_plane(own, other, reach: float):
    """The side of the perpendicular bisector of ``own`` and ``other`` nearer ``other``."""
    from shapely.geometry import Polygon

    dx, dy = other.x - own.x, other.y - own.y
    length = math.hypot(dx, dy) or 1.0
    nx, ny = dx / length, dy / length              # towards ``other``
    mx, my = (own.x + other.x) / 2, (own.y + other.y) / 2
    tx, ty = -ny * reach, nx * reach               # along the bisector
    return Polygon([(mx + tx, my + ty), (mx - tx, my - ty),
                    (mx - tx + nx * reach, my - ty + ny * reach),
                    (mx + tx + nx * reach, my + ty + ny * reach)])


def voronoi_center_seamline(input_images: PathsLike, output_mask: str | os.PathLike, *,
                            image_field_name: str = "image") -> str:
    """Write Voronoi-centre seamlines of the images as polygons (GeoPackage or any OGR
    format by extension), one feature per image with its name in ``image_field_name``."""
    return str(Seamline.voronoi(input_images).to_file(output_mask, image_field_name))
