"""Writing rasters: output profile, value conversion, atomic writes, COG."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rasterio
from conftest import folder_listing, write_raster
from rasterio.enums import Compression
from rasterio.env import get_gdal_config
from rasterio.windows import Window

from spectralmatch import Image, SpectralMatchError
from spectralmatch._ahead import ComputedAhead
from spectralmatch._interrupt import Interrupted, check_interrupted, run_with_flag
from spectralmatch.raster.blockcache import BLOCK_CACHE_BYTES, limit_block_cache
from spectralmatch.raster.convert import count_clipped, to_dtype, to_dtype_counting
from spectralmatch.raster.files import atomic_path
from spectralmatch.raster.paths import InputFiles
from spectralmatch.raster.write import check_blocks_written, output_profile, translate_to_cog
from spectralmatch.raster.write import write_raster as write_raster_pieces


def test_output_profile_is_tiled_deflate_on_the_input_grid(data_dir):
    image = Image(data_dir / "tile_00.tif")
    profile = output_profile(image)
    assert profile["driver"] == "GTiff"
    assert (profile["dtype"], profile["nodata"], profile["count"]) == ("uint16", 0, 3)
    assert (profile["width"], profile["height"]) == (369, 359)
    assert profile["crs"] == image.crs and profile["transform"] == image.transform
    assert profile["tiled"] is True and profile["blockxsize"] == profile["blockysize"] == 256
    assert profile["compress"] == "deflate" and profile["predictor"] == 2
    overridden = output_profile(image, compress="lzw", predictor=1)
    assert (overridden["compress"], overridden["predictor"]) == ("lzw", 1)


def test_output_profile_of_float_uses_floating_point_predictor(tmp_path):
    path = write_raster(tmp_path / "f.tif", np.zeros((1, 4, 4), np.float32), nodata=-9999.0)
    assert output_profile(Image(path))["predictor"] == 3


def test_to_dtype_rounds_and_clips_integers():
    values = np.array([[2.4, 2.6, -7.0, 300.0, np.nan, 17.0]])
    valid = np.array([[True, True, True, True, True, False]])
    out = to_dtype(values, valid, "uint8", None)
    assert out.dtype == np.uint8
    assert out.tolist() == [[2, 3, 0, 255, 0, 0]]


def test_to_dtype_in_range_rounds_half_to_even_and_fills_nodata():
    rng = np.random.default_rng(2)
    values = rng.uniform(1.0, 65534.0, size=(3, 40, 50)).astype(np.float32)
    values[0, 0, :4] = [2.5, 3.5, 1.0, 65534.0]
    valid = rng.random(values.shape) > 0.1
    valid[0, 0, :4] = True
    expected = np.where(valid, np.rint(values), 0).astype(np.uint16)
    assert count_clipped(values, valid, "uint16") == 0
    np.testing.assert_array_equal(to_dtype(values.copy(), valid, "uint16", 0), expected)
    assert to_dtype(values, valid, "uint16", 0)[0, 0, :4].tolist() == [2, 4, 1, 65534]


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("uint16", 0), ("int16", 0), ("uint8", 255), ("float32", 0.0), ("int16", None)],
)
def test_invalid_pixels_whatever_their_value_become_nodata_and_are_not_counted(dtype, nodata):
    values = np.array([[np.nan, -1e30, 1e30, 0.0, 12.4, 255.0, 3.0, 254.4]])
    valid = np.array([[False, False, False, False, True, False, True, True]])
    out, clipped = to_dtype_counting(values.copy(), valid, dtype, nodata)
    fill = 0 if nodata is None else nodata
    kept = values[valid] if dtype == "float32" else np.rint(values[valid])
    expected = np.where(valid, 0, fill).astype(dtype)
    expected[valid] = kept
    np.testing.assert_array_equal(out, expected)
    assert clipped == 0


def test_count_clipped_counts_valid_values_out_of_range_only():
    values = np.array([[[-0.6, -0.4, 255.4, 255.6, np.nan, 1e9, 7.0]]])
    valid = np.array([[[True, True, True, True, True, False, True]]])
    assert count_clipped(values, valid, "uint8") == 3  # -0.6, 255.6 and NaN
    assert count_clipped(values[..., 1:3], valid[..., 1:3], "uint8") == 0
    assert count_clipped(np.zeros((1, 0, 0)), np.zeros((1, 0, 0), bool), "uint8") == 0


def test_to_dtype_never_turns_a_valid_pixel_into_nodata():
    values = np.array([[0.2, -50.0, 1.0, 12.0]])
    valid = np.array([[True, True, True, False]])
    assert to_dtype(values, valid, "uint16", 0).tolist() == [[1, 1, 1, 0]]
    # nodata at the top of the range: valid pixels step down instead
    high = np.array([[255.0, 400.0, 254.4, 3.0]])
    assert to_dtype(high, valid, "uint8", 255).tolist() == [[254, 254, 254, 255]]


def test_to_dtype_int16_with_negative_nodata():
    values = np.array([[-40000.0, -32768.0, -1234.6, 40000.0, 5.0]])
    valid = np.array([[True, True, True, True, False]])
    out = to_dtype(values, valid, "int16", -32768)
    assert out.dtype == np.int16
    assert out.tolist() == [[-32767, -32767, -1235, 32767, -32768]]


def test_to_dtype_float_with_numeric_nodata():
    values = np.array([[-9999.0, np.inf, -np.inf, np.nan, 1.5, 7.0]])
    valid = np.array([[True, True, True, True, True, False]])
    out = to_dtype(values, valid, "float32", -9999.0)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out[0, 0] != -9999.0 and abs(out[0, 0] + 9999.0) < 1e-3
    assert out[0, 1] == np.finfo(np.float32).max and out[0, 2] == np.finfo(np.float32).min
    assert out[0, 4] == 1.5 and out[0, 5] == -9999.0
    assert (out[valid] != -9999.0).all()


@pytest.mark.parametrize(
    ("dtype", "nodata", "values"),
    [
        ("int16", 0, [[np.nan, -0.4, 0.3, 2.0, -3.0, 1e6]]),  # NaN and rounding onto 0
        ("int16", 0, [[-0.4, 0.45, 2.0, -3.0, 5.0, 0.0]]),  # rounding onto 0
        ("int16", 0, [[7.0, 9.6, 12.2, 40.0, 8.0, 11.0]]),  # far from nodata
        ("uint16", 0, [[0.2, -50.0, 1.0, 12.0, 70000.0, 3.0]]),
        ("float32", -9999.0, [[-9999.00001, 5.0, -1e4, 2.5, 7.0, 1.0]]),
        ("float32", -9999.0, [[100.0, 5.0, 3.0, 2.5, 7.0, 1.0]]),
        ("uint8", None, [[2.4, 2.6, -7.0, 300.0, np.nan, 17.0]]),
    ],
)
def test_to_dtype_counting_is_to_dtype_and_count_clipped_together(dtype, nodata, values):
    values = np.array(values)
    valid = np.array([[True, True, True, True, True, False]])
    converted, clipped = to_dtype_counting(values.copy(), valid, dtype, nodata)
    assert clipped == count_clipped(values, valid, dtype)
    expected = to_dtype(values.copy(), valid, dtype, nodata)
    np.testing.assert_array_equal(converted, expected)
    assert converted.dtype == np.dtype(dtype)
    if nodata is not None:  # a valid pixel never becomes nodata, an invalid one always
        assert (converted[valid] != nodata).all() and (converted[~valid] == nodata).all()


def test_to_dtype_float_with_nan_nodata():
    values = np.array([[np.nan, 3.25, 1e39]])
    valid = np.array([[True, True, False]])
    out = to_dtype(values, valid, "float32", float("nan"))
    assert np.isfinite(out[valid]).all()
    assert out[0, 1] == 3.25 and np.isnan(out[0, 2])


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "out.tif"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary != target
        temporary.write_bytes(b"complete")
        assert not target.exists()
    assert target.read_bytes() == b"complete"
    assert folder_listing(tmp_path) == ["out.tif"]


def test_atomic_path_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half written")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert folder_listing(tmp_path) == ["out.tif"]


def test_input_files_refuse_an_input_under_any_name(data_dir, tmp_path):
    (tmp_path / "link.tif").symlink_to(data_dir / "tile_01.tif")
    (tmp_path / "hard.tif").hardlink_to(tmp_path / "link.tif")
    inputs = InputFiles([data_dir / "tile_00.tif", tmp_path / "link.tif", "/vsis3/b/k.tif"])
    for output in (data_dir / "." / "tile_01.tif", tmp_path / "hard.tif", tmp_path / "link.tif"):
        with pytest.raises(SpectralMatchError, match=str(output.name)) as error:
            inputs.refuse(output)
        assert "input" in str(error.value)
    inputs.refuse(tmp_path / "tile_01.tif")  # another folder: fine (and not there)
    (tmp_path / "copy.tif").write_bytes((data_dir / "tile_01.tif").read_bytes())
    inputs.refuse(tmp_path / "copy.tif")  # the same bytes, another file: fine


def test_translate_to_cog_gives_a_cog_layout(tmp_path, data_dir):
    source = Image(data_dir / "tile_03.tif")
    destination = tmp_path / "cog.tif"
    translate_to_cog(source.path, destination, output_profile(source))
    with rasterio.open(destination) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dataset.compression == Compression.deflate
        np.testing.assert_array_equal(dataset.read(), source.read()[0])


def test_a_block_that_did_not_reach_the_file_is_found(data_dir, tmp_path):
    """A write that failed in one of GDAL's threads leaves a block with no bytes or past
    the end of the file; the check that every written GeoTIFF passes finds it."""
    path = tmp_path / "copy.tif"
    image = Image(data_dir / "tile_00.tif")
    with rasterio.open(path, "w", **output_profile(image, blockxsize=128, blockysize=128)) as out:
        out.write(image.read()[0])
    check_blocks_written(path)  # whole: no error
    with rasterio.open(path) as dataset:
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_2_1", "TIFF", 1))
    with open(path, "r+b") as file:  # the file ends inside that block, as on a full disk
        file.truncate(offset + 10)
    with pytest.raises(OSError, match="block 1, 2 of band 1 was not written"):
        check_blocks_written(path)


def test_the_block_cache_is_bounded_unless_the_user_set_it(monkeypatch):
    from rasterio.env import get_gdal_config, set_gdal_config

    before = get_gdal_config("GDAL_CACHEMAX")
    try:
        set_gdal_config("GDAL_CACHEMAX", 1 << 30)
        monkeypatch.setenv("GDAL_CACHEMAX", "1024")
        limit_block_cache()
        assert get_gdal_config("GDAL_CACHEMAX") == 1 << 30  # the user's choice is kept
        monkeypatch.delenv("GDAL_CACHEMAX")
        limit_block_cache()
        assert get_gdal_config("GDAL_CACHEMAX") == BLOCK_CACHE_BYTES
        set_gdal_config("GDAL_CACHEMAX", 8 << 20)
        limit_block_cache()
        assert get_gdal_config("GDAL_CACHEMAX") == 8 << 20  # never raised
    finally:
        set_gdal_config("GDAL_CACHEMAX", before)


# ------------------------------------------------------------- pieces computed ahead


def _pieces(count: int, made: list[int], fail_at: int | None = None, closed: list | None = None):
    """``count`` 16 x 16 pieces of a 1-band uint16 raster, row by row, noting each made
    (and, in ``closed``, that the generator was closed)."""
    try:
        for row in range(count):
            if row == fail_at:
                raise SpectralMatchError(f"piece {row}: cannot be computed")
            made.append(row)
            yield Window(0, 16 * row, 16, 16), np.full((1, 16, 16), row, np.uint16), None
    finally:
        if closed is not None:
            closed.append(True)


def _profile(rows: int) -> dict:
    return {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 1,
        "width": 16,
        "height": 16 * rows,
        "crs": "EPSG:32615",
        "transform": rasterio.Affine(30, 0, 0, 0, -30, 0),
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
    }


def test_pieces_are_computed_in_another_thread_at_most_two_ahead():
    made: list[int] = []
    threads = set()

    def piece(row):
        threads.add(threading.get_ident())
        made.append(row)
        return row

    with ComputedAhead(piece(row) for row in range(20)) as items:
        for taken, row in enumerate(items, start=1):
            time.sleep(0.002)  # the thread has time to run ahead, as far as it may
            assert row == taken - 1
            assert len(made) <= taken + 2
    assert made == list(range(20)) and threading.get_ident() not in threads


def test_a_raster_written_from_pieces_computed_ahead_holds_every_piece_in_place(tmp_path):
    path = write_raster_pieces(tmp_path / "out.tif", _profile(6), _pieces(6, []))
    with rasterio.open(path) as dataset:
        rows = dataset.read(1)[::16, 0]
    assert rows.tolist() == [0, 1, 2, 3, 4, 5]


def test_an_error_computing_a_piece_reaches_the_writer_as_raised_and_nothing_is_left(tmp_path):
    before = threading.active_count()
    closed: list[bool] = []
    with pytest.raises(SpectralMatchError, match="piece 3: cannot be computed"):
        write_raster_pieces(tmp_path / "out.tif", _profile(6), _pieces(6, [], 3, closed))
    assert folder_listing(tmp_path) == [] and closed == [True]
    assert threading.active_count() == before


def test_a_failed_write_stops_the_pieces_and_closes_them(tmp_path):
    made: list[int] = []
    closed: list[bool] = []
    profile = {**_profile(40), "height": 16 * 3}  # the fourth piece lies outside
    before = threading.active_count()
    with pytest.raises(SpectralMatchError, match="out.tif: cannot be written"):
        write_raster_pieces(tmp_path / "out.tif", profile, _pieces(40, made, None, closed))
    assert closed == [True] and len(made) <= 6
    assert threading.active_count() == before
    assert folder_listing(tmp_path) == []


def test_pieces_computed_ahead_stop_at_the_pass_s_interrupt_flag(tmp_path):
    flag = threading.Event()

    def write() -> None:
        def pieces():
            for row, piece in enumerate(_pieces(40, [])):
                if row == 2:
                    flag.set()  # as the executor would, on Ctrl-C
                check_interrupted()  # in the thread computing ahead
                yield piece

        write_raster_pieces(tmp_path / "out.tif", _profile(40), pieces())

    with pytest.raises(Interrupted):
        run_with_flag(flag, lambda _: write(), None)
    assert folder_listing(tmp_path) == []


def test_pieces_computed_ahead_are_read_in_the_caller_s_rasterio_environment():
    """rasterio.Env entered outside the main thread holds for that thread only: the
    thread computing ahead runs in it too (credentials for remote paths, say)."""
    seen: list = []

    def caller():
        options = (get_gdal_config("SPECTRALMATCH_TEST_OPTION") for _ in range(2))
        with rasterio.Env(SPECTRALMATCH_TEST_OPTION="carried"), ComputedAhead(options) as items:
            seen.extend(items)

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert seen == ["carried", "carried"]
