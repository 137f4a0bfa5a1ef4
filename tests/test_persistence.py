"""Model files: only Adjuster steps are accepted, every field is checked with an error
naming the file and the field, custom steps round-trip, and saving is atomic."""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import file_digest, folder_listing, read_raster

from spectralmatch import Adjuster, BlockMap, GlobalModel, Mosaic, SpectralMatchError
from spectralmatch.model.persistence import MODEL_VERSION


@pytest.fixture
def saved(tiles, tmp_path):
    """A fitted two-step model saved to ``tmp_path/model/model.json`` (with a sidecar)."""
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=32)], threads=2).fit(tiles.paths)
    path = model.save(tmp_path / "model" / "model.json")
    return model, path


def document(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_document(folder: Path, data, name: str = "edited.json") -> Path:
    """``data`` as a model file beside the saved one (so that its sidecar is found)."""
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def load_error(path: Path) -> str:
    """The message of the SpectralMatchError that loading ``path`` raises."""
    with pytest.raises(SpectralMatchError) as caught:
        Mosaic.load(path)
    return str(caught.value)


# ---------------------------------------------------------------------- no arbitrary calls


def test_payloads_of_the_injection_tests_are_live(tmp_path):
    """What the crafted files would run, called directly, does leave its trace: so no trace
    below really means the class was not called."""
    os.system(command=f"touch {tmp_path / 'by_system'}")
    subprocess.Popen(args=["touch", str(tmp_path / "by_popen")]).wait()
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.rmtree(path=victim)
    assert (tmp_path / "by_system").exists()
    assert (tmp_path / "by_popen").exists()
    assert not victim.exists()


@pytest.mark.parametrize(
    ("class_path", "params"),
    [
        ("os:system", lambda marker, victim: {"command": f"touch {marker}"}),
        ("subprocess:Popen", lambda marker, victim: {"args": ["touch", str(marker)]}),
        ("posix:system", lambda marker, victim: {"command": f"touch {marker}"}),
        ("shutil:rmtree", lambda marker, victim: {"path": str(victim)}),
        ("numpy:ndarray", lambda marker, victim: {"shape": [2]}),
        ("spectralmatch:Mosaic", lambda marker, victim: {}),
    ],
)
def test_a_step_class_that_is_not_an_adjuster_is_refused_and_not_called(
    saved, tmp_path, class_path, params
):
    _, path = saved
    marker, victim = tmp_path / "pwned", tmp_path / "victim"
    victim.mkdir()
    data = document(path)
    data["steps"][0]["class"] = class_path
    data["steps"][0]["params"] = params(marker, victim)
    crafted = write_document(path.parent, data)
    message = load_error(crafted)
    assert message.startswith(f"{crafted}: steps[0].class: ")
    assert repr(class_path) in message
    assert "not a spectralmatch Adjuster; refused" in message
    assert not marker.exists()
    assert victim.is_dir()


def test_the_abstract_adjuster_itself_is_not_a_step(saved):
    _, path = saved
    data = document(path)
    data["steps"][0]["class"] = "spectralmatch:Adjuster"
    data["steps"][0]["params"] = {}
    crafted = write_document(path.parent, data)
    message = load_error(crafted)
    assert str(crafted) in message
    assert "steps[0]" in message


@pytest.mark.parametrize(
    ("class_path", "fragment"),
    [
        ("GlobalModel", "expected 'module:ClassName'"),
        (":GlobalModel", "expected 'module:ClassName'"),
        ("spectralmatch:", "expected 'module:ClassName'"),
        ("no_such_module_xyz:Step", "cannot import 'no_such_module_xyz:Step'"),
        ("spectralmatch:NoSuchStep", "cannot import 'spectralmatch:NoSuchStep'"),
        ("spectralmatch.gone:NoSuchStep", "not a spectralmatch Adjuster"),
    ],
)
def test_an_unusable_class_path_is_refused(saved, class_path, fragment):
    _, path = saved
    data = document(path)
    data["steps"][1]["class"] = class_path
    crafted = write_document(path.parent, data)
    message = load_error(crafted)
    assert message.startswith(f"{crafted}: steps[1].class: ")
    assert fragment in message


# ---------------------------------------------------------------------- classes not found again


def test_saving_a_step_defined_in_main_is_refused(tiles, tmp_path):
    local = type("Local", (GlobalModel,), {"__doc__": "GlobalModel under another name."})
    local.__module__ = "__main__"
    model = Mosaic(steps=[local()], threads=2).fit(tiles.paths)
    assert model.steps_[0].gains_.shape == (4, 3)  # it fits and works
    target = tmp_path / "model" / "model.json"
    with pytest.raises(SpectralMatchError) as caught:
        model.save(target)
    message = str(caught.value)
    assert message.startswith("Local is defined in the script being run (__main__)")
    assert "module" in message  # how to fix it
    assert "import it from there" in message
    assert not target.exists()
    assert not target.with_suffix(".npz").exists()


def test_saving_an_adjuster_subclass_from_main_is_refused(tiles, tmp_path):
    def fit(self, statistics):
        self.fitted_ = True
        return self

    def transform_window(self, image, window, values, valid):
        return values

    local = type(
        "Identity",
        (Adjuster,),
        {
            "fit": fit,
            "transform_window": transform_window,
            "get_state": lambda self: {},
            "set_state": lambda self, state: None,
        },
    )
    local.__module__ = "__main__"
    model = Mosaic(steps=[GlobalModel(), local()], threads=2).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match=r"Identity is defined in .*__main__.* module"):
        model.save(tmp_path / "saved" / "model.json")
    assert not (tmp_path / "saved").exists()


