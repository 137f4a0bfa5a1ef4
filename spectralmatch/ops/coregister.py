"""Geometric co-registration: tie points in every overlap, one joint solve, one grid."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from attrs import frozen
from rasterio.windows import Window

from .._typing import OutputsLike, ResolutionName
from .._validation import (
    BOOLEAN,
    NON_NEGATIVE,
    NONE,
    POSITIVE,
    POSITIVE_INTEGER,
    AnyOf,
    Interval,
    Options,
    check,
    dtype_name,
)
from ..engine.published import ResumeMode, takes_engine_keywords, warn_no_effect
from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.coregistration import (
    PARAMETER_COUNT,
    Frame,
    GlobalModelName,
    LocalModelName,
    Mesh,
    MeshSettings,
    RobustLoss,
    TiePoints,
    invert,
    largest_shift,
    preservation_weights,
    solve_corrections,
    solve_meshes,
)
from ..geo.grid import PixelGrid, split_window
from ..geo.overlap import OverlapGraph
from ..raster.collection import ImageCollection, ImagesLike
from ..raster.convert import to_dtype
from ..raster.image import DEFAULT_WINDOW_SIZE, Image
from ..raster.paths import output_arguments, resolve_outputs
from ..raster.records import reusable_output
from ..raster.write import output_profile, write_raster
from .align import NativeGrid, aligned_grid, target_resolution
from .overviews import check_window_scales
from .tiepoints import filter_ties, load_tie_points, match_pair, save_tie_points, sorted_pair

LOGGER = logging.getLogger("spectralmatch")
NAME = "joint_coregistration"

#: Fewest tie points of a pair that fix its relative position, by global model.
MIN_TIE_POINTS = {"none": 1, "translation": 1, "similarity": 2, "affine": 3}
#: Corrections smaller than this (pixels) leave an image's pixels as they are.
NEGLIGIBLE_SHIFT = 0.01
#: Spline order of each resampling method.
ORDERS = {"nearest": 0, "bilinear": 1, "cubic": 3}
#: How closely (pixels) a mesh-corrected map is inverted.
INVERSION_TOLERANCE = 1e-3


# ------------------------------------------------------------------ tie points


def collect_ties(
    collection: ImageCollection,
    loaded: Mapping[tuple[str, str], np.ndarray],
    maximum_displacement: float | None,
    threshold: float | None,
    model: GlobalModelName,
) -> tuple[list[TiePoints], dict[tuple[str, str], np.ndarray]]:
    """The filtered tie points of every overlapping pair (loaded where ``loaded`` has
    the pair, matched otherwise) and the raw ones by pair of names."""
    ties, raw_by_pair = [], {}
    for edge in OverlapGraph.from_collection(collection).edges:
        first, second = collection[edge.first], collection[edge.second]
        pair = (first.name, second.name)
        key = sorted_pair(*pair)
        if key in loaded:
            raw = loaded[key] if key == pair else loaded[key][:, [2, 3, 0, 1]]
        else:
            raw = match_pair(first, second, edge.bounds)
        raw_by_pair[key] = raw if key == pair else raw[:, [2, 3, 0, 1]]
        at_first, at_second = filter_ties(raw, first, second, maximum_displacement, threshold)
        LOGGER.debug(
            "%s: %s <-> %s: %d of %d tie points kept", NAME, *pair, len(at_first), len(raw)
        )
        if len(at_first) < MIN_TIE_POINTS[model]:
            warnings.warn(
                f"{NAME}: {first.name} and {second.name} overlap but have {len(at_first)} "
                f"usable tie points (fewer than {MIN_TIE_POINTS[model]}): the pair is left out",
                SpectralMatchWarning,
                stacklevel=4,
            )
            continue
        ties.append(TiePoints((edge.first, edge.second), at_first, at_second))
    return ties, raw_by_pair


def _warn_unlinked(collection: ImageCollection, ties: Sequence[TiePoints]) -> None:
    linked = {index for tie in ties for index in tie.pair}
    for index, image in enumerate(collection):
        if index not in linked:
            warnings.warn(
                f"{NAME}: {image.name} has no tie point with any other image: it keeps its "
                "position",
                SpectralMatchWarning,
                stacklevel=4,
            )


# ------------------------------------------------------------------ output


def _corners(image: Image) -> np.ndarray:
    left, bottom, right, top = image.bounds
    return np.array([[left, bottom], [left, top], [right, bottom], [right, top]])


@frozen(eq=False)
class Correction:
    """Where an image's map coordinates go: ``matrix`` (3x3 affine), then the
    displacement of ``mesh`` (at the uncorrected coordinates) where there is one."""

    matrix: np.ndarray
    mesh: Mesh | None = None

    @property
    def local(self) -> float:
        """The largest local displacement (CRS units)."""
        return self.mesh.largest() if self.mesh is not None else 0.0

    def largest_shift(self, image: Image) -> float:
        """The largest distance (CRS units) any point of ``image`` moves, at most."""
        return largest_shift(self.matrix, _corners(image)) + self.local

    def source(self, image: Image, points: np.ndarray) -> np.ndarray:
        """(n, 2) where in ``image`` the corrected map coordinates ``points`` come from."""
        tolerance = INVERSION_TOLERANCE * min(image.grid.pixel_size)
        source = invert(self.matrix, self.mesh, points, tolerance)
        if source is None:
            raise SpectralMatchError(
                f"{NAME}: {image.path}: the local mesh cannot be inverted (it bends too "
                "sharply); use a larger local_smoothness_weight or local_grid_spacing"
            )
        return source


def _output_grid(image: Image, correction: Correction, size, tap: bool, origin) -> PixelGrid:
    """``image`` corrected by ``correction``, on the common grid (widened by the largest
    local displacement, so that no moved pixel falls outside)."""
    matrix = correction.matrix
    moved = _corners(image) @ matrix[:2, :2].T + matrix[:2, 2]
    local = correction.local
    bounds = (*(moved.min(axis=0) - local), *(moved.max(axis=0) + local))
    return PixelGrid(*aligned_grid(bounds, size, tap, origin))


def _pieces(
    image: Image,
    correction: Correction | None,
    grid: PixelGrid,
    order: int,
    window_size: int,
) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """Float values and validity of ``image`` on ``grid``, window by window: read as
    they are where ``correction`` is None, else sampled where it takes each output
    pixel's centre from."""
    with image.open() as dataset:
        for window in split_window(Window(0, 0, grid.width, grid.height), window_size):
            if correction is None:
                values, valid = image.read(window, dataset)
                yield window, values.astype(np.float64), valid
            else:
                yield window, *_sample(image, dataset, correction, grid, window, order)


