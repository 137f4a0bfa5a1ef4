"""The conversion of corrected values to an output dtype: compiled and numpy, the same
bits; a last affine step applied in the conversion's pass."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from spectralmatch import BlockMap, GlobalModel, Mosaic
from spectralmatch.model.adjuster import StepChain
from spectralmatch.raster import convert as convert_module
from spectralmatch.raster.convert import BandAffine, converts_compiled, to_dtype_counting

needs_compiled = pytest.mark.skipif(
    convert_module.compiled_conversion is None,
    reason="spectralmatch.raster._conversion was not built (no C compiler when installed)",
)

SOURCES = ["uint8", "int8", "uint16", "int16", "float32"]
TARGETS = ["uint8", "int8", "uint16", "int16"]


def numpys(values, valid, dtype, nodata, affine):
    """:func:`to_dtype_counting` by numpy's passes, on the values cast to float32 as the
    transform casts the pixels it reads."""
    saved = convert_module.compiled_conversion
    convert_module.compiled_conversion = None
    try:
        floats = values.astype(np.float32)
        return to_dtype_counting(floats, valid.copy(), dtype, nodata, affine)
    finally:
        convert_module.compiled_conversion = saved


def random_window(rng, source, shape):
    """Values of ``source`` over their whole range; float32 ones spread over several
    ranges, with NaN, infinities and halves (which round to even) among them."""
    if source != "float32":
        info = np.iinfo(source)
        return rng.integers(info.min, int(info.max) + 1, shape).astype(source)
    values = (rng.normal(0, 1, shape) * rng.choice([1, 300, 1e5])).astype(np.float32)
    special = rng.random(shape) < 0.1
    choices = [np.nan, np.inf, -np.inf, 0.5, 1.5, 2.5, -0.5, -1.5, 254.5, 65534.5]
    values[special] = rng.choice(choices, int(special.sum()))
    return values


@needs_compiled
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("target", TARGETS)
def test_compiled_conversion_gives_numpys_bits(source, target):
    """Every pair of dtypes, with and without gains and offsets, every nodata value a
    clip may meet (none, either end of the range, inside it), validity all, some or
    none, strided windows: the same values and the same count of clipped ones."""
    rng = np.random.default_rng([SOURCES.index(source), TARGETS.index(target)])
    info = np.iinfo(target)
    for trial in range(24):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 30)), int(rng.integers(1, 50)))
        values = random_window(rng, source, shape)
        if trial % 3 == 0:  # a window of a wider read
            wider = np.zeros((*shape[:2], shape[2] + 7), values.dtype)
            wider[:, :, 3 : 3 + shape[2]] = values
            values = wider[:, :, 3 : 3 + shape[2]]
        valid = rng.random(shape) < [1.0, 0.8, 0.0][trial % 3]
        nodata = [None, info.min, info.max, 0, int(rng.integers(info.min, info.max))][trial % 5]
        affine = None
        if trial % 4:
            spread = [1, 50][trial % 2]
            affine = BandAffine(rng.normal(1, 0.4, shape[0]) * spread, rng.normal(0, 300, shape[0]))
        expected, expected_clipped = numpys(values, valid, target, nodata, affine)
        converted, clipped = to_dtype_counting(values, valid, target, nodata, affine)
        assert converted.dtype == np.dtype(target)
        np.testing.assert_array_equal(converted, expected)
        assert clipped == expected_clipped


@needs_compiled
def test_compiled_conversion_keeps_valid_pixels_off_nodata_and_counts_clips():
    """What the conversion promises, checked on values made to test it: a valid value
    that rounds to the nodata value moves up, one beyond the range is clipped and
    counted, NaN is counted and becomes 0 (moved off a nodata of 0), invalid pixels
    become nodata."""
    values = np.array([[[0.4, 1.4, 2.5, 3.5, 70000.0, -3.0, np.nan, 9.0]]], np.float32)
    valid = np.array([[[True, True, True, True, True, True, True, False]]])
    converted, clipped = to_dtype_counting(values, valid, "uint16", 0)
    assert converted.tolist() == [[[1, 1, 2, 4, 65535, 1, 1, 0]]]
    assert clipped == 3
    gained, _ = to_dtype_counting(
        np.array([[[10, 20]]], np.uint16),
        np.ones((1, 1, 2), bool),
        "uint8",
        255,
        BandAffine(np.array([2.0]), np.array([230.0])),
    )
    assert gained.tolist() == [[[250, 254]]]  # 270 is clipped below the nodata value
    inside, _ = to_dtype_counting(
        np.array([[[0.3, -0.4, -1.0, 5.0]]], np.float32), np.ones((1, 1, 4), bool), "int16", 0
    )
    assert inside.tolist() == [[[1, 1, -1, 5]]]  # 0 is the nodata value: the next one up


def test_any_layout_of_the_validity_converts_to_the_same_values():
    """A validity broadcast along the bands, one strided along a row (which the compiled
    pass does not read: numpy's passes convert it), and a window of another rank give
    the same values and counts, none refused."""
    values = np.array([[[0.4, 2.5, 70000.0, 7.0], [1.5, -3.0, 9.0, 3.5]]] * 2, np.float32)
    valid = np.array([[True, True, True, False], [True, True, False, True]])
    broadcast = np.broadcast_to(valid, values.shape)
    strided = np.repeat(broadcast, 2, axis=2)[:, :, ::2]
    assert strided.strides[2] == 2 and np.array_equal(strided, broadcast)
    expected, expected_clipped = numpys(values, broadcast, "uint16", 0, None)
    assert expected_clipped == 4
    for layout in (broadcast, strided):
        converted, clipped = to_dtype_counting(values.copy(), layout, "uint16", 0)
        np.testing.assert_array_equal(converted, expected)
        assert clipped == expected_clipped
    flat, flat_clipped = to_dtype_counting(values[0].copy(), valid, "uint16", 0)
    np.testing.assert_array_equal(flat, expected[0])
    assert flat_clipped == 2


def test_converts_compiled_only_what_it_converts_exactly(monkeypatch):
    """The compiled pass takes 8- and 16-bit integers and float32 to 8- and 16-bit
    integers, with no nodata or a whole one the output can hold; not without the module."""
    if convert_module.compiled_conversion is not None:
        assert converts_compiled("uint16", "uint16", 0)
        assert converts_compiled("float32", "int8", -128)
        assert converts_compiled("uint8", "int16", None)
    assert not converts_compiled("float64", "uint16", 0)
    assert not converts_compiled("uint16", "float32", 0)
    assert not converts_compiled("uint16", "uint32", 0)
    assert not converts_compiled("uint16", "uint16", float("nan"))
    assert not converts_compiled("uint16", "uint16", -1)
    assert not converts_compiled("uint16", "uint16", 0.5)
    assert not converts_compiled(np.dtype(">u2"), "uint16", 0)
    monkeypatch.setattr(convert_module, "compiled_conversion", None)
    assert not converts_compiled("uint16", "uint16", 0)
    with pytest.raises(TypeError, match="floats, not uint16"):
        to_dtype_counting(np.ones((1, 2, 2), np.uint16), np.ones((1, 2, 2), bool), "uint16", 0)


@needs_compiled
def test_compiled_conversion_refuses_what_it_cannot_convert():
    """Called directly with the wrong arrays or settings, it raises instead of writing
    wrong values."""
    convert = convert_module.compiled_conversion.convert
    values = np.ones((2, 4, 4), np.uint16)
    valid = np.ones(values.shape, bool)
    out = np.empty(values.shape, np.uint16)
    gains = np.ones(2, np.float32)
    limits = (-0.5, 65535.5, 1.0, 65535.0, None, 0)

    def call(*arrays, settings=limits):
        return convert(*arrays, *settings)

    assert call(values, valid, gains, gains, out) == 0
    with pytest.raises(ValueError, match="float32"):
        call(values.astype(np.float64), valid, None, None, out)
    with pytest.raises(ValueError, match="out must be 8- or 16-bit"):
        call(values, valid, None, None, out.astype(np.int32))
    with pytest.raises(ValueError, match="booleans"):
        call(values, valid.astype(np.uint8), None, None, out)
    with pytest.raises(ValueError, match="contiguous and shaped like values"):
        call(values, valid, None, None, np.empty((2, 4, 8), np.uint16)[:, :, ::2])
    with pytest.raises(ValueError, match="go together"):
        call(values, valid, gains, None, out)
    with pytest.raises(ValueError, match="one per band"):
        call(values, valid, gains[:1], gains[:1], out)
    with pytest.raises(ValueError, match="whole numbers in the output's range"):
        call(values, valid, None, None, out, settings=(-0.5, 65535.5, 1.5, 65535.0, None, 0))
    with pytest.raises(ValueError, match="whole numbers in the output's range"):
        call(values, valid, None, None, out, settings=(-0.5, 65535.5, 0.0, 70000.0, None, 0))
    with pytest.raises(ValueError, match="inside"):
        call(values, valid, None, None, out, settings=(-0.5, 65535.5, 0.0, 65535.0, 65535, 0))
    with pytest.raises(ValueError, match="fill"):
        call(values, valid, None, None, out, settings=(-0.5, 65535.5, 0.0, 65535.0, None, -1))
    with pytest.raises(TypeError):
        convert(values, valid, None, None, out)


def test_a_last_affine_step_is_left_to_the_conversion(data_dir):
    """The chain hands a last global step to the conversion as its gains and offsets;
    a last local step stays in the chain."""
    paths = sorted(data_dir.glob("*.tif"))
    model = Mosaic(steps=[GlobalModel()], cache=False).fit(paths)
    name = model.images_[1]["name"]
    before, affine = StepChain(tuple(model.steps_)).split_affine(name)
    assert before is None
    np.testing.assert_array_equal(affine.gains, model.steps_[0].gains_[1])
    np.testing.assert_array_equal(affine.offsets, model.steps_[0].offsets_[1])
    both = Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)], cache=False).fit(paths)
    chain = StepChain(tuple(both.steps_))
    assert chain.split_affine(name) == (chain, None)


def test_a_global_step_whose_transform_is_overridden_keeps_its_own(data_dir, tmp_path):
    """A subclass of GlobalModel that corrects windows its own way is not taken for its
    gains and offsets: the transform calls its transform_window."""

    class Inverted(GlobalModel):
        def transform_window(self, image, window, values, valid):
            return 65000.0 - super().transform_window(image, window, values, valid)

    paths = sorted(data_dir.glob("*.tif"))
    model = Mosaic(steps=[Inverted()], cache=False).fit(paths)
    chain = StepChain(tuple(model.steps_))
    assert chain.split_affine(model.images_[0]["name"]) == (chain, None)
    written = model.transform(paths[:1], tmp_path / "out")
    with rasterio.open(paths[0]) as source, rasterio.open(written[0].path) as output:
        values, result = source.read(1).astype(np.float64), output.read(1)
    step = model.steps_[0]
    expected = 65000.0 - (values * step.gains_[0, 0] + step.offsets_[0, 0])
    inside = (values != 0) & (expected > 1) & (expected < 65534)
    assert inside.mean() > 0.5
    assert np.abs(result[inside] - expected[inside]).max() <= 0.51


@pytest.mark.parametrize("local", [False, True], ids=["global", "global+local"])
def test_outputs_are_the_same_with_and_without_the_compiled_conversion(
    data_dir, tmp_path, monkeypatch, local
):
    """The samples matched (global alone: the pixels converted as read, in one pass;
    with the local step: its float32 results converted), byte for byte with the compiled
    conversion and with numpy's."""
    if convert_module.compiled_conversion is None:
        pytest.skip("spectralmatch.raster._conversion was not built (no C compiler when installed)")
    paths = sorted(data_dir.glob("*.tif"))
    steps = [GlobalModel(), BlockMap(block_size=64)] if local else [GlobalModel()]
    model = Mosaic(steps=steps, cache=False).fit(paths)
    compiled = model.transform(paths, tmp_path / "compiled")
    monkeypatch.setattr(convert_module, "compiled_conversion", None)
    numpy = model.transform(paths, tmp_path / "numpy")
    for ours, theirs in zip(compiled, numpy, strict=True):
        with rasterio.open(ours.path) as a, rasterio.open(theirs.path) as b:
            assert a.profile == b.profile
            np.testing.assert_array_equal(a.read(), b.read())
            np.testing.assert_array_equal(a.read_masks(), b.read_masks())
