"""Seamlines: clean polygons that partition the footprints, cuts moved to where images
agree, and files written as one polygon layer, atomically."""

from __future__ import annotations

import os
import stat

import geopandas
import numpy as np
import pyogrio
import pytest
import shapely
from conftest import DATA_DIR, file_digest, folder_listing, write_raster
from rasterio.transform import from_origin
from shapely.geometry import LineString
from shapely.ops import unary_union

from spectralmatch import ImageCollection, Seamline, SpectralMatchError, merge_rasters
from spectralmatch.errors import SpectralMatchWarning

BUILDERS = {
    "voronoi": Seamline.voronoi,
    "least-cost": Seamline.least_cost,
    "least-cost/2": lambda images: Seamline.least_cost(images, decimation=2),
}


@pytest.fixture(scope="module")
def matched(tmp_path_factory) -> ImageCollection:
    """The sample tiles after matching (where least-cost cuts used to leave slivers)."""
    from spectralmatch import Mosaic

    return Mosaic().fit_transform(DATA_DIR, tmp_path_factory.mktemp("matched"))


def assert_clean_partition(seams: Seamline, collection: ImageCollection) -> None:
    """Valid Polygons or MultiPolygons, no part under a pixel, each inside its own
    footprint, no island another image could supply, no gap, no overlap."""
    pixel = min(abs(image.transform.a * image.transform.e) for image in collection)
    footprints = {image.name: image.footprint for image in collection}
    union = unary_union(list(footprints.values()))
    assert sorted(seams.polygons) == sorted(footprints)
    for name, region in seams.polygons.items():
        assert region.geom_type in ("Polygon", "MultiPolygon") and region.is_valid, name
        parts = sorted(shapely.get_parts(region), key=lambda part: part.area)
        assert parts[0].area >= pixel, name
        assert region.difference(footprints[name]).area < 1e-3 * pixel, name
        others = unary_union([footprint for n, footprint in footprints.items() if n != name])
        for part in parts[:-1]:  # a second part holds ground that only its image covers
            assert part.difference(others).area >= pixel, name
    regions = list(seams.polygons.values())
    assert sum(region.area for region in regions) == pytest.approx(union.area, rel=1e-9)
    assert unary_union(regions).symmetric_difference(union).area < 1e-3 * pixel
    for i, region in enumerate(regions):
        for other in regions[i + 1 :]:
            assert region.intersection(other).area < 1e-3 * pixel


@pytest.mark.parametrize("method", BUILDERS)
@pytest.mark.parametrize("tiles", ["input", "matched"])
def test_seamlines_are_clean_polygons_partitioning_the_footprints(tiles, method, matched):
    collection = ImageCollection.from_paths(DATA_DIR) if tiles == "input" else matched
    assert_clean_partition(BUILDERS[method](collection), collection)


def test_seamline_file_is_one_multipolygon_layer_in_the_images_crs(tmp_path, matched):
    seams = Seamline.least_cost(matched, decimation=2)
    path = seams.to_file(tmp_path / "seams.gpkg", field="img")
    assert pyogrio.read_info(path)["geometry_type"] == "MultiPolygon"
    layer = geopandas.read_file(path)
    assert layer.crs == matched.crs
    assert set(layer.geom_type) == {"MultiPolygon"} and layer.is_valid.all()
    assert list(layer["img"]) == list(seams.polygons)
    for name, region in zip(layer["img"], layer.geometry, strict=True):
        assert region.symmetric_difference(seams.polygons[name]).area < 1e-6


def test_seamline_file_is_written_atomically_with_the_umask_permissions(tmp_path):
    voronoi, least = Seamline.voronoi(DATA_DIR), Seamline.least_cost(DATA_DIR)
    path = tmp_path / "seams.gpkg"
    previous = os.umask(0o027)
    try:
        voronoi.to_file(path)
        least.to_file(path)  # replaces the file
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    written = geopandas.read_file(path).set_index("image").geometry
    assert all(written[name].equals(least.polygons[name]) for name in least.polygons)
    before = file_digest(path)
    # GeoPackage reserves "fid": the driver fails once the file has been created
    for target in (path, tmp_path / "other.gpkg"):
        with pytest.raises(SpectralMatchError, match=f"{target.name}: cannot write seamlines"):
            voronoi.to_file(target, field="fid")
    assert file_digest(path) == before
    assert folder_listing(tmp_path) == ["seams.gpkg"]


def test_least_cost_cut_follows_the_line_where_the_images_agree(tmp_path):
    """Two images of the same ground whose difference grows by 1 DN per metre away from
    x = 680 m: the Voronoi cut (x = 800) crosses a difference of 120, the least-cost cut
    moves to x = 680 (within a cell of 40 m), and the merged cut is far less visible."""
    from spectralmatch.report.metrics import seam_contrast

    rows, cols = 100, 100
    ground = np.random.default_rng(0).normal(1000, 5, (rows, 160))
    difference = np.abs(np.arange(160) * 10.0 + 5 - 680)[None]
    folder = tmp_path / "pair"
    for name, first, shift in (("a", 0, 0), ("b", 60, difference)):
        values = (ground + shift)[:, first : first + cols]
        write_raster(
            folder / f"{name}.tif",
            values[None].astype("uint16"),
            transform=from_origin(first * 10.0, 1000.0, 10, 10),
            nodata=0,
        )
    collection = ImageCollection.from_paths(folder)
    voronoi, least = Seamline.voronoi(collection), Seamline.least_cost(collection)
    assert_clean_partition(least, collection)
    middle = LineString([(0, 500), (1600, 500)])
    assert voronoi.polygons["a"].intersection(middle).bounds[2] == pytest.approx(800)
    assert 640 <= least.polygons["a"].intersection(middle).bounds[2] <= 720
    contrast = {}
    for label, seams in (("voronoi", voronoi), ("least", least)):
        merged = merge_rasters(collection, tmp_path / f"{label}.tif", seamlines=seams)
        contrast[label] = seam_contrast(merged, seams)[0]
    assert contrast["least"] < 0.5 * contrast["voronoi"]


@pytest.mark.filterwarnings("ignore:'crs' was not provided")  # writing the test's file
def test_seamlines_from_a_file_without_crs_are_taken_in_the_images_with_a_warning(tmp_path):
    collection = ImageCollection.from_paths(DATA_DIR)
    seams = Seamline.voronoi(collection).to_geodataframe()
    path = tmp_path / "seams.gpkg"
    seams.set_crs(None, allow_override=True).to_file(path)
    code = collection.crs.to_string()
    for crs in (collection.crs, code):  # a rasterio CRS or its code, as users give it
        with pytest.warns(
            SpectralMatchWarning,
            match=f"seams.gpkg: no CRS in this seamlines file; taken to be {code}",
        ):
            read = Seamline.coerce(path, crs=crs)
        assert sorted(read.polygons) == collection.names
