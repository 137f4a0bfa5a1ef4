"""The examples run as written and do what they say."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FIELD_LAYOUT, affine_rmse, make_tiles, read_raster, seam_error, smooth_fields

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
#: The runnable examples (the other modules of examples/ are imported by them), each run
#: by a test below into a tmp folder, from an empty current folder.
SCRIPTS = {
    "custom_adjuster.py",
    "masks_figure.py",
    "mosaic_workflow.py",
    "polynomial_detrend.py",
    "sample_before_after.py",
    "sample_mosaic.py",
    "time_series.py",
}


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """An empty current folder: an example must leave it empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert not any(cwd.iterdir()), f"an example wrote here: {sorted(cwd.iterdir())}"


def readme_table(first_line: str) -> str:
    """The Markdown table of README.md that starts with ``first_line``."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(first_line)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_every_runnable_example_is_run_by_a_test():
    runnable = {
        path.name for path in EXAMPLES.glob("*.py") if '__name__ == "__main__"' in path.read_text()
    }
    assert runnable == SCRIPTS


def test_an_example_without_a_folder_writes_into_a_new_temporary_one(tmp_path, empty_cwd):
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_adjuster.py")],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    folder = Path(re.search(r"^writing into (.+)$", result.stdout, flags=re.M).group(1))
    assert folder.parent == tmp_path and (folder / "model.json").is_file()


def test_sample_before_after_prints_the_readme_table(tmp_path, empty_cwd):
    from sample_before_after import main

    table = main(tmp_path)
    assert table == readme_table(table.splitlines()[0])
    assert (tmp_path / "sample_before_after.png").stat().st_size > 10_000


def test_sample_mosaic_prints_the_readme_table(tmp_path, empty_cwd):
    from sample_mosaic import main

    table = main(tmp_path)
    assert table == readme_table(table.splitlines()[0])
    assert (tmp_path / "sample_mosaic_before_after.png").stat().st_size > 10_000


def test_a_figure_is_never_written_over_an_existing_file(tmp_path, empty_cwd):
    from sample_before_after import main

    (tmp_path / "sample_before_after.png").write_bytes(b"a tracked figure")
    with pytest.raises(FileExistsError, match="sample_before_after.png exists"):
        main(tmp_path)
    assert (tmp_path / "sample_before_after.png").read_bytes() == b"a tracked figure"


def test_mosaic_workflow_example_writes_the_mosaic_of_the_sample(tmp_path, empty_cwd):
    from mosaic_workflow import run

    mosaic = run(tmp_path)
    assert mosaic == tmp_path / "MergedImage.tif"
    values = read_raster(mosaic)
    assert values.shape[0] == 3 and (values != 0).all(axis=0).mean() > 0.5


def test_time_series_example_normalizes_every_date_to_the_reference(tmp_path, empty_cwd):
    from time_series import main

    main(tmp_path)
    reference = read_raster(tmp_path / "scenes" / "date_0.tif").astype(float)
    assert np.array_equal(read_raster(tmp_path / "normalized" / "date_0.tif"), reference)
    valid = (reference != 0).all(axis=0)
    for date in range(1, 5):  # date_4 came later and was solved against the saved model
        before = read_raster(tmp_path / "scenes" / f"date_{date}.tif").astype(float)
        after = read_raster(tmp_path / "normalized" / f"date_{date}.tif").astype(float)
        typical_before = np.median(np.abs(before - reference)[:, valid])
        typical_after = np.median(np.abs(after - reference)[:, valid])
        assert typical_after < 5 and typical_after < typical_before / 20, (date, typical_after)
    assert sorted(p.name for p in (tmp_path / "change_masks").glob("*.tif")) == [
        f"date_{d}.tif" for d in range(4)
    ]


def test_custom_adjuster_example_runs(tmp_path, empty_cwd):
    from custom_adjuster import main

    from spectralmatch import GlobalModel, Mosaic

    main(tmp_path)
    loaded = Mosaic.load(tmp_path / "model.json")
    assert [type(step).__name__ for step in loaded.steps_] == ["Rescale", GlobalModel.__name__]
    assert loaded.steps_[0].offset == -5000.0


def test_polynomial_detrend_example_saves_loads_and_reapplies(tmp_path, empty_cwd):
    from polynomial_detrend import main

    from spectralmatch import Mosaic

    main(tmp_path)
    document = json.loads((tmp_path / "model.json").read_text())
    assert [step["class"] for step in document["steps"]] == [
        "spectralmatch:GlobalModel",
        "my_steps:PolynomialDetrend",
    ]
    assert [type(step).__name__ for step in Mosaic.load(tmp_path / "model.json").steps_] == [
        "GlobalModel",
        "PolynomialDetrend",
    ]
    for path in sorted((tmp_path / "matched").glob("*.tif")):
        assert np.array_equal(read_raster(path), read_raster(tmp_path / "again" / path.name))


def test_polynomial_detrend_removes_tilted_brightness_planes(tmp_path, truth):
    """Tiles with a known multiplicative plane each: the detrend after the global model
    brings overlaps and the truth closer than the global model alone."""
    from my_steps import PolynomialDetrend

    from spectralmatch import GlobalModel, Mosaic

    tiles = make_tiles(
        tmp_path / "in",
        truth,
        gains=np.ones((4, 3)),
        offsets=np.zeros((4, 3)),
        windows=FIELD_LAYOUT,
        fields=smooth_fields(FIELD_LAYOUT, 0.08),
        noise_sd=1.0,
    )
    results = {}
    for name, steps in {
        "global": [GlobalModel()],
        "detrend": [GlobalModel(), PolynomialDetrend(degree=1, n_blocks=10, ridge=0.05)],
    }.items():
        outputs = Mosaic(steps=steps).fit_transform(tiles.paths, tmp_path / name)
        paths = [image.path for image in outputs]
        results[name] = (seam_error(tiles, paths), affine_rmse(tiles, paths))
    assert results["detrend"][0] < 0.7 * results["global"][0], results
    assert results["detrend"][1] < 0.7 * results["global"][1], results


def test_masks_figure_shows_the_pasted_cloud_and_the_water(tmp_path, empty_cwd):
    import matplotlib.image
    from masks_figure import main

    fractions = main(tmp_path)
    picture = matplotlib.image.imread(tmp_path / "masks_over_sample.png")
    assert picture.shape[0] > 300 and picture.shape[1] > 2.5 * picture.shape[0]  # 3 panels
    # the mask's cloud is the pasted one (its soft edge and the buffer add a little)
    assert 0.9 < fractions["cloud"] / fractions["pasted cloud"] < 1.2
    assert 0 < fractions["shadow"] < fractions["cloud"]
    assert 0 < fractions["water"] < 1
