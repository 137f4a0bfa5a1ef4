"""Band math, thresholds and polygons on the sample tiles and small rasters written here:
the safe expression language, nodata, percentiles and the traced areas."""

from __future__ import annotations

import geopandas
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from conftest import read_raster, write_raster
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import box

from spectralmatch import (
    ExpressionMask,
    Image,
    SpectralMatchError,
    band_math,
    create_ndvi_raster,
    create_ndwi_raster,
    process_raster_values_to_vector_polygons,
    threshold_raster,
)
from spectralmatch.cli.main import main
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.masks.expression import Expression
from spectralmatch.ops.bandmath import PERCENTILE_BINS, image_percentiles

PIXEL = 30.0
TRANSFORM = Affine(PIXEL, 0.0, 700000.0, 0.0, -PIXEL, -2800000.0)


def tile_bands(path, window=None) -> tuple[np.ndarray, np.ndarray]:
    """Values (float64) and validity of a sample tile."""
    with rasterio.open(path) as dataset:
        values = dataset.read(window=window).astype(np.float64)
        return values, values != dataset.nodata


# ---------------------------------------------------------------------- band math


def test_ndvi_of_a_sample_tile_equals_a_hand_computation_on_a_window(data_dir, tmp_path):
    tile = data_dir / "tile_00.tif"
    (out,) = create_ndvi_raster(tile, tmp_path / "ndvi.tif", red_band=1, nir_band=3, window_size=96)
    window = Window(50, 40, 300, 319)  # crosses window edges and nodata
    values, valid = tile_bands(tile, window)
    red, nir = values[0], values[2]
    with np.errstate(invalid="ignore"):  # 0 / 0 at nodata
        expected = np.where(valid[0] & valid[2], (nir - red) / (nir + red), np.nan)
    with rasterio.open(out) as dataset:
        assert dataset.dtypes == ("float32",) and np.isnan(dataset.nodata)
        assert dataset.transform == Image(tile).transform
        written = dataset.read(1, window=window)
    assert np.isnan(expected).any() and (~np.isnan(expected)).any()
    np.testing.assert_array_equal(np.isnan(written), np.isnan(expected))
    np.testing.assert_allclose(written, expected.astype(np.float32), rtol=1e-6, equal_nan=True)


def test_ndwi_and_band_math_give_the_same_index(data_dir, tmp_path):
    tile = data_dir / "tile_01.tif"
    (ndwi,) = create_ndwi_raster(tile, tmp_path / "ndwi.tif", green_band=2, nir_band=3)
    (same,) = band_math(tile, tmp_path / "bm.tif", expression="(b2 - b3) / (b2 + b3)")
    np.testing.assert_array_equal(read_raster(ndwi), read_raster(same))


def test_nodata_propagates_from_each_band_the_expression_reads(tmp_path):
    data = np.full((3, 6, 6), 50, dtype=np.uint16)
    data[0, 0, 0] = 0  # band 1 nodata
    data[1, 1, 1] = 0  # band 2 nodata
    data[2, 2, 2] = 0  # band 3 nodata: not read by the expression
    source = write_raster(tmp_path / "in.tif", data, transform=TRANSFORM, nodata=0)
    (out,) = band_math(source, tmp_path / "sum.tif", "B1 + B2")
    result = read_raster(out)[0]
    assert np.isnan(result[0, 0]) and np.isnan(result[1, 1])
    assert result[2, 2] == 100 and np.count_nonzero(np.isnan(result)) == 2


def test_a_division_by_zero_is_nodata_with_a_warning(tmp_path):
    data = np.full((2, 4, 4), 10.0, dtype=np.float32)
    data[1, 0, :] = -10.0  # B1 + B2 = 0 on the first row
    source = write_raster(tmp_path / "in.tif", data, transform=TRANSFORM)
    with pytest.warns(SpectralMatchWarning, match=r"in\.tif.*4 valid pixels have no finite"):
        (out,) = band_math(source, tmp_path / "out.tif", expression="B1 / (B1 + B2)")
    result = read_raster(out)[0]
    assert np.isnan(result[0]).all() and (result[1:] == 0.5).all()


