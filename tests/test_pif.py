"""Pseudo-invariant features: change detectors (ResidualPIF, IR-MAD), the per-image
change masks of ``select_pseudo_invariant`` and ``Mosaic(pif=...)``, which fits again
without the changed pixels.

The time series (``conftest.make_series``) is four dates of one footprint cut from the
truth: date 0 undistorted (the reference), dates 1-3 with a known gain and offset per
band and two rectangles each where the land cover really changed (a bright flat patch
and another place's texture). A normalization must undo the distortion without erasing
the change.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from conftest import (
    SERIES_CHANGES,
    folder_listing,
    inverse,
    load_truth,
    make_series,
    read_raster,
    rectangles_mask,
    write_raster,
)
from rasterio.transform import from_origin

from spectralmatch import (
    IRMAD,
    BlockMap,
    GlobalModel,
    HistogramMatch,
    Image,
    ImageCollection,
    Mosaic,
    OverlapGraph,
    Pif,
    RasterMask,
    ResidualPIF,
    SpectralMatchError,
    global_regression,
)
from spectralmatch.errors import SpectralMatchWarning
from spectralmatch.model import pif
from spectralmatch.model.pif import (
    CELL_MEMORY,
    SEPARABLE_CELLS,
    _median,
    _robust_outliers,
    _smooth_surface,
    cell_side,
    irmad_no_change,
    select_pseudo_invariant,
)
from spectralmatch.pif import Pif as PublishedPath

REFERENCE = ["date_0"]
DETECTORS = {"residual": ResidualPIF, "irmad": IRMAD}
#: Bound on the relative error of the gains of a fit on pseudo-invariant pixels.
BOUND = 0.01
#: All changed pixels of the series, on the truth grid.
ANY_CHANGE = rectangles_mask([r for rects in SERIES_CHANGES.values() for r in rects], (200, 200))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return make_series(tmp_path_factory.mktemp("series"), load_truth())


def gain_error(step, series) -> float:
    expected, _ = inverse(series.gains, series.offsets)
    return float(np.abs(step.gains_ / expected - 1).max())


def global_steps():
    return [GlobalModel(reference=REFERENCE)]


def local_steps():
    return [GlobalModel(reference=REFERENCE), BlockMap(block_size=32, reference=REFERENCE)]


@pytest.fixture(scope="module")
def fitted(series, tmp_path_factory):
    """Per detector (None: plain): the global model fitted and its outputs, and the
    change masks in a pif_dir."""
    results = {}
    for name in (None, "residual", "irmad"):
        folder = tmp_path_factory.mktemp(f"fit_{name}")
        pif = DETECTORS[name]() if name else None
        model = Mosaic(
            steps=global_steps(), threads=2, pif=pif, pif_dir=folder / "pif" if name else None
        ).fit(series.paths)
        outputs = model.transform(series.paths, folder / "out")
        results[name] = (model, [read_raster(image.path) for image in outputs], folder / "pif")
    return results


def difference_to_reference(outputs, date: int) -> np.ndarray:
    """|output of ``date`` - output of the reference|, mean over the bands, per pixel."""
    return np.abs(outputs[date].astype(float) - outputs[0].astype(float)).mean(axis=0)


def true_difference(series, date: int) -> np.ndarray:
    """|what was on the ground at ``date`` - the reference's truth|, per pixel."""
    return np.abs(series.extra["scene"][date] - series.truth.data).mean(axis=0)


# ---------------------------------------------------------------------- 3. IR-MAD


