"""The published package's tests of ``Seamline.voronoi`` and ``Seamline.weighted``,
ported: the same calls with the same keywords, and the written layers checked."""

from __future__ import annotations

import geopandas
import pyogrio
import pytest
from conftest import write_polygons
from published_data import dummy_raster
from shapely.geometry import box
from shapely.ops import unary_union

from spectralmatch import Seamline, weighted_seamline
from spectralmatch.errors import SpectralMatchWarning


def regions_of(path, field: str, layer: str = "seamlines") -> dict:
    frame = geopandas.read_file(path, layer=layer)
    return dict(zip(frame[field], frame.geometry, strict=True))


@pytest.mark.parametrize("image_prefix, fill_value", [("A", 100), ("B", 120)])
def test_voronoi_with_every_option_writes_the_seamlines_and_debug_layers(
    tmp_path, image_prefix, fill_value
):
    """A at x 10 and B at x 20, 256 px squares: the cut is the bisector, x = 143."""
    inputs = [
        dummy_raster(
            tmp_path / "input" / f"{name}.tif",
            width=256,
            height=256,
            count=1,
            origin=(left, -10),
            fill=fill_value if name == image_prefix else fill_value + 50,
        )
        for name, left in (("A", 10), ("B", 20))
    ]
    output = tmp_path / "output" / "seamlines.gpkg"
    debug = tmp_path / "output" / "debug_vectors.gpkg"
    Seamline.voronoi(
        input_images=inputs,
        output_mask=str(output),
        image_field_name="source",
        debug_logs=True,
        debug_vectors_path=str(debug),
    )
    regions = regions_of(output, "source")
    assert regions["A"].symmetric_difference(box(10, -266, 143, -10)).area < 1e-9
    assert regions["B"].symmetric_difference(box(143, -266, 276, -10)).area < 1e-9
    assert pyogrio.list_layers(debug)[:, 0].tolist() == [
        "footprints",
        "centres",
        "voronoi_regions",
        "cutlines",
    ]


def test_voronoi_of_two_images_on_one_place_gives_it_to_the_first(tmp_path):
    """The published test's X and Y lie on one place: their centres are one point and
    have no bisector. The first keeps the place, and a warning says so."""
    inputs = [
        dummy_raster(tmp_path / "input" / f"{name}.tif", width=16, height=16, count=1, fill=v)
        for name, v in (("X", 75), ("Y", 85))
    ]
    output = tmp_path / "output" / "seamlines.gpkg"
    with pytest.warns(SpectralMatchWarning, match="X and Y have the same footprint centre"):
        Seamline.voronoi(input_images=inputs, output_mask=str(output))
    regions = regions_of(output, "image")
    assert list(regions) == ["X"]
    assert regions["X"].symmetric_difference(box(0, -6, 16, 10)).area < 1e-9


def test_weighted_seamline_gives_the_overlap_to_the_best_ranked(tmp_path):
    footprints = write_polygons(
        tmp_path / "footprints.gpkg",
        [box(0, 0, 10, 10), box(5, 0, 15, 10)],
        crs="EPSG:4326",
        layer="footprints",
        image=["A", "B"],
        quality=[5.0, 10.0],
        cloud=[20.0, 5.0],
    )
    output = tmp_path / "weighted_seamlines.gpkg"
    result = Seamline.weighted(
        input_polygons=str(footprints),
        output_mask=str(output),
        input_layer="footprints",
        rank_function="{quality} - {cloud}",
        image_field_name="image",
        debug_logs=True,
    )
    # published: the path; ours: the Seamline (weighted_seamline gives the path)
    written = geopandas.read_file(output, layer="seamlines").set_index("image")
    assert all(written.loc[name].geometry.equals(p) for name, p in result.polygons.items())
    assert set(written.index) == {"A", "B"}
    assert written.loc["B", "weighted_rank"] < written.loc["A", "weighted_rank"]
    assert written.loc["B"].geometry.area == pytest.approx(100.0)
    assert written.loc["A"].geometry.area == pytest.approx(50.0)
    assert unary_union(written.geometry).area == pytest.approx(150.0)
    again = tmp_path / "again.gpkg"
    assert weighted_seamline(
        str(footprints), str(again), input_layer="footprints", rank_function="{quality} - {cloud}"
    ) == str(again)