def _sample(
    image: Image, dataset, correction: Correction, grid: PixelGrid, window: Window, order: int
):
    rows, cols = np.mgrid[0 : int(window.height), 0 : int(window.width)] + 0.5
    t = grid.window_grid(window).transform
    points = np.column_stack([(t.c + cols * t.a).ravel(), (t.f + rows * t.e).ravel()])
    x, y = correction.source(image, points).T.reshape(2, *rows.shape)
    source = ~image.transform
    col = source.a * x + source.b * y + source.c - 0.5
    row = source.d * x + source.e * y + source.f - 0.5
    margin = 4
    col0 = int(np.clip(np.floor(col.min()) - margin, 0, image.width))
    row0 = int(np.clip(np.floor(row.min()) - margin, 0, image.height))
    col1 = int(np.clip(np.ceil(col.max()) + margin + 1, 0, image.width))
    row1 = int(np.clip(np.ceil(row.max()) + margin + 1, 0, image.height))
    shape = (image.count, int(window.height), int(window.width))
    if col1 <= col0 or row1 <= row0:
        return np.zeros(shape), np.zeros(shape, dtype=bool)
    values, valid = image.read(Window(col0, row0, col1 - col0, row1 - row0), dataset)
    coordinates = np.array([row - row0, col - col0])
    return _resample(values.astype(np.float64), valid, coordinates, order)