@pytest.fixture(scope="module")
def observations():
    """x: 3000 real pixels (3 bands); y = A x + b + noise; 10 % of y replaced by values
    unrelated to x (drawn uniformly over y's range, band by band)."""
    rng = np.random.default_rng(1)
    x = load_truth().data.reshape(3, -1).T[rng.choice(200 * 200, 3000, replace=False)]
    mixing = np.array([[0.9, 0.1, 0.0], [0.05, 1.1, 0.05], [0.0, 0.2, 0.8]])
    y = x @ mixing.T + np.array([100.0, -50.0, 30.0]) + rng.normal(0.0, 5.0, x.shape)
    changed = np.zeros(len(x), dtype=bool)
    changed[rng.choice(len(x), len(x) // 10, replace=False)] = True
    y[changed] = rng.uniform(y.min(axis=0), y.max(axis=0), (changed.sum(), 3))
    return x, y, changed, irmad_no_change(x, y)


def test_irmad_separates_changed_from_unchanged_observations(observations):
    x, y, changed, no_change = observations
    assert no_change.shape == (len(x),)
    assert ((no_change >= 0) & (no_change <= 1)).all()
    assert (no_change[changed] < 0.01).mean() > 0.9
    assert np.median(no_change[~changed]) > 0.2
    assert (no_change[~changed] < 0.01).mean() < 0.02


@pytest.mark.parametrize("mapping", ["gain and offset", "band mixing", "of x, swapped"])
def test_irmad_is_invariant_to_affine_maps(observations, mapping):
    x, y, changed, no_change = observations
    if mapping == "gain and offset":
        result = irmad_no_change(x, y * np.array([2.0, 0.5, 1.3]) + np.array([1e3, -300, 7]))
    elif mapping == "band mixing":
        mixing = np.array([[1.2, -0.3, 0.1], [0.2, 0.7, 0.4], [-0.1, 0.3, 1.5]])
        result = irmad_no_change(x, y @ mixing.T + 5.0)
    else:
        result = irmad_no_change(y, 0.01 * x[:, ::-1] - 40.0)
    np.testing.assert_allclose(result, no_change, atol=1e-3)


def test_irmad_detector_on_images(observations):
    """IRMAD.changed on (bands, rows, cols) arrays: the observations as a 50 x 60 image
    with a border outside ``joint`` that is never flagged."""
    x, y, changed, no_change = observations
    first = np.zeros((3, 52, 60))
    second = np.zeros((3, 52, 60))
    first[:, 1:51] = x.T.reshape(3, 50, 60)
    second[:, 1:51] = y.T.reshape(3, 50, 60)
    second[:, 0] = second[:, 51] = 1e6  # would be changed, but outside joint
    joint = np.zeros((52, 60), dtype=bool)
    joint[1:51] = True
    flagged = IRMAD().changed(first, second, joint)
    assert flagged.shape == (52, 60) and not flagged[~joint].any()
    np.testing.assert_array_equal(flagged[1:51].ravel(), no_change < 0.01)
    assert (flagged[1:51].ravel() == changed).mean() > 0.97


# ---------------------------------------------------------------------- 4. ResidualPIF


def test_residual_pif_flags_the_inserted_outliers_and_nothing_else():
    rng = np.random.default_rng(2)
    first = rng.uniform(1000, 5000, (3, 40, 50))
    # bounded noise: its robust spread (1.4826 x MAD of a uniform) puts 3 sigma beyond it
    second = first + 20.0 + rng.uniform(-1.0, 1.0, first.shape)
    outliers = np.zeros((40, 50), dtype=bool)
    outliers[rng.integers(0, 40, 30), rng.integers(3, 50, 30)] = True
    band = rng.integers(0, 3, (40, 50))
    for r, c in zip(*np.nonzero(outliers), strict=True):
        second[band[r, c], r, c] += rng.choice([-1, 1]) * 8.0  # in one band only
    joint = np.ones((40, 50), dtype=bool)
    joint[:, :3] = False
    second[:, 5, 1] += 1000.0  # outside joint: not flagged
    flagged = ResidualPIF().changed(first, second, joint)
    assert outliers.sum() > 25
    np.testing.assert_array_equal(flagged, outliers)
    # a lower threshold still finds them, a huge one finds none
    assert ResidualPIF(threshold=2.5).changed(first, second, joint)[outliers].all()
    assert not ResidualPIF(threshold=50).changed(first, second, joint).any()


@pytest.mark.parametrize("detector", [ResidualPIF(), IRMAD()])
def test_detectors_without_joint_pixels_flag_nothing(detector):
    first = np.arange(3 * 8 * 9, dtype=float).reshape(3, 8, 9)
    second = first[:, ::-1, ::-1] * 5.0
    flagged = detector.changed(first, second, np.zeros((8, 9), dtype=bool))
    assert flagged.shape == (8, 9) and flagged.dtype == bool and not flagged.any()


def test_irmad_with_too_few_joint_pixels_flags_nothing():
    """2 x bands + 1 observations cannot give a canonical correlation analysis."""
    rng = np.random.default_rng(4)
    first, second = rng.uniform(0, 100, (2, 3, 8, 9))
    second[:, 0, :7] = 1e6  # wildly different, but too few to tell
    joint = np.zeros((8, 9), dtype=bool)
    joint[0, :7] = True
    assert not IRMAD().changed(first, second, joint).any()


def test_residual_pif_with_identical_images_flags_nothing():
    first = np.random.default_rng(3).uniform(0, 100, (2, 20, 20))
    assert not ResidualPIF().changed(first, first.copy(), np.ones((20, 20), bool)).any()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 1000, 1001])
