"""The published package's tests of ``Match.global_regression`` and
``Match.local_block_adjustment``, ported: the same calls with the same keywords."""

from __future__ import annotations

import os

import pytest
import rasterio
from published_data import dummy_rasters

from spectralmatch import Match, Pif, SpectralMatchError
from spectralmatch.errors import SpectralMatchWarning

#: The engine keywords the published tests pass to every matching call.
SHARED = {
    "calculation_dtype": "float64",
    "output_dtype": "uint16",
    "custom_nodata_value": 0,
    "io_threads": 2,
    "image_threads": 2,
    "tile_threads": 2,
    "window_size": 16,
    "save_as_cog": True,
    "debug_logs": True,
    "pif_method": "entire",
}


def two_images(tmp_path, names_and_values, suffix):
    """Two constant 16 px images in ``input/`` and their output paths in ``output/``."""
    paths = dummy_rasters(tmp_path / "input", names_and_values)
    outputs = [str(tmp_path / "output" / f"{name}{suffix}") for name, _ in names_and_values]
    return paths, outputs


@pytest.mark.parametrize("method", ["global_regression", "local_block_adjustment"])
def test_build_overviews_uses_the_window_scales(tmp_path, method):
    paths, outputs = two_images(tmp_path, [("A", 100), ("B", 120)], "_Out.tif")
    options = {"pif_method": "entire"} if method == "global_regression" else {"number_of_blocks": 4}
    getattr(Match, method)(paths, outputs, build_overviews=True, window_scales=(2, 4), **options)
    for output in outputs:
        with rasterio.open(output) as dataset:
            assert dataset.overviews(1) == [2, 4]
        widths = []
        for level in range(2):
            with rasterio.open(output, overview_level=level) as overview:
                widths.append(overview.width)
        assert widths == [8, 4]


def test_global_regression_with_every_option_saves_its_adjustments(tmp_path):
    paths, outputs = two_images(tmp_path, [("A", 100), ("B", 120)], "_GlobalMatch.tif")
    saved = tmp_path / "adjustments.json"
    result = Match.global_regression(
        input_images=paths,
        output_images=outputs,
        **SHARED,
        specify_model_images=("include", ["A"]),
        custom_mean_factor=1.0,
        custom_std_factor=1.0,
        save_adjustments=str(saved),
    )
    assert result == outputs
    assert all(os.path.exists(path) for path in result)
    assert saved.is_file()


def test_global_regression_loads_saved_adjustments(tmp_path):
    paths, outputs = two_images(tmp_path, [("X", 130), ("Y", 110)], "_Match.tif")
    saved = tmp_path / "preload.json"
    Match.global_regression(
        input_images=paths, output_images=outputs, save_adjustments=str(saved), pif_method="entire"
    )
    reloaded = [path.replace("_Match", "_Reloaded") for path in outputs]
    options = {**SHARED, "calculation_dtype": "float32", "output_dtype": None}
    result = Match.global_regression(
        input_images=paths,
        output_images=reloaded,
        **{**options, "save_as_cog": False},
        load_adjustments=str(saved),
    )
    assert result == reloaded
    assert all(os.path.exists(path) for path in result)


def test_global_regression_takes_the_shared_engine_keywords(tmp_path):
    paths, outputs = two_images(tmp_path, [("A", 100), ("B", 120)], "_Global.tif")
    result = Match.global_regression(input_images=paths, output_images=outputs, **SHARED)
    assert result == outputs
    assert all(os.path.exists(path) for path in result)


def test_malformed_saved_adjustments_stop_the_run(tmp_path):
    paths, outputs = two_images(tmp_path, [("A", 100), ("B", 120)], "_Out.tif")
    malformed = tmp_path / "malformed.json"
    malformed.write_text("{not json", encoding="utf-8")
    with pytest.raises(SpectralMatchError, match="malformed.json"):
        Match.global_regression(paths, outputs, pif_method="entire", load_adjustments=malformed)
    assert not any(os.path.exists(path) for path in outputs)