def test_saving_a_step_defined_inside_a_function_is_refused(tiles, tmp_path):
    class Inner(GlobalModel):
        pass

    assert "<locals>" in Inner.__qualname__
    model = Mosaic(steps=[Inner()], threads=2).fit(tiles.paths)
    with pytest.raises(SpectralMatchError) as caught:
        model.save(tmp_path / "model.json")
    message = str(caught.value)
    assert "Inner" in message
    assert "inside a function" in message
    assert "top level of a module" in message
    assert not (tmp_path / "model.json").exists()


def test_a_refused_save_leaves_an_earlier_file_untouched(tiles, tmp_path):
    target = tmp_path / "model" / "model.json"
    Mosaic(steps=[GlobalModel(), BlockMap(block_size=32)], threads=2).fit(tiles.paths).save(target)
    digests = {name: file_digest(target.parent / name) for name in ("model.json", "model.npz")}

    class Inner(BlockMap):
        pass

    bad = Mosaic(steps=[GlobalModel(), Inner(block_size=32)], threads=2).fit(tiles.paths)
    with pytest.raises(SpectralMatchError, match="inside a function"):
        bad.save(target)
    assert folder_listing(target.parent) == ["model.json", "model.npz"]
    for name, digest in digests.items():
        assert file_digest(target.parent / name) == digest


# ---------------------------------------------------------------------- a custom step round-trips

CUSTOM_MODULE = textwrap.dedent(
    '''
    """A custom step for the persistence tests."""

    import numpy as np

    from spectralmatch import Adjuster
    from spectralmatch.model.persistence import state_array, state_names


    class MeanShift(Adjuster):
        """Shift every image and band so its mean is ``scale`` x the collection's mean."""

        def __init__(self, *, scale=1.0):
            self.scale = scale

        def fit(self, statistics):
            statistics = self._statistics(statistics)
            means = np.array([moments.mean for moments in statistics.images])
            self.images_ = list(statistics.names)
            self.shifts_ = self.scale * means.mean(axis=0) - means
            return self

        def transform_window(self, image, window, values, valid):
            shift = self.shifts_[self.images_.index(image.name)]
            return values + shift.astype(values.dtype)[:, None, None]

        def get_state(self):
            return {"images": self.images_, "shifts": self.shifts_}

        def set_state(self, state):
            self.images_ = state_names(state, "images")
            self.shifts_ = state_array(state, "shifts", 2, (len(self.images_), None))
    '''
)


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    """An importable module (on sys.path) defining the ``MeanShift`` step."""
    name = "spectralmatch_test_custom_steps"
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / f"{name}.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(name, None)
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