def test_the_change_screening_median_is_numpys_to_the_bit(size):
    rng = np.random.default_rng(size)
    for values in (rng.normal(0, 1e3, size), rng.integers(0, 4, size).astype(float)):
        before = values.copy()
        assert _median(values) == float(np.median(values))
        np.testing.assert_array_equal(values, before)  # partitioned a copy, not the input
        with_nan = values.copy()
        with_nan[rng.integers(size)] = np.nan
        assert np.isnan(_median(with_nan)) and np.isnan(np.median(with_nan))


@pytest.mark.parametrize("shape", [(40, 60), (3, 900), (700, 2)])
def test_a_large_overlap_s_surface_from_separable_sums_is_the_design_s(shape, monkeypatch):
    """Above SEPARABLE_CELLS the screening's smooth surface is fitted from sums over the
    grid's rows and columns: the same surface, and the same cells found changed, as by
    the design matrix that smaller overlaps use."""
    rng = np.random.default_rng(sum(shape))
    rows, cols = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    values = (2 + cols - 3 * rows * cols + rows**2).ravel() + rng.normal(0, 0.1, rows.size)
    values[rng.random(rows.size) < 0.03] += 5
    usable = rng.random(rows.size) > 0.2
    assert rows.size > SEPARABLE_CELLS
    separable = _smooth_surface(values, usable, shape)
    found = _robust_outliers(values, usable, shape, 4.0)
    monkeypatch.setattr(pif, "SEPARABLE_CELLS", rows.size)
    np.testing.assert_allclose(separable, _smooth_surface(values, usable, shape), atol=1e-9)
    assert np.array_equal(_robust_outliers(values, usable, shape, 4.0), found)
    # the outlying cells are the changed ones, usable or not
    assert np.array_equal(found, values > (2 + cols - 3 * rows * cols + rows**2).ravel() + 2.5)


# ---------------------------------------------------------------------- 5. time series


def test_change_biases_the_plain_fit(series, fitted):
    model, outputs, _ = fitted[None]
    assert gain_error(model.steps_[0], series) > 0.2


@pytest.mark.parametrize("detector", ["residual", "irmad"])
def test_pif_fit_recovers_the_distortion_and_keeps_the_change(series, fitted, detector):
    model, outputs, _ = fitted[detector]
    step = model.steps_[0]
    assert gain_error(step, series) < BOUND < gain_error(fitted[None][0].steps_[0], series)
    _, expected_offsets = inverse(series.gains, series.offsets)
    assert np.abs(step.offsets_ - expected_offsets).max() < 15.0
    # the reference comes out bit-identical
    assert np.array_equal(outputs[0], read_raster(series.paths[0]))
    for date in (1, 2, 3):
        difference = difference_to_reference(outputs, date)
        unchanged = difference[~ANY_CHANGE].mean()
        assert unchanged < 4.0, (date, unchanged)
        for r0, r1, c0, c1 in SERIES_CHANGES[date]:
            found = difference[r0:r1, c0:c1].mean()
            true = true_difference(series, date)[r0:r1, c0:c1].mean()
            assert found > 50 * unchanged
            assert abs(found - true) < 0.03 * true, (date, found, true)


