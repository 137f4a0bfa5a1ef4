"""The published seamline, mask and vector calls: their keywords, on the sample tiles."""

from __future__ import annotations

import geopandas
import numpy as np
import pyogrio
import pytest
import rasterio
from conftest import DATA_DIR, file_digest, write_polygons, write_raster
from shapely.geometry import LineString, box
from shapely.ops import unary_union

from spectralmatch import (
    ImageCollection,
    Seamline,
    SpectralMatchError,
    mask_rasters,
    merge_vectors,
    voronoi_center_seamline,
    weighted_seamline,
)
from spectralmatch.errors import SpectralMatchWarning


@pytest.fixture(scope="module")
def tiles() -> ImageCollection:
    return ImageCollection.from_paths(DATA_DIR)


@pytest.fixture(scope="module")
def voronoi(tiles) -> Seamline:
    return Seamline.voronoi(tiles)


def regions_of(path, field="image", layer=None) -> dict:
    frame = geopandas.read_file(path, layer=layer)
    return dict(zip(frame[field], frame.geometry, strict=True))


def test_published_call_shapes_write_the_seamlines_mask_rasters_reads(tmp_path, voronoi):
    out = voronoi_center_seamline(
        input_images=str(DATA_DIR),
        output_mask=str(tmp_path / "ImageMasks.gpkg"),
        image_field_name="image",
    )
    assert out == str(tmp_path / "ImageMasks.gpkg")
    assert pyogrio.list_layers(out)[:, 0].tolist() == ["seamlines"]
    written = regions_of(out)
    assert all(written[name].equals(region) for name, region in voronoi.polygons.items())
    seams = Seamline.voronoi(
        input_images=str(DATA_DIR), output_mask=str(tmp_path / "m.gpkg"), image_field_name="img"
    )
    assert regions_of(tmp_path / "m.gpkg", "img").keys() == seams.polygons.keys()
    outputs = mask_rasters(
        input_images=str(DATA_DIR),
        output_images=str(tmp_path / "Clipped"),
        vector_mask=("include", out, "image"),
    )
    assert [p.split("/")[-1] for p in outputs] == [f"tile_0{i}.tif" for i in range(4)]


def test_aoi_path_clips_the_regions_and_names_the_images_left_out(tmp_path, voronoi):
    aoi = voronoi.polygons["tile_00"].centroid.buffer(1500)
    aoi_path = write_polygons(tmp_path / "aoi.gpkg", [aoi], crs=voronoi.crs)
    with pytest.warns(SpectralMatchWarning, match="tile_01, tile_02, tile_03 lie outside"):
        seams = Seamline.voronoi(DATA_DIR, tmp_path / "m.gpkg", aoi_path=aoi_path)
    assert list(seams.polygons) == ["tile_00"]
    clipped = seams.polygons["tile_00"]
    assert clipped.symmetric_difference(voronoi.polygons["tile_00"].intersection(aoi)).area < 1
    assert list(regions_of(tmp_path / "m.gpkg")) == ["tile_00"]


def test_vector_mask_gives_the_footprints_by_exact_or_partial_name(tmp_path, tiles):
    shrunk = [image.footprint.buffer(-1500) for image in tiles]
    names = ["00", "tile_01", "tile_02", "tile_03"]  # "00" is part of tile_00 only
    path = write_polygons(tmp_path / "fp.gpkg", shrunk, crs=tiles.crs, scene=names)
    seams = Seamline.voronoi(tiles, vector_mask=(str(path), "scene"))
    for region, footprint in zip(seams.polygons.values(), shrunk, strict=True):
        assert region.difference(footprint).area < 1
    union = unary_union(list(seams.polygons.values()))
    assert union.symmetric_difference(unary_union(shrunk)).area < 1
    write_polygons(tmp_path / "few.gpkg", shrunk[:3], crs=tiles.crs, scene=names[:3])
    with pytest.raises(SpectralMatchError, match="few.gpkg: no polygon whose 'scene' .* tile_03"):
        Seamline.voronoi(tiles, vector_mask=(str(tmp_path / "few.gpkg"), "scene"))


def test_min_point_spacing_and_min_cut_length_are_checked_and_change_nothing(tiles, voronoi):
    other = Seamline.voronoi(tiles, min_point_spacing=0.5, min_cut_length=250)
    assert all(other.polygons[name].equals(voronoi.polygons[name]) for name in voronoi.polygons)
    for keyword, value in (("min_point_spacing", 0), ("min_cut_length", -1)):
        with pytest.raises(SpectralMatchError, match=f"Seamline.voronoi: {keyword} must be"):
            Seamline.voronoi(tiles, **{keyword: value})
    for keyword, value in (("vector_mask", "fp.gpkg"), ("aoi_path", 3)):
        with pytest.raises(SpectralMatchError, match=f"Seamline.voronoi: {keyword} must be"):
            Seamline.voronoi(tiles, **{keyword: value})