def test_a_custom_step_in_an_importable_module_round_trips(tiles, tmp_path, custom_module):
    steps = [GlobalModel(), custom_module.MeanShift(scale=1.02)]
    model = Mosaic(steps=steps, threads=2).fit(tiles.paths)
    shifts = model.steps_[1].shifts_
    assert shifts.shape == (4, 3)
    assert np.abs(shifts).max() > 1.0  # a visible correction
    path = model.save(tmp_path / "model" / "model.json")

    data = document(path)
    assert data["steps"][1]["class"] == "spectralmatch_test_custom_steps:MeanShift"
    assert data["steps"][1]["params"] == {"scale": 1.02}
    assert data["steps"][1]["state"]["shifts"] == {"array": "steps.1.state.shifts"}
    with np.load(path.with_suffix(".npz")) as stored:
        np.testing.assert_array_equal(stored["steps.1.state.shifts"], shifts)

    loaded = Mosaic.load(path)
    step = loaded.steps_[1]
    assert type(step) is custom_module.MeanShift
    assert step.scale == 1.02
    assert step.images_ == tiles.names
    np.testing.assert_array_equal(step.shifts_, shifts)
    assert repr(loaded.steps[1]) == "MeanShift(scale=1.02)"

    original = model.transform(tiles.paths, tmp_path / "original")
    again = loaded.transform(tiles.paths, tmp_path / "loaded")
    for first, second, source in zip(original, again, tiles.paths, strict=True):
        output = read_raster(first.path)
        np.testing.assert_array_equal(read_raster(second.path), output)
        assert not np.array_equal(output, read_raster(source))


# ---------------------------------------------------------------------- every field is checked


def _set(key, value):
    def edit(data):
        data[key] = value

    return edit


def _drop(key):
    def edit(data):
        del data[key]

    return edit


def _edit_step(position, function):
    def edit(data):
        function(data["steps"][position])

    return edit


def _gains_rows(step):
    step["state"]["gains"] = step["state"]["gains"][:3]


def _gains_nan(step):
    step["state"]["gains"][1][2] = float("nan")


def _gains_text(step):
    step["state"]["gains"] = "1, 2, 3"


def _offsets_shape(step):
    step["state"]["offsets"] = [row[:2] for row in step["state"]["offsets"]]


def _reference_unknown(step):
    step["state"]["reference"] = ["tile_9"]


def _images_of_step(step):
    step["state"]["images"] = "tile_0"


def _drop_state(step):
    del step["state"]


def _drop_class(step):
    del step["class"]


def _params_unknown(step):
    step["params"]["colour"] = "red"


def _params_list(step):
    step["params"] = [32]


def _drop_shifts(step):
    del step["state"]["shifts"]


def _grid_text(step):
    step["state"]["grid"] = "10 x 10"


def _grid_rows(step):
    del step["state"]["grid"]["rows"]


def _grid_no_rows(step):
    step["state"]["grid"]["rows"] = 0


def _crs_text(step):
    step["state"]["crs"] = "not a projection"


def _windows_beyond_the_grid(step):
    step["state"]["windows"] = [[0, 0, 99, 99]] * 4


def _windows_of_part_blocks(step):
    step["state"]["windows"] = [[0, 0.5, 2, 2]] * 4


def _windows_of_three(step):
    step["state"]["windows"] = [[0, 0, 2]] * 4


def _image_without_path(data):
    del data["images"][0]["path"]


def _image_name_number(data):
    data["images"][2]["name"] = 2


def _image_nodata_text(data):
    data["images"][1]["nodata"] = "zero"


def _image_masked_number(data):
    data["images"][1]["masked"] = 1


def _unknown_param(data):
    data["params"]["colour"] = "red"