def test_local_block_adjustment_loads_saved_block_maps(tmp_path):
    paths, outputs = two_images(tmp_path, [("X", 60), ("Y", 90)], "_Reloaded.tif")
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    reference = blocks / "ref.tif"
    Match.local_block_adjustment(
        input_images=paths,
        output_images=outputs,
        save_block_maps=(str(reference), str(blocks / "$_block.tif")),
    )
    local = [str(blocks / f"{name}_block.tif") for name in ("X", "Y")]
    again = [path.replace("_Reloaded", "_FromLoad") for path in outputs]
    result = Match.local_block_adjustment(
        input_images=paths,
        output_images=again,
        calculation_dtype="float32",
        io_threads=2,
        image_threads=2,
        tile_threads=2,
        debug_logs=True,
        load_block_maps=(str(reference), local),
    )
    assert result == again
    assert all(os.path.exists(path) for path in result)


LOCAL_OPTIONS = {
    "calculation_dtype": "float64",
    "output_dtype": "uint16",
    "custom_nodata_value": 99,
    "io_threads": 2,
    "image_threads": 2,
    "tile_threads": 2,
    "window_size": 16,
    "save_as_cog": True,
    "debug_logs": True,
    "number_of_blocks": (2, 2),
    "alpha": 0.75,
    "correction_method": "linear",
    "override_bounds_canvas_coords": (0, 0, 16, 16),
}


@pytest.mark.parametrize("save", [False, True])
def test_local_block_adjustment_with_every_option(tmp_path, save):
    # min_pixels (ours) lets the 8 x 8 px blocks count, so that the values can be checked
    paths, outputs = two_images(tmp_path, [("Img1", 50), ("Img2", 80)], "_Local.tif")
    blocks = tmp_path / "blocks"
    saving = {"save_block_maps": (str(blocks / "ref.tif"), str(blocks / "$_block.tif"))}
    result = Match.local_block_adjustment(
        input_images=paths,
        output_images=outputs,
        min_pixels=64,
        **LOCAL_OPTIONS,
        **(saving if save else {}),
    )
    assert result == outputs
    assert (blocks / "ref.tif").is_file() == save
    # both are brought three quarters of the way to their common mean, 65
    for output, value in zip(outputs, (50, 80), strict=True):
        with rasterio.open(output) as dataset:
            assert dataset.dtypes == ("uint16",)
            data = dataset.read(1)
        assert (data == round(value + 0.75 * (65 - value))).all()


def test_the_tie_point_keywords_of_the_pif_are_refused_naming_themselves(tmp_path):
    """Published: pif_load_tie_points reaches a mocked flood_from_match_points, needs that
    pif_method and a string. Ours has no tie-point PIF (docs/migrating.md): the keyword
    is refused, naming itself, before anything is written."""
    paths, outputs = two_images(tmp_path, [("A", 100), ("B", 120)], "_Global.tif")
    for method, value in (("flood_from_match_points", "ties.json"), ("entire", "ties.json")):
        with pytest.raises(SpectralMatchError, match="^pif_load_tie_points: "):
            Match.global_regression(paths, outputs, pif_method=method, pif_load_tie_points=value)
    with pytest.raises(SpectralMatchError, match="^load_tie_points: "):
        Pif.flood_from_match_points(paths, load_tie_points="ties.json")
    with pytest.raises(SpectralMatchError, match="^overlapping_pairs: must be None"):
        Pif.flood_from_match_points(paths, overlapping_pairs=(("A", "B"),))
    assert not any(os.path.exists(path) for path in outputs)


def test_pif_without_sample_limits_runs_and_says_max_samples_does_nothing(tmp_path):
    """Published with every private step mocked: max_samples=None and min_samples=None
    skip the sampling and the minimum. Ours uses every invariant pixel anyway."""
    paths, _ = two_images(tmp_path, [("A", 100), ("B", 120)], ".tif")
    with pytest.warns(SpectralMatchWarning, match="max_samples=None has no effect"):
        result = Pif.flood_from_match_points(paths, max_samples=None, min_samples=None)
    assert result.shape == (1, 4, 1)
    gains, offsets = result[0, 0::2, 0], result[0, 1::2, 0]
    # flat images: both are brought to their common mean
    assert gains * [100, 120] + offsets == pytest.approx([110, 110])