@pytest.mark.parametrize("detector", ["residual", "irmad"])
def test_pif_with_a_local_step_does_not_erase_the_change(series, tmp_path, detector):
    model = Mosaic(steps=local_steps(), threads=2, pif=DETECTORS[detector]()).fit(series.paths)
    outputs = [read_raster(image.path) for image in model.transform(series.paths, tmp_path)]
    assert np.array_equal(outputs[0], read_raster(series.paths[0]))
    failures = []
    for date in (1, 2, 3):
        difference = difference_to_reference(outputs, date)
        # unchanged pixels agree about as closely as after the global model alone (~2.3)
        unchanged = difference[~ANY_CHANGE].mean()
        if not unchanged < 4.0:
            failures.append(f"date {date}: unchanged pixels differ by {unchanged:.1f} on average")
        for r0, r1, c0, c1 in SERIES_CHANGES[date]:
            found = difference[r0:r1, c0:c1].mean()
            true = true_difference(series, date)[r0:r1, c0:c1].mean()
            if not found > 0.8 * true:
                failures.append(
                    f"date {date}: change at ({r0}, {c0}) shows {found:.0f}, truly {true:.0f}"
                )
    assert not failures, "; ".join(failures)


def test_local_step_without_pif_erases_part_of_the_change(series, tmp_path):
    """What the pif refit is for: fitted on all pixels, the blocks pull the changed
    areas toward the reference and bend the unchanged pixels around them."""
    model = Mosaic(steps=local_steps(), threads=2, pif=None).fit(series.paths)
    outputs = [read_raster(image.path) for image in model.transform(series.paths, tmp_path)]
    difference = difference_to_reference(outputs, 1)
    assert difference[~ANY_CHANGE].mean() > 10.0
    r0, r1, c0, c1 = SERIES_CHANGES[1][0]
    assert difference[r0:r1, c0:c1].mean() < 0.5 * true_difference(series, 1)[r0:r1, c0:c1].mean()


def changes_kept(outputs, series) -> list[float]:
    """Per changed rectangle: the difference to the reference the outputs show, as a
    fraction of the true one."""
    kept = []
    for date in (1, 2, 3):
        difference = difference_to_reference(outputs, date)
        for r0, r1, c0, c1 in SERIES_CHANGES[date]:
            true = true_difference(series, date)[r0:r1, c0:c1].mean()
            kept.append(difference[r0:r1, c0:c1].mean() / true)
    return kept


@pytest.fixture(scope="module")
def auto_fit(series, tmp_path_factory):
    """The global and local steps with ``pif="auto"`` (change cells from the one read),
    its outputs and its change masks."""
    folder = tmp_path_factory.mktemp("auto")
    model = Mosaic(steps=local_steps(), threads=2, pif="auto", pif_dir=folder / "pif")
    outputs = model.fit_transform(series.paths, folder / "out")
    return model, [read_raster(image.path) for image in outputs], folder / "pif"


def test_auto_pif_keeps_the_change_from_one_read(series, auto_fit, tmp_path):
    model, outputs, _ = auto_fit
    assert np.array_equal(outputs[0], read_raster(series.paths[0]))
    kept = changes_kept(outputs, series)
    assert min(kept) > 0.8, kept
    for date in (1, 2, 3):
        assert difference_to_reference(outputs, date)[~ANY_CHANGE].mean() < 4.0
    plain = Mosaic(steps=local_steps(), threads=2, pif=None).fit(series.paths)
    assert model.reads_ == plain.reads_  # no second read for the change
    written = [read_raster(image.path) for image in plain.transform(series.paths, tmp_path)]
    assert min(changes_kept(written, series)) < 0.8  # the bound fails without change detection


def test_auto_pif_masks_are_on_the_image_grid(series, auto_fit):
    _, _, folder = auto_fit
    assert folder_listing(folder) == [f"date_{k}.tif" for k in range(4)]
    for date in range(4):
        with (
            rasterio.open(folder / f"date_{date}.tif") as dataset,
            rasterio.open(series.paths[date]) as image,
        ):
            assert (dataset.shape, dataset.transform) == (image.shape, image.transform)
            assert dataset.crs == image.crs and dataset.nodata == 255
            marks = dataset.read(1).astype(bool)
        own = cells_inside(SERIES_CHANGES.get(date, []))
        if date:
            assert marks[own].mean() > 0.9, (date, marks[own].mean())
        assert marks[~rectangles_mask(SERIES_CHANGES.get(date, []), (200, 200))].mean() < 0.05