def test_debug_vectors_hold_footprints_centres_raw_regions_and_cut_lines(tmp_path, tiles):
    debug = tmp_path / "debug" / "steps.gpkg"
    seams = Seamline.voronoi(tiles, debug_vectors_path=debug, image_field_name="img")
    layers = pyogrio.list_layers(debug)[:, 0].tolist()
    assert layers == ["footprints", "centres", "voronoi_regions", "cutlines"]
    footprints = regions_of(debug, "img", "footprints")
    assert all(footprints[image.name].equals(image.footprint) for image in tiles)
    cuts = geopandas.read_file(debug, layer="cutlines")
    assert len(cuts) >= 3
    for first, second, line in zip(cuts["first"], cuts["second"], cuts.geometry, strict=True):
        for name in (first, second):  # the cut lies on both regions' edges
            assert line.difference(seams.polygons[name].boundary.buffer(0.01)).length < 1e-6


@pytest.fixture
def footprints(tmp_path):
    """Three overlapping boxes (b in two features) with a cloud cover each."""
    shapes = [box(0, 0, 600, 600), box(400, 0, 1000, 300), box(400, 300, 1000, 600)]
    shapes.append(box(300, 100, 500, 500))  # inside a and b: hidden when c or a wins
    return write_polygons(
        tmp_path / "fp.gpkg",
        shapes,
        image=["a", "b", "b", "c"],
        cloud=[20.0, 5.0, 5.0, 50.0],
    )


def test_weighted_seamline_lets_the_best_ranked_footprint_win(tmp_path, footprints):
    with pytest.warns(SpectralMatchWarning, match="c are wholly covered by better-ranked"):
        out = weighted_seamline(
            footprints,
            tmp_path / "w.gpkg",
            rank_function="1 / ({cloud} + 1)",
            output_layer="ranked",
        )
    assert pyogrio.list_layers(out)[:, 0].tolist() == ["ranked"]
    regions = regions_of(out, layer="ranked")
    assert list(regions) == ["b", "a"]  # c lies inside a and b
    assert regions["b"].symmetric_difference(box(400, 0, 1000, 600)).area < 1e-6
    assert regions["a"].symmetric_difference(box(0, 0, 400, 600)).area < 1e-6
    written = geopandas.read_file(out, layer="ranked").set_index("image")
    # the footprints' own fields, the published score and rank (1 = best) per image
    assert written.loc["b", "weighted_rank"] == 1 and written.loc["a", "weighted_rank"] == 2
    for name in ("a", "b"):
        cloud = written.loc[name, "cloud"]
        assert written.loc[name, "weighted_score"] == pytest.approx(1 / (cloud + 1))
    cloudiest = Seamline.weighted(footprints, rank_function="{cloud}", rank_descending=True)
    assert list(cloudiest.polygons) == ["c", "a", "b"]
    assert cloudiest.polygons["c"].symmetric_difference(box(300, 100, 500, 500)).area < 1e-6
    with pytest.warns(SpectralMatchWarning, match="c are wholly covered"):
        ascending = Seamline.weighted(footprints, rank_function="{cloud}", rank_descending=False)
    assert list(ascending.polygons) == ["b", "a"]


@pytest.mark.parametrize(
    ("rank_function", "message"),
    [
        ("cloud", "must be an expression of fields in braces"),
        ("{haze} * 2", "uses 'haze', which is not a field"),
        ("{image} + 1", "fails for image a"),
        ("__import__('os') + {cloud}", "is not allowed"),
        ("{cloud} +", "is not an expression"),
        ("log({cloud} - 5)", "fails for image b"),
    ],
)
def test_bad_rank_functions_are_named(footprints, rank_function, message):
    with pytest.raises(SpectralMatchError, match=f"rank_function .*{message}"):
        Seamline.weighted(footprints, rank_function=rank_function)