def _threads_text(data):
    data["params"]["threads"] = "four"


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (_set("format", "something.else"), "format", "not a spectralmatch model file"),
        (_drop("format"), "format", "not a spectralmatch model file"),
        (_set("format_version", MODEL_VERSION + 1), "format_version", "newer"),
        (_set("format_version", "1"), "format_version", "expected an integer"),
        (_drop("format_version"), "format_version", "missing"),
        (_drop("n_bands"), "n_bands", "missing"),
        (_set("n_bands", 0), "n_bands", "expected an integer >= 1"),
        (_set("n_bands", "3"), "n_bands", "expected an integer"),
        (_set("images", {"tile_0": "tile_0.tif"}), "images", "expected a list"),
        (_image_without_path, "images[0].path", "missing"),
        (_image_name_number, "images[2].name", "expected a string"),
        (_image_nodata_text, "images[1].nodata", "expected a number"),
        (_image_masked_number, "images[1].masked", "expected true or false"),
        (_set("params", [1024]), "params", "expected an object"),
        (_unknown_param, "params.colour", "not a saved Mosaic parameter"),
        (_threads_text, "params.threads", "expected an integer"),
        (_set("steps", []), "steps", "no step"),
        (_set("steps", {}), "steps", "expected a list"),
        (_drop("steps"), "steps", "missing"),
        (_set("arrays", 5), "arrays", "expected a string"),
        (_set("arrays", "../model.npz"), "arrays", "beside the model"),
        (_edit_step(0, _drop_state), "steps[0].state", "missing"),
        (_edit_step(0, _drop_class), "steps[0].class", "missing"),
        (_edit_step(0, _gains_rows), "steps[0].state.gains", "expected shape (4, '*')"),
        (_edit_step(0, _gains_nan), "steps[0].state.gains", "NaN"),
        (_edit_step(0, _gains_text), "steps[0].state.gains", "expected numbers"),
        (_edit_step(0, _offsets_shape), "steps[0].state.offsets", "expected shape (4, 3)"),
        (_edit_step(0, _reference_unknown), "steps[0].state.reference", "does not hold"),
        (_edit_step(0, _images_of_step), "steps[0].state.images", "list of names"),
        (_edit_step(1, _params_unknown), "steps[1].params", "colour"),
        (_edit_step(1, _params_list), "steps[1].params", "expected an object"),
        (_edit_step(1, _drop_shifts), "steps[1].state.shifts", "missing"),
        (_edit_step(1, _grid_text), "steps[1].state.grid", "expected an object"),
        (_edit_step(1, _grid_rows), "steps[1].state.grid", "rows, cols"),
        (_edit_step(1, _grid_no_rows), "steps[1].state.grid", "whole numbers"),
        (_edit_step(1, _crs_text), "steps[1].state.crs", "not a coordinate reference system"),
        (_edit_step(1, _windows_beyond_the_grid), "steps[1].state.windows", "within the grid"),
        (_edit_step(1, _windows_of_part_blocks), "steps[1].state.windows", "whole numbers"),
        (_edit_step(1, _windows_of_three), "steps[1].state.windows", "expected shape (4, 4)"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_loading_checks_every_field(saved, edit, field, problem):
    _, path = saved
    data = copy.deepcopy(document(path))
    edit(data)
    crafted = write_document(path.parent, data)
    message = load_error(crafted)
    assert message.startswith(f"{crafted}: ")
    assert field in message
    assert problem in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"\xff\xfe\x00garbage", "cannot read model"),
        (b"[]", "the document: expected an object"),
        (b'["spectralmatch.Mosaic", 1]', "the document: expected an object"),
        (b'"spectralmatch.Mosaic"', "the document: expected an object"),
    ],
)
def test_loading_a_file_that_is_not_a_model_document(tmp_path, content, problem):
    path = tmp_path / "model.json"
    path.write_bytes(content)
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    assert problem in message


def test_loading_a_missing_file(tmp_path):
    message = load_error(tmp_path / "nothing.json")
    assert message.startswith(f"{tmp_path / 'nothing.json'}: cannot read model")


# ---------------------------------------------------------------------- the sidecar


def test_a_missing_array_in_the_sidecar_is_named(saved):
    _, path = saved
    sidecar = path.with_suffix(".npz")
    with np.load(sidecar) as stored:
        arrays = dict(stored)
    assert "steps.1.state.shifts" in arrays
    del arrays["steps.1.state.shifts"]
    np.savez_compressed(sidecar, **arrays)
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    assert "'steps.1.state.shifts'" in message
    assert "missing from the sidecar" in message


def test_a_sidecar_array_of_the_wrong_shape_is_named(saved):
    _, path = saved
    sidecar = path.with_suffix(".npz")
    with np.load(sidecar) as stored:
        arrays = dict(stored)
    arrays["steps.1.state.shifts"] = arrays["steps.1.state.shifts"][:, :-1]
    np.savez_compressed(sidecar, **arrays)
    message = load_error(path)
    assert message.startswith(f"{path}: steps[1].state.shifts: expected shape (3, ")


def test_a_sidecar_of_garbage_bytes_is_a_clear_error(saved):
    _, path = saved
    sidecar = path.with_suffix(".npz")
    sidecar.write_bytes(b"this is not an array file " * 40)
    message = load_error(path)
    assert message.startswith(f"{sidecar}: not a readable array file")


