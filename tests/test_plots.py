"""The figures of a normalization, drawn for the sample tiles before and after a fit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio
from conftest import write_four_band_masked
from matplotlib.image import imread

from spectralmatch import BlockMap, GlobalModel, Mosaic, SpectralMatchError
from spectralmatch.raster.collection import ImageCollection
from spectralmatch.report import figures
from spectralmatch.report.metrics import overlap_differences
from spectralmatch.report.plots import composite, plot_before_after


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, data_dir):
    """(the sample tiles, their corrected copies, the fitted Mosaic)."""
    model = Mosaic(steps=[GlobalModel(), BlockMap(block_size=64)]).fit(data_dir)
    after = model.transform(data_dir, tmp_path_factory.mktemp("matched"))
    return ImageCollection.from_paths(data_dir), after, model


def assert_picture(path, width: int, height: int) -> None:
    """The PNG at ``path`` has the expected size and shows more than a blank page."""
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 20
    assert (pixels[..., :3] < 0.5).mean() > 0.001


def test_spectral_profiles_draw_each_images_mean_before_and_after(fitted, tmp_path):
    before, after, _ = fitted
    figure = figures.profile_figure(before, after)
    lines = figure.axes[0].lines
    images = [image for pair in zip(before, after, strict=True) for image in pair]
    expected = [image.statistics().mean for image in images]
    assert len(lines) == 8
    for line, means in zip(lines, expected, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(line.get_ydata(), means)
    with rasterio.open(before.images[1].path) as dataset:
        values = dataset.read(2)
    np.testing.assert_allclose(lines[2].get_ydata()[1], values[values != 0].mean())
    path = figures.plot_spectral_profiles(before, after, tmp_path / "figures" / "profiles.png")
    assert_picture(path, 800, 500)
    assert [p.name for p in path.parent.iterdir()] == ["profiles.png"]


def test_histograms_are_densities_whose_means_are_the_images_means(fitted, tmp_path):
    before, after, _ = fitted
    figure = figures.histogram_figure(before, after)
    assert len(figure.axes) == 3
    for band, axis in enumerate(figure.axes):
        steps = axis.patches
        assert len(steps) == 8
        images = [image for pair in zip(before, after, strict=True) for image in pair]
        for step, image in zip(steps, images, strict=True):
            density, edges, _ = step.get_data()
            widths = np.diff(edges)
            assert (density * widths).sum() == pytest.approx(1)
            centres = (edges[:-1] + edges[1:]) / 2
            mean = (density * widths * centres).sum()
            assert abs(mean - image.statistics().mean[band]) <= widths.max() / 2
    assert_picture(figures.plot_histograms(before, after, tmp_path / "h.png"), 1260, 380)


def test_overlap_graph_colours_edges_by_residual_on_one_scale(fitted, tmp_path):
    before, after, _ = fitted
    figure = figures.overlap_graph_figure(before, after)
    edges = [axis.collections[0] for axis in figure.axes[:2]]
    for lines, images in zip(edges, (before, after), strict=True):
        expected = [np.mean(d.mean_abs_difference) for d in overlap_differences(images)]
        assert len(expected) == 6
        np.testing.assert_allclose(lines.get_array(), expected)
    assert edges[0].norm is edges[1].norm
    assert (edges[1].get_array() < edges[0].get_array() / 5).all()
    assert_picture(figures.plot_overlap_graph(before, after, tmp_path / "g.png"), 1100, 520)


def test_figures_of_many_images_name_the_states_not_each_image(fitted, tmp_path):
    from conftest import write_raster
    from rasterio.transform import from_origin

    rng = np.random.default_rng(6)
    count = figures.NAMED_IMAGES + 2
    paths = [
        write_raster(
            tmp_path / f"tile_{k:02d}.tif",
            rng.integers(100, 200, size=(3, 20, 30)).astype(np.uint16),
            transform=from_origin(500000.0 + 200.0 * k, 5000000.0, 10.0, 10.0),
            nodata=0,
        )
        for k in range(count)
    ]
    many = ImageCollection.from_paths(paths)
    for figure in (figures.profile_figure(many, many), figures.histogram_figure(many, many)):
        legend = figure.axes[0 if len(figure.axes) == 1 else -1].get_legend()
        labels = [text.get_text() for text in legend.get_texts()]
        assert labels == [f"{count} images before", f"{count} images after"]
    for figure in (figures.overlap_graph_figure(many, many), figures.disagreement_figure(many)):
        assert not any(axis.texts for axis in figure.axes)  # no names over the map
    # a few images are named, each on its lines and on the map
    before, after, _ = fitted
    legend = figures.profile_figure(before, after).axes[0].get_legend()
    assert len(legend.get_texts()) == 2 * len(before)
    assert all(axis.texts for axis in figures.overlap_graph_figure(before, after).axes[:2])


def test_block_surfaces_show_the_fitted_shifts(fitted, tmp_path):
    before, _, model = fitted
    block_map = model.steps_[1]
    figure = figures.block_surface_figure(block_map, before)
    pictures = [axis.images[0] for axis in figure.axes if axis.images]
    assert len(pictures) == 12
    for picture, (row, band) in zip(pictures, itertools.product(range(4), range(3)), strict=True):
        np.testing.assert_array_equal(picture.get_array(), block_map.shifts_[row, band])
    path = figures.plot_block_surfaces(block_map, tmp_path / "b.png", before)
    assert_picture(path, 1060, 1200)
    with pytest.raises(Exception, match="not fitted"):
        figures.block_surface_figure(BlockMap())


def test_quicklook_of_the_mosaic_before_and_after(fitted, tmp_path):
    before, after, _ = fitted
    assert_picture(plot_before_after(before, after, tmp_path / "q.png"), 1000, 520)


def point_disagreement(images, x: float, y: float) -> float:
    """Mean over overlapping valid pairs of |a - b| averaged over bands, at one point."""
    samples = []
    for image in images:
        with rasterio.open(image.path) as dataset:
            row, col = dataset.index(x, y)
            inside = 0 <= row < dataset.height and 0 <= col < dataset.width
            values = dataset.read(window=((row, row + 1), (col, col + 1))) if inside else None
        if values is not None and (values != 0).all():
            samples.append(values.ravel().astype(float))
    pairs = [np.abs(a - b).mean() for a, b in itertools.combinations(samples, 2)]
    return float(np.mean(pairs)) if pairs else np.nan


def test_disagreement_map_holds_differences_of_overlapping_pixels(fitted, tmp_path):
    before, after, _ = fitted
    # 625 cells of 30 m across the union extent: the tiles' own pixels
    values, (left, right, bottom, top) = figures.disagreement_map(before, max_size=625)
    assert values.shape == (615, 625)
    assert (right - left) / 625 == pytest.approx(30)
    rows, cols = np.nonzero(np.isfinite(values))
    chosen = np.random.default_rng(0).choice(len(rows), 40, replace=False)
    for row, col in zip(rows[chosen], cols[chosen], strict=True):
        expected = point_disagreement(before, left + (col + 0.5) * 30, top - (row + 0.5) * 30)
        assert values[row, col] == pytest.approx(expected)
    corrected, _ = figures.disagreement_map(after, max_size=625)
    assert np.nanmean(corrected) < np.nanmean(values) / 5
    figure = figures.disagreement_figure(after)
    assert figure.axes[0].images[0].get_array().shape == (788, 800)
    assert_picture(figures.plot_disagreement(after, tmp_path / "d.png"), 700, 600)


def test_before_and_after_must_hold_the_same_images(fitted, tmp_path):
    before, after, _ = fitted
    with pytest.raises(SpectralMatchError, match="4 images before .* but 3 after"):
        figures.plot_spectral_profiles(before, after.images[:3], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_the_mosaic_preview_of_four_band_images_masked_by_a_mask_band(data_dir, tmp_path):
    """The preview reads three of the four bands; their validity comes from the mask band,
    read of the same bands (it was read of all four, and the shapes clashed)."""
    paths = [tmp_path / path.name for path in sorted(data_dir.glob("*.tif"))]
    for path in paths:
        write_four_band_masked(data_dir / path.name, path)
    values, valid, _ = composite(paths, bands=(0, 1, 2))
    assert values.shape[-1] == 3 and valid.any() and not valid.all()
    np.testing.assert_array_equal(np.isnan(values).all(axis=-1), ~valid)