def _resample(values: np.ndarray, valid: np.ndarray, coordinates: np.ndarray, order: int):
    """``values`` and ``valid`` (bands, rows, cols) at ``coordinates`` (rows, cols); a
    sample that touches an invalid pixel of its band (or falls outside) is invalid."""
    from scipy import ndimage

    shape = (len(values), *coordinates.shape[1:])
    out, out_valid = np.zeros(shape), np.zeros(shape, dtype=bool)
    for band, (band_values, band_valid) in enumerate(zip(values, valid, strict=True)):
        invalid = ~band_valid
        if order == 3:  # a cubic sample reaches one pixel further than a bilinear one
            invalid = ndimage.maximum_filter(invalid, size=3)
        touched = ndimage.map_coordinates(
            invalid.astype(np.float32), coordinates, order=min(order, 1), cval=1.0
        )
        out_valid[band] = touched == 0
        # nodata filled with the band's mean, so that the cubic spline does not ring
        fill = band_values[band_valid].mean() if band_valid.any() else 0.0
        filled = np.where(band_valid, band_values, fill)
        out[band] = ndimage.map_coordinates(filled, coordinates, order=order, mode="nearest")
    return out, out_valid


def _write(image, path, correction: Correction, size, tap, origin, options: dict[str, Any]):
    if correction.largest_shift(image) < NEGLIGIBLE_SHIFT * min(image.grid.pixel_size):
        correction = Correction(np.eye(3))
    grid = _output_grid(image, correction, size, tap, origin)
    moved: Correction | None = correction
    if (
        correction.mesh is None
        and np.array_equal(correction.matrix, np.eye(3))
        and (grid == image.grid)
    ):
        LOGGER.debug(
            "%s: %s moves less than %g pixel: its pixels are copied as they are",
            NAME,
            image.name,
            NEGLIGIBLE_SHIFT,
        )
        moved = None
    dtype, nodata = options["dtype"] or image.dtype, options["nodata"]
    nodata = image.nodata if nodata is None else nodata
    profile = output_profile(
        image,
        dtype,
        width=grid.width,
        height=grid.height,
        transform=grid.transform,
        nodata=nodata,
    )
    pieces = (
        (
            window,
            to_dtype(values, valid, dtype, nodata),
            None if nodata is not None else valid.all(axis=0).astype(np.uint8) * 255,
        )
        for window, values, valid in _pieces(
            image, moved, grid, options["order"], options["window_size"]
        )
    )
    write_raster(
        Path(path),
        profile,
        pieces,
        descriptions=image.descriptions,
        cog=options["cog"],
        overviews=options["overviews"],
    )


# ------------------------------------------------------------------ the function

#: The local-mesh keywords and their defaults (the published ones).
LOCAL_DEFAULTS = {
    "local_image_position_preservation_weights": None,
    "local_tie_point_alignment_strength": 1.0,
    "local_grid_spacing": 500.0,
    "local_smoothness_weight": 1.0,
    "local_bending_weight": 1.0,
    "local_anchor_falloff_distance": 500.0,
}


