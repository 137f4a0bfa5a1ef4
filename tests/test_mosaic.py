"""Mosaic: references, nodata, dtypes, output files, persistence and new scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rasterio.windows
from conftest import (
    BAND_NAMES,
    LAYOUT,
    cast_to_dtype,
    file_digest,
    folder_listing,
    inverse,
    make_tiles,
    read_raster,
    rmse,
    valid_mask,
    write_raster,
)
from rasterio.enums import Compression
from rasterio.transform import from_origin

from spectralmatch import GlobalModel, Image, Mosaic, NotFittedError, SpectralMatchError


def match(paths, out_dir, reference=None, **kwargs):
    model = Mosaic(steps=[GlobalModel(reference=reference)], threads=2)
    return model, model.fit_transform(paths, out_dir, **kwargs)


# ---------------------------------------------------------------------- 3. references


@pytest.mark.parametrize("reference", [[0], ["tile_2"], [1, "tile_3"], ["tile_0", -1]])
def test_reference_images_are_bit_identical(tiles, tmp_path, reference):
    model, outputs = match(tiles.paths, tmp_path / "out", reference=reference)
    step = model.steps_[0]
    references = set(step.reference_)
    assert len(references) == len(reference)
    for index, name in enumerate(tiles.names):
        output = read_raster(outputs.images[index].path)
        if name in references:
            assert np.array_equal(output, tiles.data_of(index))
        else:
            assert not np.array_equal(output, tiles.data_of(index))
    # with one reference, the other images are pulled into its radiometry
    if len(references) == 1:
        r = tiles.names.index(references.pop())
        for index in range(4):
            valid = tiles.valid_of(index)
            target = (
                tiles.gains[r][:, None, None] * tiles.truth_of(index)
                + tiles.offsets[r][:, None, None]
            )
            output = read_raster(outputs.images[index].path)
            assert rmse(output[valid], target[valid]) < 4.0
        references = {tiles.names[r]}
    if references == {"tile_0"}:
        gain, _ = inverse(tiles.gains, tiles.offsets)
        np.testing.assert_allclose(step.gains_, gain, rtol=5e-3)


def test_two_references_with_different_distortions_are_both_kept(tile_factory, tmp_path):
    # tile 3 is a second, consistent reference (undistorted too)
    gains = np.array([[1, 1, 1], [0.8, 1.2, 0.9], [1.15, 0.9, 1.1], [1, 1, 1]], dtype=float)
    offsets = np.array([[0, 0, 0], [100, -100, 50], [-80, 60, 0], [0, 0, 0]], dtype=float)
    tiles = tile_factory(gains=gains, offsets=offsets)
    model, outputs = match(tiles.paths, tmp_path / "out", reference=["tile_0", "tile_3"])
    for index in (0, 3):
        assert np.array_equal(read_raster(outputs.images[index].path), tiles.data_of(index))
    gain, _ = inverse(gains, offsets)
    np.testing.assert_allclose(model.steps_[0].gains_, gain, rtol=5e-3)


# ---------------------------------------------------------------------- 4. nodata and masks


def test_validity_is_preserved_per_band_and_pixel(tile_factory, tmp_path):
    tiles = tile_factory()
    rng = np.random.default_rng(8)
    for index in range(4):  # extra holes, different in every band, also inside overlaps
        data = tiles.data_of(index)
        holes = rng.random(data.shape) < 0.05
        data[holes] = 0
        with rasterio.open(tiles.paths[index]) as dataset:
            transform = dataset.transform
        write_raster(tiles.paths[index], data, transform=transform, nodata=0)
    _, outputs = match(tiles.paths, tmp_path / "out")
    for index, image in enumerate(outputs):
        output = read_raster(image.path)
        valid_in = tiles.valid_of(index)
        assert not (valid_in[0] == valid_in[1]).all()  # the bands differ
        np.testing.assert_array_equal(output != 0, valid_in)
        with rasterio.open(image.path) as dataset:
            assert dataset.nodata == 0


def test_valid_pixel_pushed_to_zero_stays_valid(tmp_path):
    """The correction maps some valid values to <= 0: they become 1, never nodata 0."""
    rng = np.random.default_rng(2)
    base = rng.integers(1000, 2000, size=(2, 60, 100)).astype(float)
    transform = from_origin(700000.0, 7000000.0, 30.0, 30.0)
    reference = write_raster(
        tmp_path / "in" / "reference.tif",
        base[:, :, :60].astype(np.uint16),
        transform=transform,
        nodata=0,
    )
    bright = base[:, :, 40:] + 100.0  # the same scene 100 DN brighter
    bright[:, :10, 30:40] = 100.0  # corrected to 0
    bright[:, 10:20, 30:40] = 40.0  # corrected to -60
    bright[:, 20:30, 30:40] = 0.0  # nodata stays nodata
    path = write_raster(
        tmp_path / "in" / "bright.tif",
        bright.astype(np.uint16),
        transform=transform @ rasterio.Affine.translation(40, 0),
        nodata=0,
    )
    model, outputs = match([reference, path], tmp_path / "out", reference=["reference"])
    step = model.steps_[0]
    np.testing.assert_allclose(step.gains_[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(step.offsets_[1], -100.0, atol=1e-3)
    output = read_raster(outputs.images[1].path)
    assert (output[:, :20, 30:40] == 1).all()
    assert (output[:, 20:30, 30:40] == 0).all()
    valid = bright != 0
    assert (output[valid] >= 1).all()
    np.testing.assert_array_equal(output != 0, valid)
    untouched = valid.copy()
    untouched[:, :30, 30:40] = False
    np.testing.assert_array_equal(output[untouched], (bright - 100)[untouched])


def test_internal_mask_without_nodata_is_kept(tmp_path, truth):
    transform = truth.transform
    paths, masks = [], []
    for name, window, gain in (("left", LAYOUT[0], 1.0), ("right", LAYOUT[1], 1.2)):
        rows, cols = window.toslices()
        data = np.rint(truth.data[:, rows, cols] * gain).astype(np.uint16)
        mask = np.full(data.shape[1:], 255, dtype=np.uint8)
        mask[:20, :20] = 0
        mask[100:, 100:] = 0
        path = tmp_path / "in" / f"{name}.tif"
        path.parent.mkdir(exist_ok=True)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            dtype="uint16",
            count=3,
            width=120,
            height=120,
            crs=truth.crs,
            transform=rasterio.windows.transform(window, transform),
        ) as dataset:
            dataset.write(data)
            dataset.write_mask(mask)
        paths.append(path)
        masks.append(mask)
    model, outputs = match(paths, tmp_path / "out", reference=["left"])
    np.testing.assert_allclose(model.steps_[0].gains_[1], 1 / 1.2, rtol=1e-3)
    for image, mask in zip(outputs, masks, strict=True):
        with rasterio.open(image.path) as dataset:
            assert dataset.nodata is None
            np.testing.assert_array_equal(dataset.read_masks(1), mask)
            np.testing.assert_array_equal(dataset.dataset_mask(), mask)


# ---------------------------------------------------------------------- 5. dtypes

DTYPE_CASES = {
    # dtype, nodata, value range of the truth, noise sd, (high, low) test values or None
    "uint8": ("uint8", 0, (30.0, 220.0), 0.5, (250, 1)),
    "uint16": ("uint16", 0, (3000.0, 60000.0), 5.0, (65000, 5)),
    "int16": ("int16", -32768, (-3000.0, 3000.0), 1.0, (32000, -32000)),
    "float32-nan": ("float32", float("nan"), (0.02, 0.45), 2e-4, None),
    "float32-9999": ("float32", -9999.0, (-1.0, 1.0), 5e-4, None),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_dtypes_keep_type_nodata_and_validity(tmp_path, truth, case):
    dtype, nodata, (low, high), noise, extremes = DTYPE_CASES[case]
    p1, p99 = np.percentile(truth.data, [1, 99], axis=(1, 2))
    scaled = low + (high - low) * (truth.data - p1[:, None, None]) / (p99 - p1)[:, None, None]
    scaled = np.clip(scaled, low, high)
    span = high - low
    scaled_truth = type(truth)(scaled, truth.transform)
    gains = np.array([[1.0] * 3, [0.8, 0.85, 0.9], [0.9, 0.95, 0.92], [1.05, 1.02, 1.04]])
    offsets = np.repeat([[0.0], [-0.02], [0.03], [-0.01]], 3, axis=1) * span
    tiles = make_tiles(
        tmp_path / "in",
        scaled_truth,
        gains=gains,
        offsets=offsets,
        noise_sd=noise,
        dtype=dtype,
        nodata=nodata,
    )
    if extremes is not None:  # values the correction pushes out of the dtype's range
        data = tiles.data_of(1)
        data[:, 30:36, 90:96] = extremes[0]
        write_raster(tiles.paths[1], data, transform=_transform(tiles.paths[1]), nodata=nodata)
        data = tiles.data_of(2)
        data[:, 60:66, 30:36] = extremes[1]
        write_raster(tiles.paths[2], data, transform=_transform(tiles.paths[2]), nodata=nodata)

    model, outputs = match(tiles.paths, tmp_path / "out", reference=[0])
    step = model.steps_[0]
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    for index, image in enumerate(outputs):
        data = tiles.data_of(index)
        valid = valid_mask(data, nodata)
        with rasterio.open(image.path) as dataset:
            output = dataset.read()
            assert dataset.dtypes == (dtype,) * 3
            assert np.isnan(dataset.nodata) if np.isnan(nodata) else dataset.nodata == nodata
        np.testing.assert_array_equal(valid_mask(output, nodata), valid)
        assert np.isfinite(output[valid].astype(np.float64)).all()
        if np.isnan(nodata):
            assert np.isnan(output[~valid]).all()
        else:
            assert (output[~valid] == nodata).all()
            assert (output[valid] != nodata).all()
        corrected = (
            step.gains_[index][:, None, None] * data.astype(np.float64)
            + step.offsets_[index][:, None, None]
        )
        if info is not None:
            expected = cast_to_dtype(corrected, valid, dtype, nodata)
            difference = np.abs(output.astype(np.int64) - expected.astype(np.int64))
            assert difference.max() <= 1
            # float32 arithmetic may flip a rounding at .5; truncation would flip half
            assert (difference[valid] == 0).mean() > 0.98
        else:
            np.testing.assert_allclose(output[valid], corrected[valid], rtol=1e-6, atol=1e-6 * span)
        # away from the planted extremes, every tile is back on the truth
        usable = valid.copy()
        usable[:, 30:36, 90:96] = usable[:, 60:66, 30:36] = False
        error = rmse(output[usable], tiles.truth_of(index)[usable])
        assert error < 1.5 * noise / 0.8 + (0.6 if info is not None else 0.0) + 1e-4 * span
    if extremes is not None:
        high_out = read_raster(outputs.images[1].path)[:, 30:36, 90:96]
        low_out = read_raster(outputs.images[2].path)[:, 60:66, 30:36]
        # 0.8 to 0.9 gains map the planted maximum beyond the range: clipped to its top
        assert (high_out == info.max).all()
        # and the planted minimum below it: clipped, then moved off nodata
        lowest = info.min if nodata != info.min else info.min + 1
        lowest = lowest if nodata != lowest else lowest + 1
        assert (low_out == lowest).all()


def _transform(path):
    with rasterio.open(path) as dataset:
        return dataset.transform


def test_float64_working_precision_gives_the_same_result(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel(reference=[0])], threads=1).fit(tiles.paths)
    single = model.transform(tiles.paths, tmp_path / "f32")
    double = model.transform(tiles.paths, tmp_path / "f64", working_dtype="float64")
    for a, b in zip(single, double, strict=True):
        diff = np.abs(read_raster(a.path).astype(int) - read_raster(b.path).astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_window_size_does_not_change_the_result(tiles, tmp_path):
    large = Mosaic(steps=[GlobalModel()], window_size=1024, threads=2).fit(tiles.paths)
    small = Mosaic(steps=[GlobalModel()], window_size=32, threads=1).fit(tiles.paths)
    np.testing.assert_allclose(small.steps_[0].gains_, large.steps_[0].gains_, rtol=1e-9)
    np.testing.assert_allclose(small.steps_[0].offsets_, large.steps_[0].offsets_, atol=1e-6)
    a = large.transform(tiles.paths, tmp_path / "a")
    b = small.transform(tiles.paths, tmp_path / "b")
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(read_raster(x.path), read_raster(y.path))


# ---------------------------------------------------------------------- 6. output files


def test_default_output_is_tiled_deflate_on_the_input_grid(tiles, tmp_path):
    _, outputs = match(tiles.paths, tmp_path / "out")
    assert folder_listing(tmp_path / "out") == [f"{name}.tif" for name in tiles.names]
    assert outputs.names == tiles.names
    for source, image in zip(tiles.paths, outputs, strict=True):
        with rasterio.open(source) as src, rasterio.open(image.path) as out:
            assert out.profile["tiled"] is True
            assert out.block_shapes == [(256, 256)] * 3
            assert out.compression == Compression.deflate
            assert out.crs == src.crs and out.transform == src.transform
            assert (out.width, out.height, out.count) == (src.width, src.height, src.count)
            assert out.descriptions == src.descriptions == BAND_NAMES
            assert out.nodata == src.nodata and out.dtypes == src.dtypes


def test_cog_output_has_cog_layout_and_the_same_pixels(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    plain = model.transform(tiles.paths, tmp_path / "plain")
    cog = model.transform(tiles.paths, tmp_path / "cog", cog=True)
    assert folder_listing(tmp_path / "cog") == [f"{name}.tif" for name in tiles.names]
    for a, b, source in zip(plain, cog, tiles.paths, strict=True):
        with rasterio.open(b.path) as dataset:
            assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert dataset.compression == Compression.deflate
            assert dataset.nodata == 0
            assert dataset.transform == _transform(source)
            assert dataset.descriptions == BAND_NAMES
            assert np.array_equal(dataset.read(), read_raster(a.path))


def test_creation_options_override_the_defaults(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=1).fit(tiles.paths)
    outputs = model.transform(tiles.paths[:1], tmp_path / "lzw", compress="lzw")
    with rasterio.open(outputs.images[0].path) as dataset:
        assert dataset.compression == Compression.lzw


@pytest.mark.parametrize("cog", [False, True])
def test_no_temporary_files_after_a_failed_rename(tiles, tmp_path, cog):
    out = tmp_path / "out"
    (out / "tile_2.tif").mkdir(parents=True)  # the output path is taken by a folder
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match=r"tile_2\.tif: cannot be written \(Is a dir"):
        model.transform(tiles.paths, out, cog=cog)
    # the other tasks stop at their next window: some outputs may be missing, but none
    # is partial and no temporary file is left
    written = set(folder_listing(out)) - {"tile_2.tif"}
    assert written <= {"tile_0.tif", "tile_1.tif", "tile_3.tif"}
    for name in written:
        with rasterio.open(out / name) as dataset:
            assert dataset.read().shape[0] == 3
    assert (out / "tile_2.tif").is_dir() and not any((out / "tile_2.tif").iterdir())


def test_no_temporary_files_after_a_failed_write(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    with pytest.raises(
        SpectralMatchError, match=r"tile_\d\.tif: cannot be written .*multiples of 16"
    ):
        model.transform(tiles.paths, tmp_path / "out", blockxsize=100, blockysize=100)
    assert folder_listing(tmp_path / "out") == []


def test_writing_over_the_inputs_is_refused(tiles):
    digests = [file_digest(path) for path in tiles.paths]
    model = Mosaic(steps=[GlobalModel()], threads=1).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match="tile_0.tif") as error:
        model.transform(tiles.paths, tiles.folder)
    assert "input" in str(error.value)
    with pytest.raises(SpectralMatchError, match="input"):
        model.transform(
            tiles.paths,
            outputs=[
                tiles.folder / "new.tif",
                tiles.paths[0],
                tiles.folder / "b.tif",
                tiles.folder / "c.tif",
            ],
        )
    assert [file_digest(path) for path in tiles.paths] == digests
    assert folder_listing(tiles.folder) == [f"{name}.tif" for name in tiles.names]


def test_output_arguments_are_checked(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=1).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match="either out_dir or outputs"):
        model.transform(tiles.paths)
    with pytest.raises(SpectralMatchError, match="3 output paths for 4 images"):
        model.transform(tiles.paths, outputs=[tmp_path / f"{i}.tif" for i in range(3)])
    with pytest.raises(SpectralMatchError, match="same output path"):
        model.transform(tiles.paths, outputs=[tmp_path / "same.tif"] * 4)


# ---------------------------------------------------------------------- 7. persistence


def test_save_load_round_trip_gives_identical_outputs(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel(reference=["tile_1"])], threads=2).fit(tiles.paths)
    first = model.transform(tiles.paths, tmp_path / "first")
    path = model.save(tmp_path / "models" / "model.json")
    assert folder_listing(tmp_path / "models") == ["model.json"]
    text = path.read_text()
    assert text.count("\n") > 20  # indented, readable
    with open(path) as handle:
        data = json.load(handle)
    assert data["format"] == "spectralmatch.Mosaic"
    assert [entry["name"] for entry in data["images"]] == tiles.names
    state = data["steps"][0]["state"]
    assert state["images"] == tiles.names and state["reference"] == ["tile_1"]
    np.testing.assert_array_equal(state["gains"], model.steps_[0].gains_)
    assert data["steps"][0]["params"]["reference"] == ["tile_1"]

    loaded = Mosaic.load(path)
    np.testing.assert_array_equal(loaded.steps_[0].gains_, model.steps_[0].gains_)
    np.testing.assert_array_equal(loaded.steps_[0].offsets_, model.steps_[0].offsets_)
    assert loaded.get_params()["window_size"] == model.window_size
    second = loaded.transform(tiles.paths, tmp_path / "second")
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(read_raster(a.path), read_raster(b.path))


def test_get_and_set_params():
    model = Mosaic(window_size=256)
    assert model.get_params() == {
        "steps": None,
        "window_size": 256,
        "threads": None,
        "executor": "threads",
        "progress": False,
        "pif": "auto",
        "pif_dir": None,
        "cache": False,
    }
    assert model.set_params(threads=3, window_size=512) is model
    assert (model.threads, model.window_size) == (3, 512)
    with pytest.raises(SpectralMatchError, match="no parameter 'workers'"):
        model.set_params(workers=2)


def test_use_before_fit_raises_not_fitted(tiles, tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet") as error:
        Mosaic().transform(tiles.paths, tmp_path / "out")
    assert "fit()" in str(error.value) and "Mosaic" in str(error.value)
    assert isinstance(error.value, SpectralMatchError)
    with pytest.raises(NotFittedError, match="not fitted"):
        Mosaic().save(tmp_path / "model.json")
    with pytest.raises(NotFittedError, match="GlobalModel"):
        GlobalModel().get_state()
    assert not (tmp_path / "out").exists() and not (tmp_path / "model.json").exists()


def test_loading_something_else_raises(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something"}))
    with pytest.raises(SpectralMatchError, match="not a spectralmatch model"):
        Mosaic.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(SpectralMatchError, match="broken.json"):
        Mosaic.load(broken)


def test_steps_must_be_adjusters(tiles):
    with pytest.raises(SpectralMatchError, match="Adjuster"):
        Mosaic(steps=["global"]).fit(tiles.paths)


def test_band_count_must_match_the_model(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=1).fit(tiles.paths)
    two = write_raster(
        tmp_path / "two.tif", tiles.data_of(0)[:2], transform=_transform(tiles.paths[0]), nodata=0
    )
    with pytest.raises(SpectralMatchError, match="two.tif") as error:
        model.transform([two], tmp_path / "out")
    assert "2 bands" in str(error.value) and "3" in str(error.value)


# ---------------------------------------------------------------------- 8. new scenes


def test_new_scene_is_normalized_against_the_saved_model(tiles, tmp_path):
    fitted = tiles.paths[:3]
    model = Mosaic(steps=[GlobalModel(reference=[0])], threads=2).fit(fitted)
    before = model.transform(fitted, tmp_path / "before")
    gains, offsets = model.steps_[0].gains_.copy(), model.steps_[0].offsets_.copy()
    path = model.save(tmp_path / "model.json")
    saved = path.read_text()

    loaded = Mosaic.load(path)
    new = loaded.transform([tiles.paths[3]], tmp_path / "new")
    step = loaded.steps_[0]
    # the new scene got its own parameters, which undo its distortion
    assert step.images_ == tiles.names
    expected_gain, _ = inverse(tiles.gains, tiles.offsets)
    np.testing.assert_allclose(step.gains_[3], expected_gain[3], rtol=5e-3)
    output = read_raster(new.images[0].path)
    valid = tiles.valid_of(3)
    assert rmse(output[valid], tiles.truth_of(3)[valid]) < 3.5
    assert rmse(tiles.data_of(3)[valid], tiles.truth_of(3)[valid]) > 100
    # the fitted images keep their parameters and outputs; the saved file is untouched
    np.testing.assert_array_equal(step.gains_[:3], gains)
    np.testing.assert_array_equal(step.offsets_[:3], offsets)
    assert path.read_text() == saved
    again = loaded.transform(fitted, tmp_path / "again")
    for a, b in zip(before, again, strict=True):
        assert np.array_equal(read_raster(a.path), read_raster(b.path))


def test_new_scene_is_measured_against_the_fitted_images_with_their_given_nodata(
    tmp_path, data_dir
):
    """Fitted on images given the nodata value their files do not declare, a saved model
    measures a new scene against them with that value, as against declaring files."""
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    for path in sorted(data_dir.glob("*.tif")):
        (stripped / path.name).write_bytes(path.read_bytes())
        with rasterio.open(stripped / path.name, "r+") as dataset:
            dataset.nodata = None

    def new_scene(folder, nodata, out):
        images = [Image(path, nodata=nodata) for path in sorted(folder.glob("*.tif"))]
        model = Mosaic(steps=[GlobalModel()], threads=1).fit(images[:3])
        loaded = Mosaic.load(model.save(tmp_path / f"{out}.json"))
        written = loaded.transform(images[3:], tmp_path / out)
        return loaded.steps_[0].gains_[3], read_raster(written.images[0].path)

    declared_gain, declared = new_scene(data_dir, None, "declared")
    given_gain, given = new_scene(stripped, 0, "given")
    np.testing.assert_array_equal(given_gain, declared_gain)
    np.testing.assert_array_equal(given, declared)


def test_new_scene_needs_the_fitted_images(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel(reference=[0])], threads=1).fit(tiles.paths[:3])
    path = model.save(tmp_path / "model.json")
    tiles.paths[1].rename(tmp_path / "moved.tif")
    with pytest.raises(SpectralMatchError, match="tile_1.tif") as error:
        Mosaic.load(path).transform([tiles.paths[3]], tmp_path / "out")
    assert "missing" in str(error.value)


def test_new_scene_without_overlap_is_refused(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel(reference=[0])], threads=1).fit(tiles.paths[:2])
    far = write_raster(
        tmp_path / "far.tif",
        tiles.data_of(3),
        transform=from_origin(100_000.0, 100_000.0, 30.0, 30.0),
        crs=Image(tiles.paths[0]).crs,
        nodata=0,
    )
    with pytest.raises(SpectralMatchError, match="far") as error:
        model.transform([far], tmp_path / "out")
    assert "shares no valid pixel" in str(error.value)


# ---------------------------------------------------------------------- steps and naming


def test_a_second_step_fits_on_the_corrected_statistics(tiles, tmp_path):
    """Steps chain through transform_statistics: a second global step has nothing left."""
    one = Mosaic(steps=[GlobalModel(reference=[0])], threads=2).fit(tiles.paths)
    two = Mosaic(steps=[GlobalModel(reference=[0]), GlobalModel()], threads=2).fit(tiles.paths)
    np.testing.assert_allclose(two.steps_[0].gains_, one.steps_[0].gains_, rtol=1e-12)
    np.testing.assert_allclose(two.steps_[1].gains_, 1.0, atol=1e-6)
    np.testing.assert_allclose(two.steps_[1].offsets_, 0.0, atol=1e-2)
    path = two.save(tmp_path / "two.json")
    loaded = Mosaic.load(path)
    assert [type(step) for step in loaded.steps] == [GlobalModel, GlobalModel]
    a = one.transform(tiles.paths, tmp_path / "one")
    b = loaded.transform(tiles.paths, tmp_path / "two")
    for x, y in zip(a, b, strict=True):
        diff = np.abs(read_raster(x.path).astype(int) - read_raster(y.path).astype(int))
        assert diff.max() <= 1


def test_outputs_keep_the_input_names(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    targets = [tmp_path / "o" / f"result_{k}.tif" for k in range(4)]
    outputs = model.transform(tiles.paths, outputs=targets)
    assert outputs.names == tiles.names
    assert [image.path for image in outputs] == targets
    # the returned collection is a valid input again (matched outputs re-enter a fit)
    assert len(Mosaic(steps=[GlobalModel()], threads=1).fit(outputs).steps_[0].images_) == 4


def test_cog_output_keeps_an_internal_mask(tmp_path, truth):
    paths, mask = [], np.full((120, 120), 255, dtype=np.uint8)
    mask[:20, :20] = 0
    for name, window, gain in (("left", LAYOUT[0], 1.0), ("right", LAYOUT[1], 1.2)):
        rows, cols = window.toslices()
        path = tmp_path / "in" / f"{name}.tif"
        path.parent.mkdir(exist_ok=True)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            dtype="uint16",
            count=3,
            width=120,
            height=120,
            crs=truth.crs,
            transform=rasterio.windows.transform(window, truth.transform),
        ) as ds:
            ds.write(np.rint(truth.data[:, rows, cols] * gain).astype(np.uint16))
            ds.write_mask(mask)
        paths.append(path)
    _, outputs = match(paths, tmp_path / "out", reference=["left"], cog=True)
    with rasterio.open(outputs.images[1].path) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(dataset.dataset_mask(), mask)


def test_a_match_and_its_seamlines_call_nothing_deprecated(data_dir, tmp_path):
    """No deprecation warning raised from the package's own code (affine's ``*`` on a
    transform is deprecated for ``@``), which ``-W error`` would turn into failures."""
    import warnings

    from spectralmatch import Seamline

    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings("error", category=category, module=r"spectralmatch(\.|$)")
        model = Mosaic().fit(data_dir)
        outputs = model.transform(data_dir, tmp_path / "out")
        Seamline.least_cost(outputs)