def test_a_truncated_sidecar_is_a_clear_error(saved):
    _, path = saved
    sidecar = path.with_suffix(".npz")
    content = sidecar.read_bytes()
    sidecar.write_bytes(content[: len(content) // 2])
    message = load_error(path)
    assert message.startswith(f"{sidecar}: not a readable array file")


def test_a_sidecar_with_damaged_compressed_data_is_a_clear_error(saved):
    _, path = saved
    sidecar = path.with_suffix(".npz")
    content = bytearray(sidecar.read_bytes())
    with zipfile.ZipFile(sidecar) as archive:
        member = archive.infolist()[0]
    assert member.compress_type == zipfile.ZIP_DEFLATED
    # one damaged byte: the zip's directory and headers stay intact, but the first block
    # of the first member's deflate stream now has the reserved block type 3
    offset = member.header_offset
    name_length, extra_length = struct.unpack("<HH", content[offset + 26 : offset + 30])
    start = offset + 30 + name_length + extra_length
    content[start] = 0xFF
    sidecar.write_bytes(bytes(content))
    message = load_error(path)
    assert message.startswith(f"{sidecar}: not a readable array file")


def test_a_missing_sidecar_is_named(saved):
    _, path = saved
    sidecar = path.with_suffix(".npz")
    sidecar.unlink()
    message = load_error(path)
    assert message.startswith(f"{path}: arrays: ")
    assert str(sidecar) in message
    assert "missing" in message


# ---------------------------------------------------------------------- old class paths


def test_a_built_in_step_saved_under_an_old_module_path_still_loads(saved, tiles, tmp_path):
    model, path = saved
    data = document(path)
    assert data["steps"][0]["class"] == "spectralmatch:GlobalModel"
    data["steps"][0]["class"] = "spectralmatch.global_model:GlobalModel"
    data["steps"][1]["class"] = "spectralmatch.block_map:BlockMap"
    old = write_document(path.parent, data, "old.json")
    loaded = Mosaic.load(old)
    assert [type(step) for step in loaded.steps_] == [GlobalModel, BlockMap]
    assert loaded.steps_[1].block_size == 32
    np.testing.assert_array_equal(loaded.steps_[0].gains_, model.steps_[0].gains_)
    np.testing.assert_array_equal(loaded.steps_[1].shifts_, model.steps_[1].shifts_)
    expected = model.transform(tiles.paths, tmp_path / "expected")
    outputs = loaded.transform(tiles.paths, tmp_path / "outputs")
    for first, second in zip(expected, outputs, strict=True):
        np.testing.assert_array_equal(read_raster(second.path), read_raster(first.path))


def test_the_current_module_path_of_a_built_in_step_loads(saved):
    model, path = saved
    data = document(path)
    data["steps"][0]["class"] = "spectralmatch.model.global_model:GlobalModel"
    loaded = Mosaic.load(write_document(path.parent, data))
    assert type(loaded.steps_[0]) is GlobalModel
    np.testing.assert_array_equal(loaded.steps_[0].offsets_, model.steps_[0].offsets_)


# ---------------------------------------------------------------------- atomic save


def test_save_leaves_no_temporary_files(saved, tiles):
    model, path = saved
    assert folder_listing(path.parent) == ["model.json", "model.npz"]
    # saving again over it, and a model without arrays beside it
    model.save(path)
    Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths).save(path.parent / "plain.json")
    assert folder_listing(path.parent) == ["model.json", "model.npz", "plain.json"]
    assert "arrays" not in document(path.parent / "plain.json")
    assert document(path)["arrays"] == "model.npz"
    loaded = Mosaic.load(path)
    np.testing.assert_array_equal(loaded.steps_[1].shifts_, model.steps_[1].shifts_)


def test_save_into_a_new_folder(tiles, tmp_path):
    model = Mosaic(steps=[GlobalModel()], threads=2).fit(tiles.paths)
    path = model.save(tmp_path / "a" / "b" / "model.json")
    assert path == tmp_path / "a" / "b" / "model.json"
    assert folder_listing(tmp_path / "a") == ["b", "b/model.json"]
    data = document(path)
    assert data["format"] == "spectralmatch.Mosaic"
    assert data["format_version"] == MODEL_VERSION
    assert data["n_bands"] == 3
    assert [entry["name"] for entry in data["images"]] == tiles.names