def test_auto_pif_with_histogram_steps_reads_the_overlaps_again(series):
    """Histograms cannot be recomposed from cells: the residual test (at CellPIF's
    threshold) on a second read."""
    steps = [HistogramMatch(reference=REFERENCE)]
    auto = Mosaic(steps=steps, threads=2).fit(series.paths)
    residual = Mosaic(steps=steps, threads=2, pif=ResidualPIF(threshold=4.0)).fit(series.paths)
    assert auto.reads_ == residual.reads_
    np.testing.assert_array_equal(auto.steps_[0].values_, residual.steps_[0].values_)


# ---------------------------------------------------------------------- 6. change masks


def cells_inside(rectangles, decimation=4, shape=(50, 50)) -> np.ndarray:
    """Pixels of the cells of the decimated grid lying wholly inside one of
    ``rectangles`` (the masks are on the image's grid, the detector saw cells)."""
    inside = rectangles_mask(rectangles, (shape[0] * decimation, shape[1] * decimation))
    cells = inside.reshape(shape[0], decimation, shape[1], decimation).all(axis=(1, 3))
    return np.kron(cells, np.ones((decimation, decimation), dtype=bool)).astype(bool)


@pytest.mark.parametrize("detector", ["residual", "irmad"])
def test_change_masks_are_written_per_image(series, fitted, detector):
    _, _, folder = fitted[detector]
    assert folder_listing(folder) == [f"date_{k}.tif" for k in range(4)]
    for date in range(4):
        with (
            rasterio.open(folder / f"date_{date}.tif") as dataset,
            rasterio.open(series.paths[date]) as image,
        ):
            assert dataset.count == 1 and dataset.dtypes == ("uint8",)
            assert dataset.crs == image.crs and dataset.nodata == 255
            # on the image's own grid, though the detector saw 4 x 4 pixel cells
            assert (dataset.shape, dataset.transform) == (image.shape, image.transform)
            marks = dataset.read(1)
        assert set(np.unique(marks)) <= {0, 1}
        own = cells_inside(SERIES_CHANGES.get(date, []))
        others = cells_inside(
            [r for k, rects in SERIES_CHANGES.items() if k != date for r in rects]
        )
        if date:
            assert marks[own].mean() > 0.9, (date, marks[own].mean())
            for rectangle in SERIES_CHANGES[date]:  # each change, not just one of them
                assert marks[cells_inside([rectangle])].mean() > 0.85
        # a partner's change is not the image's own (majority vote)
        assert marks[others].mean() < 0.05, (date, marks[others].mean())
        assert marks[~own & ~others].mean() < 0.03, (date, marks[~own & ~others].mean())