def test_output_dtype_is_uint8_for_a_comparison_and_can_be_given(data_dir, tmp_path):
    tile = data_dir / "tile_02.tif"
    (mask,) = band_math(tile, tmp_path / "mask.tif", "B1 > 1000 && !(B2 < 500)")
    (typed,) = band_math(tile, tmp_path / "typed.tif", "B1 * 2", custom_output_dtype="UInt16")
    values, valid = tile_bands(tile)
    with rasterio.open(mask) as dataset:
        assert dataset.dtypes == ("uint8",) and dataset.nodata == 255
        written = dataset.read(1)
    both = valid[0] & valid[1]
    expected = np.where(both, (values[0] > 1000) & ~(values[1] < 500), 255)
    np.testing.assert_array_equal(written, expected)
    with rasterio.open(typed) as dataset:
        assert dataset.dtypes == ("uint16",)
        np.testing.assert_array_equal(dataset.read(1)[valid[0]], values[0][valid[0]] * 2)


def test_band_descriptions_name_bands_when_unambiguous(tmp_path):
    data = np.stack([np.full((4, 4), 3.0), np.full((4, 4), 7.0)]).astype(np.float32)
    named = write_raster(
        tmp_path / "named.tif", data, transform=TRANSFORM, descriptions=["Red", "NIR"]
    )
    (out,) = band_math(named, tmp_path / "out.tif", expression="nir - RED")
    assert (read_raster(out) == 4).all()
    twice = write_raster(tmp_path / "twice.tif", data, transform=TRANSFORM, descriptions=["a", "A"])
    with pytest.raises(SpectralMatchError, match=r"twice\.tif.*'a'.*describes bands B1, B2"):
        band_math(twice, tmp_path / "out2.tif", expression="a * 2")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-2^2", -4.0),
        ("2^3^2", 512.0),
        ("1 + 2 * 3 - 4 / 2", 5.0),
        ("1 < 2 && 2 <= 2 || 0", 1.0),
        ("not 1 or 0 and 1", 0.0),
        ("!(3 == 3) ? 10 : 20", 20.0),
        ("1 ? 0 ? 5 : 6 : 7", 6.0),
        ("max(1, 9, 4) + min(2, 3) + abs(-1) + sqrt(16) + clip(12, 0, 10)", 26.0),
        ("ln(exp(2)) + log10(1000)", 5.0),
        ("1e2 + .5", 100.5),
    ],
)
def test_operators_and_functions_follow_muparsers_precedence(text, value):
    result = Expression.parse(text).bind(1).evaluate(np.zeros((1, 2, 2)))
    np.testing.assert_allclose(result, value)


HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "B1.__class__.__bases__",
    "(lambda: open('{marker}', 'w'))()",
    "[x for x in ().__class__.__base__.__subclasses__()]",
    "eval('1')",
    "exec(\"open('{marker}', 'w')\")",
    "B1; import os",
    "open('{marker}', 'w')",
    "getattr(B1, 'real')",
    "B1 if 1 else 0",
    "`B1`",
    "B1 @ B1",
    "(" * 500 + "1" + ")" * 500,
    "-" * 300 + "1",
    "1" + "+1" * 5000,
    "2" + "^2" * 100,
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_expressions_are_refused_without_anything_running(data_dir, tmp_path, template):
    marker = tmp_path / "ran"
    text = template.format(marker=marker)
    with pytest.raises(SpectralMatchError, match="expression"):
        band_math(data_dir / "tile_00.tif", tmp_path / "out.tif", expression=text)
    assert not marker.exists() and not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("B1 + * B2", "expected a number, a band or '\\(', found '\\*' at position 6"),
        ("(B1 + B2", "expected '\\)', found the end at position 9"),
        ("B1 + cloud", "unknown name 'cloud' at position 6"),
        ("B4 > 0", "band B4 at position 1 is out of range: the image has 3 bands"),
        ("B1 > 5%B9", "band B9 at position 8 is out of range"),
        ("log(B1)", "'log' is ambiguous"),
        ("B1 $ 2", "unexpected character '\\$' at position 4"),
        ("max(B1)", "max takes 2 to 32 arguments"),
    ],
)
def test_errors_name_the_file_the_expression_and_the_position(data_dir, tmp_path, text, message):
    with pytest.raises(SpectralMatchError, match=rf"tile_00\.tif.*{message}|{message}") as error:
        band_math(data_dir / "tile_00.tif", tmp_path / "out.tif", expression=text)
    assert repr(text) in str(error.value)


