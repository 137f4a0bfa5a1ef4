"""The estimator contract (scikit-learn's): keyword-only hyper-parameters, get/set_params,
clone, repr, fit that leaves the constructor arguments alone, and parameter validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import folder_listing, inverse, write_polygons
from shapely.geometry import box

from spectralmatch import (
    IRMAD,
    Adjuster,
    BlockMap,
    GlobalModel,
    HistogramMatch,
    ImageCollection,
    Mosaic,
    NotFittedError,
    ResidualPIF,
    SpectralMatchError,
    align_rasters,
    mask_rasters,
    merge_rasters,
)
from spectralmatch.cli.main import main
from spectralmatch.model.base import Estimator, check_is_fitted, clone
from spectralmatch.model.pipeline import default_steps


def nested_model() -> Mosaic:
    return Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)], pif=IRMAD())


def learned(estimator) -> set[str]:
    """Attributes that are not hyper-parameters."""
    return set(vars(estimator)) - set(estimator.get_params(deep=False))


# ---------------------------------------------------------------------- keyword-only


@pytest.mark.parametrize(
    ("cls", "argument"),
    [
        (Mosaic, [GlobalModel()]),
        (GlobalModel, ["tile_0"]),
        (BlockMap, 64),
        (HistogramMatch, ["tile_0"]),
        (ResidualPIF, 3.0),
        (IRMAD, 0.05),
    ],
)
def test_hyper_parameters_are_keyword_only(cls, argument):
    with pytest.raises(TypeError, match="positional"):
        cls(argument)
    # the same value by keyword is accepted and stored unchanged
    name = cls._param_names()[0]
    assert getattr(cls(**{name: argument}), name) is argument


def test_subclass_taking_var_positional_is_refused_at_definition():
    with pytest.raises(TypeError) as caught:

        class Loose(Adjuster):
            def __init__(self, *args, gain=1.0):
                self.gain = gain

    assert "Loose.__init__" in str(caught.value)
    assert "*args" in str(caught.value)


def test_subclass_taking_var_keyword_is_refused_at_definition():
    with pytest.raises(TypeError) as caught:

        class Sloppy(Estimator):
            def __init__(self, *, gain=1.0, **options):
                self.gain = gain
                self.options = options

    assert "Sloppy.__init__" in str(caught.value)
    assert "**options" in str(caught.value)


def test_subclass_with_keyword_only_parameters_is_accepted():
    class Fine(Adjuster):
        def __init__(self, *, gain=1.0, offset=0.0):
            self.gain = gain
            self.offset = offset

    assert Fine(gain=2.0).get_params() == {"gain": 2.0, "offset": 0.0}


# ---------------------------------------------------------------------- get_params


def test_get_params_deep_reaches_nested_steps_and_detector():
    model = nested_model()
    params = model.get_params(deep=True)
    assert params["steps__1__block_size"] == 64
    assert params["steps__0__reference"] is None
    assert params["pif__significance"] == 0.01
    assert params["steps__1__correction"] == "wallis"
    assert params["steps__0"] is model.steps[0]
    assert params["pif"] is model.pif
    assert params["steps"] is model.steps


def test_get_params_shallow_has_only_own_parameters():
    model = nested_model()
    shallow = model.get_params(deep=False)
    assert set(shallow) == {
        "steps",
        "window_size",
        "threads",
        "executor",
        "progress",
        "pif",
        "pif_dir",
        "cache",
    }
    for key in ("steps__1__block_size", "steps__0__reference", "pif__significance"):
        assert key not in shallow


# ---------------------------------------------------------------------- set_params


def test_set_params_changes_a_nested_step_and_the_detector():
    model = nested_model()
    steps, first, second = model.steps, model.steps[0], model.steps[1]
    assert model.set_params(steps__1__correction="offset", pif__significance=0.05) is model
    assert model.steps is steps and model.steps[1] is second
    assert second.correction == "offset"
    assert second.block_size == 64  # the rest of the step is left alone
    assert first.get_params() == GlobalModel().get_params()
    assert model.pif.significance == 0.05
    params = model.get_params()
    assert params["steps__1__correction"] == "offset"
    assert params["pif__significance"] == 0.05


def test_set_params_top_level_and_nested_together():
    model = nested_model().set_params(window_size=256, steps__0__robust=True)
    assert model.window_size == 256
    assert model.steps[0].robust is True


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"steps__5__correction": "offset"}, ["steps__5__correction", "0..1"]),
        ({"steps__one__correction": "offset"}, ["steps__one__correction"]),
        ({"steps__1": BlockMap()}, ["steps__1"]),
        ({"steps__1__colour": "red"}, ["BlockMap", "'colour'"]),
        ({"colour": "red"}, ["Mosaic", "'colour'"]),
        ({"pif__alpha": 0.1}, ["IRMAD", "'alpha'"]),
    ],
)
def test_set_params_refuses_a_bad_index_or_unknown_parameter(params, fragments):
    model = nested_model()
    before = model.get_params()
    with pytest.raises(SpectralMatchError) as caught:
        model.set_params(**params)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert model.get_params() == before


def test_set_params_nested_without_steps_is_refused():
    with pytest.raises(SpectralMatchError, match="Mosaic.steps holds no estimator"):
        Mosaic().set_params(steps__0__robust=True)


# ---------------------------------------------------------------------- clone


def test_clone_gives_equal_params_and_new_nested_objects():
    model = nested_model().set_params(window_size=512, steps__0__robust=True)
    copy = clone(model)
    assert copy is not model
    assert type(copy) is Mosaic
    assert copy.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    for key, value in model.get_params(deep=True).items():
        if isinstance(value, (Estimator, list)):
            continue
        assert copy.get_params(deep=True)[key] == value, key
    assert copy.steps is not model.steps
    for mine, theirs in zip(copy.steps, model.steps, strict=True):
        assert mine is not theirs
        assert type(mine) is type(theirs)
        assert mine.get_params() == theirs.get_params()
    assert copy.pif is not model.pif
    assert copy.pif.get_params() == model.pif.get_params()
    assert repr(copy) == repr(model)
    # changing the clone does not reach the original
    copy.set_params(steps__1__block_size=8)
    assert model.steps[1].block_size == 64


def test_clone_of_a_fitted_model_is_unfitted(tiles):
    model = Mosaic(steps=[GlobalModel(reference="tile_0")], threads=2).fit(tiles.paths)
    check_is_fitted(model)
    copy = clone(model)
    with pytest.raises(NotFittedError, match="Mosaic is not fitted"):
        check_is_fitted(copy)
    assert learned(copy) == set()
    assert copy.steps[0].reference == "tile_0"
    assert learned(copy.steps[0]) == set()

    step = model.steps_[0]
    check_is_fitted(step)
    step_copy = clone(step)
    with pytest.raises(NotFittedError, match="GlobalModel is not fitted"):
        check_is_fitted(step_copy)
    assert step_copy.get_params() == step.get_params()
    assert not hasattr(step_copy, "gains_")


# ---------------------------------------------------------------------- repr


@pytest.mark.parametrize(
    ("estimator", "text"),
    [
        (GlobalModel(), "GlobalModel()"),
        (GlobalModel(robust=True), "GlobalModel(robust=True)"),
        (GlobalModel(robust=False, mean_weight=1.0), "GlobalModel()"),
        (
            BlockMap(correction="offset", block_size=32),
            "BlockMap(block_size=32, correction='offset')",
        ),
        (IRMAD(significance=0.05), "IRMAD(significance=0.05)"),
        (Mosaic(), "Mosaic()"),
        (
            Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)], pif=IRMAD()),
            "Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)], pif=IRMAD())",
        ),
        (
            Mosaic(steps=[HistogramMatch(reference=["tile_0"])], threads=2),
            "Mosaic(steps=[HistogramMatch(reference=['tile_0'])], threads=2)",
        ),
    ],
)
def test_repr_shows_only_non_default_parameters(estimator, text):
    assert repr(estimator) == text


# ---------------------------------------------------------------------- fit


def test_fit_leaves_constructor_arguments_unchanged(tiles):
    steps = [GlobalModel(), BlockMap(block_size=32)]
    before = [step.get_params() for step in steps]
    model = Mosaic(steps=steps, threads=2)
    assert model.fit(tiles.paths) is model
    assert model.steps is steps
    assert len(steps) == 2
    for step, params in zip(steps, before, strict=True):
        assert step.get_params() == params
        assert [name for name in vars(step) if name.endswith("_")] == []
        with pytest.raises(NotFittedError):
            check_is_fitted(step)
    assert len(model.steps_) == 2
    for fitted, step in zip(model.steps_, steps, strict=True):
        assert fitted is not step
        assert type(fitted) is type(step)
        assert fitted.get_params() == step.get_params()
    assert model.steps_[0].gains_.shape == (4, 3)
    assert model.steps_[1].shifts_.shape[:2] == (4, 3)
    # everything fit learned ends in "_", on the model and on each fitted step
    assert learned(model) == {"steps_", "images_", "n_bands_", "reads_"}
    assert model.n_bands_ == 3
    assert [entry["name"] for entry in model.images_] == tiles.names
    for fitted in model.steps_:
        assert learned(fitted), type(fitted).__name__
        for name in learned(fitted):
            assert name.endswith("_"), f"{type(fitted).__name__}.{name}"


def test_refit_replaces_the_fitted_steps_not_the_given_ones(tiles):
    steps = [GlobalModel(reference="tile_0")]
    model = Mosaic(steps=steps, threads=2).fit(tiles.paths)
    first = model.steps_[0]
    model.fit(tiles.paths[:2])
    assert model.steps is steps
    assert model.steps_[0] is not first
    assert model.steps_[0].gains_.shape == (2, 3)
    assert first.gains_.shape == (4, 3)  # the earlier fit is not modified in place


def test_check_is_fitted_without_attribute_names(tiles):
    model = Mosaic(steps=[GlobalModel()], threads=2)
    with pytest.raises(NotFittedError, match="Mosaic is not fitted yet"):
        check_is_fitted(model)
    step = GlobalModel()
    with pytest.raises(NotFittedError, match="GlobalModel is not fitted yet"):
        check_is_fitted(step)
    model.fit(tiles.paths)
    check_is_fitted(model)
    check_is_fitted(model.steps_[0])
    check_is_fitted(model, ["steps_", "n_bands_"])
    with pytest.raises(NotFittedError):
        check_is_fitted(model, "no_such_")
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(model))


def test_transform_before_fit_raises_not_fitted(tiles, tmp_path):
    with pytest.raises(NotFittedError, match="Mosaic is not fitted"):
        Mosaic(steps=[GlobalModel()]).transform(tiles.paths, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        (Mosaic(window_size=0), ["Mosaic", "window_size", "0"]),
        (Mosaic(window_size=2.5), ["Mosaic", "window_size", "2.5"]),
        (Mosaic(threads=0), ["Mosaic", "threads", "0"]),
        (Mosaic(executor="gpu"), ["Mosaic", "executor", "'gpu'"]),
        (Mosaic(progress="yes"), ["Mosaic", "progress", "'yes'"]),
        (Mosaic(steps=[]), ["Mosaic", "steps"]),
        (Mosaic(steps=["global"]), ["Mosaic", "steps", "'global'"]),
        (Mosaic(steps=[GlobalModel(mean_weight=-1)]), ["GlobalModel", "mean_weight", "-1"]),
        (Mosaic(steps=[GlobalModel(std_weight=0)]), ["GlobalModel", "std_weight", "0"]),
        (Mosaic(steps=[GlobalModel(robust="yes")]), ["GlobalModel", "robust", "'yes'"]),
        (Mosaic(steps=[BlockMap(correction="median")]), ["BlockMap", "correction", "'median'"]),
        (
            Mosaic(steps=[BlockMap(block_size=16, n_blocks=4)]),
            ["BlockMap", "block_size", "n_blocks"],
        ),
        (Mosaic(steps=[HistogramMatch(n_quantiles=2)]), ["HistogramMatch", "n_quantiles", "2"]),
        (
            Mosaic(steps=[GlobalModel()], pif=IRMAD(significance=2)),
            ["IRMAD", "significance", "2"],
        ),
        (
            Mosaic(steps=[GlobalModel()], pif=ResidualPIF(threshold=0)),
            ["ResidualPIF", "threshold", "0"],
        ),
        (Mosaic(steps=[GlobalModel()], pif="irmad"), ["Mosaic", "pif", "'irmad'"]),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, Mosaic) else None,
)
def test_fit_validates_parameters_with_a_clear_error(tiles, tmp_path, model, fragments):
    listing = folder_listing(tmp_path)
    with pytest.raises(SpectralMatchError) as caught:
        model.fit(tiles.paths)
    assert type(caught.value) is SpectralMatchError
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert not hasattr(model, "steps_")
    assert folder_listing(tmp_path) == listing


def test_transform_validates_working_dtype(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    with pytest.raises(SpectralMatchError) as caught:
        model.transform(tiles.paths, tmp_path / "out", working_dtype="int8")
    message = str(caught.value)
    assert "Mosaic.transform" in message
    assert "working_dtype" in message
    assert "'int8'" in message
    assert not (tmp_path / "out").exists()


def test_transform_validates_parameters_changed_after_fit(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    model.set_params(window_size=-5)
    with pytest.raises(SpectralMatchError, match="Mosaic: window_size must be an integer >= 1"):
        model.transform(tiles.paths, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("step", "fragments"),
    [
        (GlobalModel(mean_weight=-1), ["GlobalModel", "mean_weight", "-1"]),
        (BlockMap(correction="median"), ["BlockMap", "correction", "'median'"]),
        (BlockMap(min_pixels=0), ["BlockMap", "min_pixels", "0"]),
        (HistogramMatch(n_quantiles=2), ["HistogramMatch", "n_quantiles", "2"]),
    ],
)
def test_step_fit_on_its_own_validates_parameters(tiles, step, fragments):
    with pytest.raises(SpectralMatchError) as caught:
        step.fit(tiles.paths)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_align_rasters_validates_resampling(tiles, tmp_path):
    with pytest.raises(SpectralMatchError) as caught:
        align_rasters(tiles.paths, tmp_path / "aligned", resampling_method="foo")
    message = str(caught.value)
    assert message.startswith("align_rasters: resampling_method must be one of 'nearest'")
    assert message.endswith("got 'foo'")
    assert not (tmp_path / "aligned").exists()


def test_align_rasters_validates_resolution(tiles, tmp_path):
    with pytest.raises(SpectralMatchError) as caught:
        align_rasters(tiles.paths, tmp_path / "aligned", resolution=(-30, 30))
    message = str(caught.value)
    assert "align_rasters" in message
    assert "resolution" in message
    assert "(-30, 30)" in message
    assert not (tmp_path / "aligned").exists()


def test_merge_rasters_validates_feather(tiles, tmp_path):
    with pytest.raises(SpectralMatchError) as caught:
        merge_rasters(tiles.paths, tmp_path / "mosaic.tif", feather=-1)
    assert str(caught.value) == "merge_rasters: feather must be a number >= 0, got -1"
    assert not (tmp_path / "mosaic.tif").exists()


def test_mask_rasters_validates_the_mode_of_vector_mask(tiles, tmp_path):
    polygons = write_polygons(tmp_path / "mask.gpkg", [box(700000, -2806000, 703000, -2803000)])
    with pytest.raises(SpectralMatchError) as caught:
        mask_rasters(tiles.paths, tmp_path / "masked", vector_mask=("inside", polygons))
    # (the test's folder name holds "mask_rasters": judge the message without the path)
    message = str(caught.value).replace(str(polygons), "<path>")
    assert "'inside'" in message
    assert "'include'" in message and "'exclude'" in message
    # the contract: the error names the function and the parameter
    assert "mask_rasters" in message
    assert "vector_mask" in message
    assert not (tmp_path / "masked").exists()


# ---------------------------------------------------------------------- a step on its own


def test_global_model_fits_on_a_folder_or_collection(tiles):
    expected_gain, expected_offset = inverse(tiles.gains, tiles.offsets)
    on_folder = GlobalModel(reference="tile_0").fit(tiles.folder)
    assert on_folder.gains_.shape == (4, 3)
    assert on_folder.offsets_.shape == (4, 3)
    assert on_folder.images_ == tiles.names
    np.testing.assert_allclose(on_folder.gains_, expected_gain, rtol=5e-3)
    np.testing.assert_allclose(on_folder.gains_[0], 1.0)
    np.testing.assert_allclose(on_folder.offsets_[0], 0.0)

    collection = ImageCollection.from_paths(tiles.paths)
    on_collection = GlobalModel(reference="tile_0").fit(collection)
    np.testing.assert_allclose(on_collection.gains_, on_folder.gains_, rtol=1e-12)
    np.testing.assert_allclose(on_collection.offsets_, on_folder.offsets_, atol=1e-9)

    # the same as inside a model (one statistics pass for all steps)
    inside = Mosaic(pif=None, steps=[GlobalModel(reference="tile_0")], threads=2).fit(tiles.paths)
    np.testing.assert_allclose(inside.steps_[0].gains_, on_folder.gains_, rtol=1e-9)
    np.testing.assert_allclose(inside.steps_[0].offsets_, on_folder.offsets_, atol=1e-6)


def test_global_model_fits_on_the_sample_data(data_dir):
    step = GlobalModel().fit(data_dir)
    assert step.gains_.shape == (4, 3)
    assert step.images_ == ["tile_00", "tile_01", "tile_02", "tile_03"]
    assert np.isfinite(step.gains_).all()
    assert (step.gains_ > 0).all()


@pytest.mark.parametrize("value", [42, None, 3.5])
def test_global_model_fit_on_nonsense_is_a_clear_error(value):
    step = GlobalModel()
    with pytest.raises(SpectralMatchError) as caught:
        step.fit(value)
    assert type(caught.value) is SpectralMatchError
    assert "GlobalModel.fit expects OverlapStatistics or images" in str(caught.value)
    assert repr(value) in str(caught.value)
    assert not hasattr(step, "gains_")


# ---------------------------------------------------------------------- default steps and CLI


def test_default_steps_are_global_then_block_map():
    steps = default_steps()
    assert [type(step) for step in steps] == [GlobalModel, BlockMap]
    assert steps[0].get_params() == GlobalModel().get_params()
    assert steps[1].get_params() == BlockMap().get_params()
    assert default_steps()[0] is not steps[0]  # new objects every time


def test_mosaic_without_steps_fits_the_default_steps(tiles):
    model = Mosaic(threads=2).fit(tiles.paths)
    assert model.steps is None
    assert [type(step) for step in model.steps_] == [GlobalModel, BlockMap]
    expected = [step.get_params() for step in default_steps()]
    assert [step.get_params() for step in model.steps_] == expected


def test_command_line_fit_saves_the_default_steps_of_mosaic(tiles, tmp_path):
    cli_path = tmp_path / "cli" / "model.json"
    result = CliRunner().invoke(
        main, ["fit", str(tiles.folder), "--model", str(cli_path), "--no-cache"]
    )
    assert result.exit_code == 0, result.output
    api_path = Mosaic().fit(tiles.folder).save(tmp_path / "api" / "model.json")
    cli_document = json.loads(cli_path.read_text())
    api_document = json.loads(api_path.read_text())
    assert [step["class"] for step in cli_document["steps"]] == [
        "spectralmatch:GlobalModel",
        "spectralmatch:BlockMap",
    ]
    assert [(s["class"], s["params"]) for s in cli_document["steps"]] == [
        (s["class"], s["params"]) for s in api_document["steps"]
    ]
    # the same fit too
    np.testing.assert_allclose(
        cli_document["steps"][0]["state"]["gains"],
        api_document["steps"][0]["state"]["gains"],
        rtol=1e-9,
    )
