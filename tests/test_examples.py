"""The examples run as written and do what they say."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from conftest import read_raster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def test_time_series_example_normalizes_every_date_to_the_reference(tmp_path):
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


def test_custom_adjuster_example_runs(tmp_path):
    from custom_adjuster import main

    from spectralmatch import GlobalModel, Mosaic

    main(str(tmp_path))
    loaded = Mosaic.load(tmp_path / "model.json")
    assert [type(step).__name__ for step in loaded.steps_] == ["Rescale", GlobalModel.__name__]
    assert loaded.steps_[0].offset == -5000.0