@pytest.mark.parametrize("detector", ["residual", "irmad"])
def test_change_masks_can_be_given_back_as_masks(series, fitted, detector):
    model, _, folder = fitted[detector]
    images = [Image(path, mask=RasterMask(str(folder / "{name}.tif"))) for path in series.paths]
    refit = Mosaic(steps=global_steps(), threads=2, pif=None).fit(images).steps_[0]
    np.testing.assert_allclose(refit.gains_, model.steps_[0].gains_, rtol=1e-9)
    np.testing.assert_allclose(refit.offsets_, model.steps_[0].offsets_, rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(refit.diagnostics_.count, model.steps_[0].diagnostics_.count)
    # and the masked pixels were left out: every overlap lost both dates' changes
    plain = fitted[None][0].steps_[0]
    pair = refit.diagnostics_.pairs.index(("date_1", "date_2"))
    lost = plain.diagnostics_.count[pair] - refit.diagnostics_.count[pair]
    changed = rectangles_mask(SERIES_CHANGES[1] + SERIES_CHANGES[2], (200, 200)).sum()
    assert (lost >= 0.95 * changed).all() and (lost < 1.3 * changed).all()


def test_select_pseudo_invariant_without_correction(series, tmp_path):
    """IR-MAD needs no correction first (it is invariant to affine maps); at decimation 3
    (ceil(200 / 3) cells) the masks are still written on the image's own grid."""
    collection = ImageCollection(series.paths)
    edges = OverlapGraph.from_collection(collection).edges
    folder = select_pseudo_invariant(
        collection, edges, None, IRMAD(decimation=3), tmp_path / "new" / "masks"
    )
    assert folder == tmp_path / "new" / "masks"
    assert folder_listing(folder) == [f"date_{k}.tif" for k in range(4)]
    for date in range(4):
        with rasterio.open(folder / f"date_{date}.tif") as dataset:
            image = collection.images[date]
            assert (dataset.shape, dataset.transform) == (image.grid.shape, image.transform)
            pixels = dataset.read(1).astype(bool)
        own = rectangles_mask(SERIES_CHANGES.get(date, []), (200, 200))
        if date:
            assert pixels[own].mean() > 0.85
        assert pixels[~own].mean() < 0.05


def test_pif_without_pif_dir_leaves_no_files(series, fitted, tmp_path, monkeypatch):
    """Without pif_dir the masks are temporary: the same fit, nothing left behind."""
    monkeypatch.chdir(tmp_path)
    model = Mosaic(steps=global_steps(), threads=2, pif=ResidualPIF()).fit(series.paths)
    np.testing.assert_array_equal(model.steps_[0].gains_, fitted["residual"][0].steps_[0].gains_)
    assert folder_listing(tmp_path) == []
    assert folder_listing(series.folder) == [f"date_{k}.tif" for k in range(4)]


def test_saved_pif_model_transforms_like_the_fitted_one(series, fitted, tmp_path):
    model, outputs, _ = fitted["irmad"]
    model.save(tmp_path / "model.json")
    loaded = Mosaic.load(tmp_path / "model.json")
    # fitting-only parameters are not saved: the loaded model has the defaults
    assert loaded.pif == "auto" and loaded.pif_dir is None
    again = loaded.transform(series.paths, tmp_path / "out")
    for image, output in zip(again, outputs, strict=True):
        assert np.array_equal(read_raster(image.path), output)


# ---------------------------------------------------------------------- 6. the Pif namespace


def published_parameters(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gains and offsets (images x bands) from the published (bands, 2 x images, 1)."""
    return params[:, 0::2, 0].T, params[:, 1::2, 0].T


@pytest.mark.parametrize("detector", ["residual", "irmad"])
def test_flood_from_match_points_fits_on_the_invariant_pixels(series, detector):
    assert PublishedPath is Pif
    params = Pif.flood_from_match_points(
        series.paths, included_names=REFERENCE, detector=DETECTORS[detector]()
    )
    assert params.shape == (3, 8, 1)
    gains, offsets = published_parameters(params)
    expected_gains, expected_offsets = inverse(series.gains, series.offsets)
    assert np.abs(gains / expected_gains - 1).max() < BOUND
    assert np.abs(offsets - expected_offsets).max() < 15.0


def test_flood_from_match_points_names_the_inputs_as_given(series):
    named = Pif.flood_from_match_points(
        series.paths, input_image_names=["a", "b", "c", "d"], included_names=["b"]
    )
    by_stem = Pif.flood_from_match_points(series.paths, included_names=["date_1"])
    np.testing.assert_array_equal(named, by_stem)
    gains, offsets = published_parameters(named)
    assert (gains[1] == 1).all() and (offsets[1] == 0).all()
    assert np.abs(gains[0] - 1).min() > 0.05  # the others are matched to it


def test_flood_from_match_points_min_samples(series):
    with pytest.raises(SpectralMatchError, match=r"min_samples: the overlap of date_\d and"):
        Pif.flood_from_match_points(series.paths, min_samples=200 * 200)


@pytest.mark.parametrize(
    ("options", "keyword"),
    [
        ({"red_band_index": 3}, "red_band_index"),
        ({"load_tie_points": "points.json"}, "load_tie_points"),
        ({"feature_method": "sift"}, "feature_method"),
        ({"overlapping_pairs": (("date_0", "date_1"),)}, "overlapping_pairs"),
        ({"included_names": ["date_9"]}, "included_names"),
        ({"input_image_names": ["a", "a", "b", "c"]}, "input_image_names"),
        ({"min_samples": -1}, "min_samples"),
        ({"calculation_dtype": "int16"}, "calculation_dtype"),
        ({"concurrent_processing_backend": "dask"}, "concurrent_processing_backend"),
    ],
)
def test_flood_from_match_points_refuses_what_it_cannot_do(series, options, keyword):
    with pytest.raises(SpectralMatchError, match=keyword):
        Pif.flood_from_match_points(series.paths, **options)


def test_flood_from_match_points_says_which_thresholds_have_no_effect(series):
    with pytest.warns(SpectralMatchWarning, match="inz_threshold=0.5 has no effect"):
        Pif.flood_from_match_points(series.paths, inz_threshold=0.5)


def test_save_inz_writes_the_change_masks_in_the_templates_folder(series, tmp_path):
    """The published per-pair INZ template becomes our per-image change masks, in its
    folder, and the changed rectangles of each date are marked there."""
    template = tmp_path / "INZ" / "$_to_$_INZ.tif"
    with pytest.warns(SpectralMatchWarning, match="one per image, not one per pair"):
        global_regression(
            series.paths, tmp_path / "out", pif_method="residual", pif_save_inz=str(template)
        )
    for date, rectangles in series.extra["changes"].items():
        with rasterio.open(tmp_path / "INZ" / f"date_{date}.tif") as mask:
            changed = mask.read(1).astype(bool)
            scale = 200 // mask.width
        inside = rectangles_mask([[v // scale for v in r] for r in rectangles], changed.shape)
        assert changed[inside].mean() > 0.5 > changed[~inside].mean() * 10


def test_save_inz_needs_a_change_detector(series, tmp_path):
    with pytest.raises(SpectralMatchError, match="pif_save_inz: writes the PIF change masks"):
        global_regression(
            series.paths, tmp_path / "out", pif_method="entire", pif_save_inz=str(tmp_path / "inz")
        )


ORIGIN_30 = from_origin(500000.0, 4000000.0, 30.0, 30.0)
ORIGIN_06 = from_origin(500000.0, 4000000.0, 0.6, 0.6)


@pytest.mark.parametrize("detector", [ResidualPIF(), IRMAD()])
def test_a_given_nodata_is_kept_through_change_detection(tmp_path, data_dir, detector):
    """Images given the nodata value their files do not declare (``nodata=``, --nodata,
    the published custom_nodata_value) are fitted, change detection included, as the
    files that declare it: the value is left out of the decimated overlaps and of the
    fit again without the changed pixels."""
    stripped = []
    for path in sorted(data_dir.glob("*.tif")):
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        with rasterio.open(copy, "r+") as dataset:
            dataset.nodata = None
        stripped.append(Image(copy, nodata=0))
    declared = [Image(path) for path in sorted(data_dir.glob("*.tif"))]

    def fitted(images, folder):
        model = Mosaic(steps=[GlobalModel()], pif=detector, pif_dir=folder, threads=1)
        return model.fit(ImageCollection(images)).steps_[0]

    expected, given = fitted(declared, tmp_path / "a"), fitted(stripped, tmp_path / "b")
    np.testing.assert_array_equal(given.gains_, expected.gains_)
    np.testing.assert_array_equal(given.offsets_, expected.offsets_)
    for mask in sorted((tmp_path / "a").glob("*.tif")):
        np.testing.assert_array_equal(read_raster(tmp_path / "b" / mask.name), read_raster(mask))


def test_cells_are_a_whole_number_of_the_finest_pixels(tmp_path):
    """Where 4-pixel cells of the overlaps would pass CELL_MEMORY, the cells grow, by
    whole pixels of the finest image."""
    ones = np.ones((3, 2000, 2000), np.uint16)  # 1200 m a side, as 40 coarse pixels
    coarse = write_raster(tmp_path / "coarse.tif", ones[:, :40, :40], transform=ORIGIN_30)
    fine = write_raster(tmp_path / "fine.tif", ones, transform=ORIGIN_06)
    collection = ImageCollection([coarse, fine])
    edges = OverlapGraph.from_collection(collection).edges
    side = cell_side(collection, edges, 4)
    assert side / 0.6 == pytest.approx(round(side / 0.6)) and side > 4 * 0.6
    area = sum((e.bounds[2] - e.bounds[0]) * (e.bounds[3] - e.bounds[1]) for e in edges)
    cells = area / side**2
    assert cells * collection.count * 3 * 8 * 2 <= CELL_MEMORY  # within the budget
    smaller = side - 0.6
    assert (area / smaller**2) * collection.count * 3 * 8 * 2 > CELL_MEMORY  # the smallest
    assert cell_side(collection, [], 4) == 4 * 0.6  # no overlap: decimation pixels