@takes_engine_keywords
def joint_coregistration(
    input_images: ImagesLike,
    output_images: OutputsLike,
    *,
    global_model: GlobalModelName = "translation",
    global_image_position_preservation_weights: Mapping[str, float] | None = None,
    global_tie_point_alignment_strength: float = 1.0,
    local_model: LocalModelName = "none",
    local_image_position_preservation_weights: Mapping[str, float] | None = None,
    local_tie_point_alignment_strength: float = 1.0,
    local_grid_spacing: float = 500.0,
    local_smoothness_weight: float = 1.0,
    local_bending_weight: float = 1.0,
    local_anchor_falloff_distance: float = 500.0,
    feature_method: Literal["orb", "phase_correlation"] = "orb",
    maximum_tie_point_displacement: float | None = None,
    ransac_reprojection_threshold: float | None = None,
    robust_loss: RobustLoss = "huber",
    robust_loss_scale: float | None = None,
    save_adjustments: str | os.PathLike | None = None,
    load_adjustments: str | os.PathLike | None = None,
    resampling_method: Literal["nearest", "bilinear", "cubic", "lanczos"] = "bilinear",
    tap: bool = False,
    resolution: ResolutionName | float | tuple[float, float] | None = None,
    output_dtype: str | None = None,
    custom_nodata_value: float | None = None,
    window_size: int | None = None,
    save_as_cog: bool = False,
    build_overviews: bool = False,
    window_scales: Sequence[int] | None = (2, 4, 8, 16, 32),
    resume_from_outputs: ResumeMode = "no",
) -> list[str]:
    """Move overlapping images onto each other: tie points in every overlap, one joint
    least-squares solve of a correction per image, and every image resampled onto one
    pixel grid.

    Also takes the published engine keywords (``debug_logs``, ``cache``, the thread
    counts, ``concurrent_processing_backend``, ``dask_scheduler``): see
    :func:`~spectralmatch.engine.published.takes_engine_keywords`. With
    ``resume_from_outputs`` ``"yes"`` the outputs that exist are kept (``"validate"``:
    those that open as whole rasters), and when all are kept nothing is read.

    Tie points come from phase correlation, not from ORB features as in the published
    package: in each overlap, patches of 32 pixels on a regular grid (of a decimated read
    for overlaps longer than 1024 pixels) of a grey image (the mean of the first three
    bands, stretched between its 2nd and 98th percentiles) are correlated through the FFT,
    with a sub-pixel peak fit. Only patches fully valid in both images and with texture
    are used; weak peaks and points far from the pair's affine fit are left out. This needs
    no OpenCV and is sub-pixel accurate and robust between images of one sensor.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
        At least two images in one CRS, north-up.
    output_images : folder, template with ``$`` (``"out/$_Coregistered.tif"``) or list
        In a folder the outputs keep the input file names.
    global_model : {"translation", "similarity", "affine", "none"}, default "translation"
        The correction of each image's map coordinates: a shift; a shift, rotation and
        uniform scale; a full affine map; or none (images are only resampled).
    global_image_position_preservation_weights : dict, optional
        Weight by image name (file name without extension; 1 for images not named):
        the network fixes only relative positions, and of the solutions the one that
        moves the images least, counted by these weights, is chosen. A large weight
        keeps an image in place.
    global_tie_point_alignment_strength : float, default 1.0
        From 0 (no movement) to 1 (the full solved movement).
    local_model : {"none", "bilinear", "piecewise_affine"}, default "none"
        After the global solve, each image may get a local deformation mesh: a regular
        grid of nodes over its footprint, each carrying a 2-D displacement, interpolated
        bilinearly or linearly on the two triangles of each cell ("piecewise_affine").
        All meshes are solved in one sparse least-squares system: at every tie point the
        two images' displacements must close what the global correction leaves (with
        the same robust loss); each mesh is kept smooth and pulled towards no
        displacement, more strongly away from tie points, so that parts far from any
        overlap stay where the global correction puts them. Pixels are moved by the
        global correction and then by the mesh. A mesh that folds over (a cell turned
        inside out) is an error. The published default is "piecewise_affine"; here the
        mesh is asked for.
    local_image_position_preservation_weights : dict, optional
        Weight by image name (1 for images not named) of the pull towards no local
        displacement: where two images disagree, the one with the larger weight moves
        less.
    local_tie_point_alignment_strength : float, default 1.0
        From 0 (no local movement) to 1 (the full solved displacement).
    local_grid_spacing : float, default 500.0
        Largest distance between mesh nodes (CRS units).
    local_smoothness_weight, local_bending_weight : float, default 1.0
        Weights (0 or more, 1 weighing as much as the tie points of one pair) of the
        differences between neighbouring nodes and of the second differences along
        mesh rows and columns.
    local_anchor_falloff_distance : float, default 500.0
        Distance (CRS units) from the nearest tie point over which the pull towards no
        displacement grows to its full weight (1 - exp(-(d / falloff)^2), at least 0.001).
    feature_method : {"orb", "phase_correlation"}, default "orb"
        Both select the phase correlation above ("orb" is the published name).
    maximum_tie_point_displacement : float, optional
        Tie points whose two ends lie further apart (CRS units) are left out.
    ransac_reprojection_threshold : float, optional
        Largest distance (CRS units) of a tie point from its pair's affine fit; default
        3 pixels.
    robust_loss : {"huber", "soft_l1", "cauchy", "none"}, default "huber"
        How tie points that disagree with the solution are down-weighted.
    robust_loss_scale : float, optional
        The distance (CRS units) at which the loss starts to down-weight; default the
        threshold above.
    save_adjustments, load_adjustments : path, optional
        A JSON file of the raw tie points of each pair (pixel coordinates, in the
        published package's layout) to write, or to read instead of matching the pairs
        it holds.
    resampling_method : {"bilinear", "nearest", "cubic", "lanczos"}, default "bilinear"
        "lanczos" is done as cubic, with a warning. A sample that touches an invalid
        pixel is invalid.
    tap, resolution
        The common grid: by default the finest pixel size of the images, with grid lines
        through the top-left corner of the first image (the images' own grid when they
        share one); ``resolution`` and ``tap`` as in :func:`align_rasters`.
    output_dtype, custom_nodata_value
        Output data type (numpy or GDAL name) and nodata value; default the input's.
    window_size, save_as_cog, build_overviews, window_scales
        Windowed writing, COG output, and overviews at the given decimation factors.

    Returns
    -------
    list of str
        The output paths, in input order. An image whose correction (global and local
        together) is below 0.01 pixel and whose grid does not change is copied exactly.

    Raises
    ------
    SpectralMatchError
        Fewer than two images, an unknown image name in the weights, a bad keyword, a
        local mesh that folds over or cannot be inverted (naming the image).

    Warns
    -----
    SpectralMatchWarning
        A pair with too few usable tie points for the model (1 for a translation, 2 for
        a similarity, 3 for an affine map; left out of the solve), an image with no tie
        point (kept in place), a ``local_*`` keyword set while ``local_model`` is "none".
    """
    _check_keywords(locals())
    collection = ImageCollection.coerce(input_images)
    if len(collection) < 2:
        raise SpectralMatchError(
            f"{NAME}: needs at least two overlapping images, got {len(collection)} "
            f"({', '.join(map(str, (image.path for image in collection)))})"
        )
    weights = _weights(collection, global_image_position_preservation_weights, "global")
    local_weights = _weights(collection, local_image_position_preservation_weights, "local")
    paths = resolve_outputs(collection, **output_arguments(collection, output_images))
    kept = [reusable_output(path, resume_from_outputs) for path in paths]
    if all(kept):
        return [str(path) for path in paths]
    loaded = load_tie_points(load_adjustments) if load_adjustments else {}
    ties, raw = collect_ties(
        collection,
        loaded,
        maximum_tie_point_displacement,
        ransac_reprojection_threshold,
        global_model,
    )
    if save_adjustments:
        save_tie_points(save_adjustments, raw)
    _warn_unlinked(collection, ties)
    pixel = max(max(image.grid.pixel_size) for image in collection)
    loss_scale = robust_loss_scale or ransac_reprojection_threshold or 3 * pixel
    matrices = solve_corrections(
        len(collection),
        ties,
        global_model,
        Frame.of(collection.bounds),
        weights,
        global_tie_point_alignment_strength,
        robust_loss,
        loss_scale,
    )
    settings = MeshSettings(
        local_model,
        local_grid_spacing,
        local_smoothness_weight,
        local_bending_weight,
        local_anchor_falloff_distance,
        local_tie_point_alignment_strength,
    )
    corrections = _with_meshes(
        collection, ties, matrices, settings, local_weights, (robust_loss, loss_scale)
    )
    grids = [NativeGrid.of(image, collection.crs) for image in collection]
    size = target_resolution(grids, resolution, keyword=f"{NAME}: resolution")
    origin = (0.0, 0.0) if tap else (collection[0].bounds[0], collection[0].bounds[3])
    options = {
        "dtype": dtype_name(NAME, "output_dtype", output_dtype),
        "nodata": custom_nodata_value,
        "order": _order(resampling_method),
        "window_size": window_size or DEFAULT_WINDOW_SIZE,
        "cog": save_as_cog,
        "overviews": tuple(window_scales or ()) if build_overviews else (),
    }
    for image, path, correction, keep in zip(collection, paths, corrections, kept, strict=True):
        if not keep:
            _write(image, path, correction, size, tap, origin, options)
    return [str(path) for path in paths]