def test_merge_vectors_keeps_pools_or_intersects_the_files(tmp_path):
    folder = tmp_path / "vectors"
    write_polygons(folder / "east.gpkg", [box(5, 0, 15, 10)], zone=["e"])
    write_polygons(folder / "west.gpkg", [box(0, 0, 10, 10), box(20, 0, 30, 10)], zone=["w", "w"])
    kept = merge_vectors(folder, tmp_path / "kept.gpkg", "keep", create_name_attribute=("src", "_"))
    assert geopandas.read_file(kept)["src"].tolist() == ["east", "west", "west"]
    pooled = geopandas.read_file(
        merge_vectors(
            str(folder / "*.gpkg"), tmp_path / "u.gpkg", "union", create_name_attribute=("src", "+")
        )
    )
    assert len(pooled) == 3 and set(pooled["src"]) == {"east+west"}
    common = geopandas.read_file(merge_vectors(folder, tmp_path / "i.gpkg", "intersection"))
    assert common.geometry.union_all().symmetric_difference(box(5, 0, 10, 10)).area < 1e-9
    assert common["zone"].tolist() == ["e"]
    before = file_digest(kept)
    with pytest.raises(SpectralMatchError, match="merge_vectors: method must be one of"):
        merge_vectors(folder, kept, "dissolve")
    with pytest.raises(SpectralMatchError, match="create_name_attribute must be"):
        merge_vectors(folder, kept, "keep", create_name_attribute="src")
    with pytest.raises(SpectralMatchError, match="no vector file in input_vectors"):
        merge_vectors((tmp_path / "empty").mkdir() or tmp_path / "empty", kept, "keep")
    assert file_digest(kept) == before


@pytest.fixture
def stripes(tmp_path):
    """A 20 x 20 uint16 image of 1..400 with nodata 0 and a diagonal band of polygon."""
    values = np.arange(1, 401, dtype="uint16").reshape(20, 20)
    values[0, 0] = 0  # nodata
    image = write_raster(tmp_path / "img.tif", values, nodata=0)
    with rasterio.open(image) as dataset:
        left, top = dataset.transform.c, dataset.transform.f
    band = LineString([(left + 15, top - 15), (left + 585, top - 585)]).buffer(10)
    return image, write_polygons(tmp_path / "band.gpkg", [band])


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.nodata, dataset.dataset_mask()


def test_include_touched_pixels_keeps_every_pixel_the_polygon_touches(tmp_path, stripes):
    image, band = stripes
    centres = read(mask_rasters(image, tmp_path / "c", vector_mask=("include", band))[0])[0]
    touched = mask_rasters(
        image, tmp_path / "t", vector_mask=("include", band), include_touched_pixels=True
    )
    touched_values = read(touched[0])[0]
    assert (centres > 0).sum() < (touched_values > 0).sum()
    assert ((centres > 0) <= (touched_values > 0)).all()
    with pytest.raises(SpectralMatchError, match="include_touched_pixels must be True or False"):
        mask_rasters(image, tmp_path / "x", vector_mask=("include", band), include_touched_pixels=1)


def test_custom_nodata_value_marks_masked_and_nodata_pixels(tmp_path, stripes):
    image, band = stripes
    out = mask_rasters(image, tmp_path / "o", vector_mask=("exclude", band), custom_nodata_value=5)[
        0
    ]
    values, nodata, _ = read(out)
    source = read(image)[0]
    inside = read(mask_rasters(image, tmp_path / "i", vector_mask=("include", band))[0])[0] > 0
    assert nodata == 5
    assert (values[inside] == 5).all() and values[0, 0] == 5
    kept = ~inside & (source > 0)
    assert (values[kept] != 5).all()
    assert values[0, 4] == 6  # the valid pixel equal to 5 is moved, not lost
    assert (values[kept & (source != 5)] == source[kept & (source != 5)]).all()
    for bad in (70000, -1, "0"):
        with pytest.raises(SpectralMatchError, match="custom_nodata_value"):
            mask_rasters(
                image, tmp_path / "b", vector_mask=("include", band), custom_nodata_value=bad
            )


def test_an_image_without_nodata_gets_an_internal_mask(tmp_path, stripes):
    _, band = stripes
    image = write_raster(tmp_path / "raw.tif", np.full((20, 20), 7, dtype="uint16"))
    values, nodata, mask = read(
        mask_rasters(image, tmp_path / "o", vector_mask=("include", band))[0]
    )
    assert nodata is None
    assert 0 < (mask > 0).sum() < mask.size
    assert (values[mask == 0] == 0).all() and (values[mask > 0] == 7).all()
    assert (
        ImageCollection.from_paths(tmp_path / "o").images[0].statistics().count[0]
        == (mask > 0).sum()
    )


@pytest.mark.parametrize("mode, kept", [("yes", True), ("validate", False), ("no", False)])
def test_resume_keeps_an_existing_seamline_file_as_asked(tmp_path, tiles, mode, kept):
    output = tmp_path / "masks.gpkg"
    output.write_text("not a vector file")
    voronoi_center_seamline(tiles, str(output), resume_from_outputs=mode)
    if kept:
        assert output.read_text() == "not a vector file"
    else:
        assert sorted(regions_of(output)) == tiles.names