def test_exactly_one_of_threshold_math_and_expression(data_dir, tmp_path):
    for keywords in ({}, {"threshold_math": "B1", "expression": "B1"}):
        with pytest.raises(
            SpectralMatchError, match="exactly one of threshold_math and expression"
        ):
            band_math(data_dir / "tile_00.tif", tmp_path / "out.tif", **keywords)


# ---------------------------------------------------------------------- percentiles


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_percentiles_equal_numpys_within_the_histograms_resolution(data_dir, tmp_path, dtype):
    values, valid = tile_bands(data_dir / "tile_03.tif")
    if dtype == "float32":  # a float image: reflectance-like values with NaN as nodata
        data = np.where(valid, values / 10000.0 + 0.001234, np.nan).astype(np.float32)
        path = write_raster(tmp_path / "float.tif", data, transform=TRANSFORM, nodata=np.nan)
        values = data.astype(np.float64)
    else:
        path = data_dir / "tile_03.tif"
    image = Image(path)
    expression = Expression.parse("B1 > 2%B1 + 50%B2 + 99.5%B3").bind(3)
    found = image_percentiles(image, expression, window_size=100)
    for (percent, band), value in found.items():
        band_values = values[band][valid[band]]
        # one bin: the range over the bins, doubled to a power of two and once on merging
        resolution = 1.0 if dtype == "uint16" else np.ptp(band_values) / PERCENTILE_BINS * 4
        # between the order statistics around the percentile (numpy interpolates them)
        low = np.percentile(band_values, percent, method="lower")
        high = np.percentile(band_values, percent, method="higher")
        assert low - resolution <= value <= high + resolution


def test_threshold_raster_numeric_and_percentile(data_dir, tmp_path):
    tile = data_dir / "tile_00.tif"
    (numeric,) = threshold_raster(tile, tmp_path / "numeric.tif", ">=1200", band=2)
    (low,) = threshold_raster(tile, tmp_path / "low.tif", "<5%")
    values, valid = tile_bands(tile)
    with rasterio.open(numeric) as dataset:
        assert dataset.dtypes == ("uint8",) and dataset.nodata == 255
        assert dataset.transform == Image(tile).transform and dataset.shape == Image(tile).shape
        expected = np.where(valid[1], values[1] >= 1200, 255)
        np.testing.assert_array_equal(dataset.read(1), expected)
    written = read_raster(low)[0]
    np.testing.assert_array_equal(written == 255, ~valid[0])
    cut = np.percentile(values[0][valid[0]], 5)
    np.testing.assert_array_equal(written[valid[0]], values[0][valid[0]] < np.ceil(cut))
    with pytest.raises(SpectralMatchError, match="threshold must be a comparison"):
        threshold_raster(tile, tmp_path / "bad.tif", "5%")


def test_expression_mask_excludes_where_true_and_refuses_percentiles(data_dir):
    mask = ExpressionMask("(B3 - B1) / (B3 + B1) > 0.02")
    image = Image(data_dir / "tile_00.tif", mask=mask)
    values, valid = image.read()
    included = image.included(values, valid, image.grid)
    red, nir = values[0].astype(float), values[2].astype(float)
    with np.errstate(invalid="ignore"):
        ratio = (nir - red) / (nir + red)
    excluded = ratio > 0.02
    assert 0 < np.count_nonzero(excluded & valid[0]) < np.count_nonzero(valid[0])
    np.testing.assert_array_equal(included, valid & ~excluded[None])
    with pytest.raises(SpectralMatchError, match="percentile terms cannot be used"):
        ExpressionMask("B1 > 5%B1")