def _weights(collection: ImageCollection, given: Mapping[str, float] | None, kind: str):
    try:
        return preservation_weights(
            given, collection.names, f"{kind}_image_position_preservation_weights"
        )
    except SpectralMatchError as error:
        raise SpectralMatchError(f"{NAME}: {error}") from None


def _with_meshes(
    collection: ImageCollection,
    ties: Sequence[TiePoints],
    matrices: Sequence[np.ndarray],
    settings: MeshSettings,
    preservation: Sequence[float],
    loss: tuple[RobustLoss, float],
) -> list[Correction]:
    """Each image's correction: its global ``matrices`` and, unless the local model is
    "none", its solved mesh; a mesh that folds is an error naming the image."""
    meshes: Sequence[Mesh | None] = [None] * len(collection)
    if settings.model != "none":
        bounds = [image.bounds for image in collection]
        meshes = solve_meshes(bounds, ties, matrices, settings, preservation, *loss)
    for image, matrix, mesh in zip(collection, matrices, meshes, strict=True):
        LOGGER.debug("%s: %s correction %s", NAME, image.name, np.round(matrix[:2], 6).tolist())
        if mesh is None:
            continue
        LOGGER.debug("%s: %s largest local displacement %g", NAME, image.name, mesh.largest())
        if mesh.folds(matrix):
            raise SpectralMatchError(
                f"{NAME}: {image.path}: the solved local mesh folds over (a cell turns "
                "inside out); use a larger local_smoothness_weight or local_grid_spacing"
            )
    return [Correction(matrix, mesh) for matrix, mesh in zip(matrices, meshes, strict=True)]


