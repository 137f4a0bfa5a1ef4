"""The published package's tests of ``band_math`` and
``process_raster_values_to_vector_polygons``, ported: the same calls with the same
keywords, on the same small rasters. (``create_cloud_mask_with_omnicloudmask`` needs
omnicloudmask and its model weights, and is not ported here.)"""

from __future__ import annotations

import geopandas
import numpy as np
import pytest
import rasterio
from published_data import dummy_raster

from spectralmatch import band_math, process_raster_values_to_vector_polygons
from spectralmatch.errors import SpectralMatchWarning


@pytest.fixture
def dummy_multiband_raster(tmp_path):
    return dummy_raster(tmp_path / "input.tif", width=64, height=64, count=2, fill=10)


@pytest.fixture
def dummy_raster_for_vector(tmp_path):
    data = np.zeros((1, 16, 16), dtype="uint8")
    data[0, 2:6, 2:6] = 1
    data[0, 10:14, 10:14] = 2
    return dummy_raster(tmp_path / "input.tif", data=data, origin=(0.0, 16.0))


# ---------------------------------------------------------------------- band_math


def test_band_math_basic(dummy_multiband_raster, tmp_path):
    output_path = str(tmp_path / "output.tif")
    band_math(
        input_images=[dummy_multiband_raster], output_images=[output_path], threshold_math="B1 + B2"
    )
    with rasterio.open(output_path) as dataset:
        result = dataset.read(1)
    assert result.shape == (64, 64)
    assert np.all(result == 20)


def test_band_math_dtype(dummy_multiband_raster, tmp_path):
    output_path = str(tmp_path / "typed.tif")
    band_math(
        input_images=[dummy_multiband_raster],
        output_images=[output_path],
        threshold_math="B1 * 2",
        custom_output_dtype="uint16",
    )
    with rasterio.open(output_path) as dataset:
        assert dataset.dtypes == ("uint16",)
        assert np.all(dataset.read(1) == 20)


def test_band_math_nodata(dummy_multiband_raster, tmp_path):
    output_path = str(tmp_path / "nodata.tif")
    band_math(
        input_images=[dummy_multiband_raster],
        output_images=[output_path],
        threshold_math="B1 + B2",
        custom_nodata_value=99,
    )
    with rasterio.open(output_path) as dataset:
        assert dataset.nodata == 99


# ---------------------------------------------------------------------- polygons


def test_process_raster_values_to_polygons_basic(dummy_raster_for_vector, tmp_path):
    output_path = str(tmp_path / "out.gpkg")
    process_raster_values_to_vector_polygons(
        input_images=[dummy_raster_for_vector],
        output_vectors=[output_path],
        extraction_expression="B1 > 0",
    )
    assert tmp_path.joinpath("out.gpkg").exists()
    frame = geopandas.read_file(output_path)
    assert not frame.empty
    assert frame.geometry.iloc[0].is_valid


def test_process_polygons_with_value_mapping_and_filter(dummy_raster_for_vector, tmp_path):
    output_path = str(tmp_path / "filtered.gpkg")
    # Here the percentile is of the areas of the traced (non-zero) polygons only; the one
    # polygon is not below its own median, so the layer is empty, with a warning. The
    # published package also counted the zero-valued background polygon it then dropped.
    with pytest.warns(SpectralMatchWarning, match="holds no polygon"):
        process_raster_values_to_vector_polygons(
            input_images=[dummy_raster_for_vector],
            output_vectors=[output_path],
            extraction_expression="B1 >= 2",
            filter_by_polygon_size="<50%",
            value_mapping={2: 5},
        )
    frame = geopandas.read_file(output_path)
    assert all(frame.area > 4)


def test_process_polygons_with_buffer(dummy_raster_for_vector, tmp_path):
    output_path = str(tmp_path / "buffered.gpkg")
    process_raster_values_to_vector_polygons(
        input_images=[dummy_raster_for_vector],
        output_vectors=[output_path],
        extraction_expression="B1 == 1",
        polygon_buffer=0.5,
    )
    frame = geopandas.read_file(output_path)
    assert frame.geometry.iloc[0].buffer(-0.5).area < frame.geometry.iloc[0].area


def test_invalid_filter_by_polygon_size_raises(dummy_raster_for_vector, tmp_path):
    with pytest.raises(ValueError):
        process_raster_values_to_vector_polygons(
            input_images=[dummy_raster_for_vector],
            output_vectors=[str(tmp_path / "error.gpkg")],
            extraction_expression="B1 > 0",
            filter_by_polygon_size="50%",  # Invalid
        )