def test_band_math_runs_as_a_command(data_dir, tmp_path):
    out = tmp_path / "cli.tif"
    result = CliRunner().invoke(
        main, ["band_math", str(data_dir / "tile_00.tif"), str(out), "--threshold_math=B1 > B2"]
    )
    assert result.exit_code == 0, result.output
    values, valid = tile_bands(data_dir / "tile_00.tif")
    expected = np.where(valid[0] & valid[1], values[0] > values[1], 255)
    np.testing.assert_array_equal(read_raster(out)[0], expected)


# ---------------------------------------------------------------------- polygons


def test_polygons_cover_the_threshold_pixels_within_a_pixel_width(data_dir, tmp_path):
    tile = data_dir / "tile_01.tif"
    (mask,) = threshold_raster(tile, tmp_path / "mask.tif", ">60%", band=3)
    (vectors,) = process_raster_values_to_vector_polygons(
        tile, tmp_path / "vectors", extraction_expression="B3 > 60%B3", window_size=64
    )
    assert vectors.endswith("vectors/tile_01.gpkg")
    frame = geopandas.read_file(vectors)
    assert frame.crs == Image(tile).crs and set(frame["value"]) == {1}
    pixels = read_raster(mask)[0] == 1
    pixel_area = np.count_nonzero(pixels) * PIXEL * PIXEL
    assert abs(frame.area.sum() - pixel_area) <= frame.length.sum() * PIXEL
    # dissolved across the 64-pixel windows: one polygon per 4-connected patch
    assert len(frame) == ndimage.label(pixels)[1]
    assert frame.geometry.is_valid.all() and frame.union_all().area == pytest.approx(pixel_area)


@pytest.fixture
def patches(tmp_path):
    """Squares of 2 x 2 pixels (value 1), 4 x 4 (value 2) and 3 x 3 (value 3), nodata 0."""
    data = np.zeros((16, 16), dtype=np.uint8)
    data[1:3, 1:3] = 1
    data[6:10, 6:10] = 2
    data[12:15, 1:4] = 3
    return write_raster(tmp_path / "patches.tif", data, transform=TRANSFORM, nodata=0)


def test_value_mapping_filter_and_buffers(patches, tmp_path):
    def polygons(name, **keywords):
        (path,) = process_raster_values_to_vector_polygons(
            patches, tmp_path / f"{name}.gpkg", extraction_expression="B1", **keywords
        )
        return geopandas.read_file(path).sort_values("value").reset_index(drop=True)

    mapped = polygons("mapped", value_mapping={2: 5, 3: None})
    assert mapped["value"].tolist() == [1, 5]
    assert mapped.area.tolist() == pytest.approx([4 * PIXEL**2, 16 * PIXEL**2])
    big = polygons("big", filter_by_polygon_size=">5000")  # map units squared
    assert big["value"].tolist() == [2, 3]
    top = polygons("top", filter_by_polygon_size=">=50%")
    assert top["value"].tolist() == [2, 3]
    in_pixels = polygons("pixels", buffer_pixels=1)
    in_units = polygons("units", polygon_buffer=PIXEL)
    square = box(0, 0, 2 * PIXEL, 2 * PIXEL)
    assert in_pixels.area[0] == pytest.approx(square.buffer(PIXEL).area)
    assert in_pixels.geom_equals(in_units).all()
    with pytest.raises(SpectralMatchError, match="filter_by_polygon_size must be a comparison"):
        polygons("bad", filter_by_polygon_size="50%")


def test_an_empty_result_writes_an_empty_layer_with_a_warning(patches, tmp_path):
    with pytest.warns(SpectralMatchWarning, match=r"patches\.tif.*holds no polygon"):
        (path,) = process_raster_values_to_vector_polygons(
            patches, tmp_path / "none.gpkg", extraction_expression="B1 > 100"
        )
    assert geopandas.read_file(path).empty