def _check_keywords(given: Mapping[str, Any]) -> None:
    rules = {
        "global_model": Options(tuple(PARAMETER_COUNT)),
        "global_tie_point_alignment_strength": Interval(0, 1),
        "local_model": Options(("none", "bilinear", "piecewise_affine")),
        "local_tie_point_alignment_strength": Interval(0, 1),
        "local_grid_spacing": POSITIVE,
        "local_smoothness_weight": NON_NEGATIVE,
        "local_bending_weight": NON_NEGATIVE,
        "local_anchor_falloff_distance": POSITIVE,
        "feature_method": Options(("orb", "phase_correlation")),
        "maximum_tie_point_displacement": AnyOf((NONE, POSITIVE)),
        "ransac_reprojection_threshold": AnyOf((NONE, POSITIVE)),
        "robust_loss": Options(("none", "huber", "soft_l1", "cauchy")),
        "robust_loss_scale": AnyOf((NONE, POSITIVE)),
        "resampling_method": Options((*ORDERS, "lanczos")),
        "tap": BOOLEAN,
        "window_size": AnyOf((NONE, POSITIVE_INTEGER)),
        "save_as_cog": BOOLEAN,
        "build_overviews": BOOLEAN,
    }
    for keyword, rule in rules.items():
        check(NAME, keyword, given[keyword], rule)
    check_window_scales(NAME, given["window_scales"])
    if given["local_model"] == "none":
        for keyword, default in LOCAL_DEFAULTS.items():
            warn_no_effect(keyword, given[keyword], default, "local_model is 'none'")


def _order(resampling_method: str) -> int:
    if resampling_method == "lanczos":
        warnings.warn(
            f"{NAME}: resampling_method='lanczos' is done as 'cubic' (a cubic spline)",
            SpectralMatchWarning,
            stacklevel=4,
        )
        return ORDERS["cubic"]
    return ORDERS[resampling_method]
