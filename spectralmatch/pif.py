"""The published ``Pif`` namespace: global correction parameters fitted on
pseudo-invariant features, as ``spectralmatch.Pif`` and ``spectralmatch.pif.Pif``.

The published ``Pif.flood_from_match_points`` (spectralmatch 1.6.0) finds its invariant
pixels by matching ORB tie points between overlapping images, dropping vegetation and
pixels of a large normalized difference, and growing regions around the points. Here the
invariant pixels come from one of our change detectors (:class:`~spectralmatch.model.pif.CellPIF`
by default, :class:`~spectralmatch.ResidualPIF` or :class:`~spectralmatch.IRMAD`) on every
overlap, and the gains and offsets
from :class:`~spectralmatch.GlobalModel` fitted without the changed pixels; the result
has the published layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._typing import WorkingDtype
from .engine.published import EngineKeywords, Threads, keyword_error
from .model.global_model import GlobalModel
from .model.pif import CellPIF, ChangeDetector
from .raster.collection import ImagesLike
from .workflow import RunOptions, change_mask_folder, check_pif_keywords, fitted


def flood_from_match_points(
    input_images: ImagesLike,
    *,
    input_image_names: Sequence[str] | None = None,
    included_names: Sequence[str] | None = None,
    overlapping_pairs: tuple[tuple[str, str], ...] | None = None,
    calculation_dtype: WorkingDtype = "float32",
    custom_nodata_value: float | None = None,
    red_band_index: int | None = None,
    nir_band_index: int | None = None,
    vegetation_threshold: float = 0.2,
    inz_threshold: float = 0.25,
    region_radius: int = 5,
    max_samples: int | None = 1000,
    min_samples: int | None = 10,
    custom_mean_factor: float = 1.0,
    custom_std_factor: float = 1.0,
    feature_method: str = "orb",
    load_tie_points: str | None = None,
    cache: float | None = None,
    image_threads: Threads = None,
    io_threads: Threads = None,
    tile_threads: Threads = None,
    concurrent_processing_backend: str = "process_pool",
    dask_scheduler: tuple[str, str] | None = None,
    save_inz: str | None = None,
    debug_logs: bool = False,
    detector: ChangeDetector | None = None,
) -> np.ndarray:
    """Gains and offsets of every image and band, fitted on pseudo-invariant features.

    The whole-image model is fitted, every overlap is examined for change after it by
    ``detector``, and the model is fitted again without the changed pixels (as
    ``Mosaic(steps=[GlobalModel()], pif=detector)``). Nothing is written.

    Parameters
    ----------
    input_images : folder, glob pattern or list of paths
    input_image_names : list of str, optional
        A name per input, in their order, by which ``included_names`` names them;
        default: the file names without extension.
    included_names : list of str, optional
        The images the model is built on: held fixed (our reference images), the others
        are matched to them. Default (or all images): none is fixed and the model keeps
        the images' average. The published package anchors these images softly instead.
    overlapping_pairs : tuple of (name, name), optional
        Must be None: every pair of images that overlaps is used.
    calculation_dtype : {"float32", "float64"}, default "float32"
        Accepted; the statistics are always accumulated in float64.
    custom_nodata_value : float, optional
        Nodata value of the inputs, instead of their own.
    red_band_index, nir_band_index, load_tie_points
        Must be None: the NDVI filter and tie points of the published method do not
        exist here.
    save_inz : path, folder or template, optional
        The published per-pair INZ rasters become the detector's change masks, one per
        image (``<folder>/<image name>.tif``, 1 where the image changed), written in its
        folder. A warning says so.
    vegetation_threshold, inz_threshold, region_radius, max_samples
        No effect (a warning says so when one is changed): our detectors have no such
        setting, and every invariant pixel is used rather than a sample.
    min_samples : int, optional, default 10
        Fewest invariant pixels an overlap may keep; fewer raise an error naming the
        pair. None: no minimum.
    custom_mean_factor, custom_std_factor : float, default 1.0
        Weights of the mean and standard-deviation equations.
    feature_method : {"orb"}
        No effect (no tie points are matched).
    cache, image_threads, io_threads, tile_threads, concurrent_processing_backend,
    dask_scheduler, debug_logs
        As in :func:`~spectralmatch.global_regression`.
    detector : ChangeDetector, optional
        Ours, not published: how changed pixels are found. Default
        :class:`~spectralmatch.model.pif.CellPIF` (outlying cells after the first fit,
        from the one statistics pass); :class:`~spectralmatch.ResidualPIF` and
        :class:`~spectralmatch.IRMAD` read the overlaps again.

    Returns
    -------
    ndarray (n_bands, 2 * n_images, 1)
        For image ``i`` and band ``b``, ``[b, 2 * i, 0]`` is the gain and
        ``[b, 2 * i + 1, 0]`` the offset of ``corrected = gain * image + offset``.

    Examples
    --------
    >>> Pif.flood_from_match_points("data/").shape
    (3, 8, 1)
    """
    engine = EngineKeywords(
        debug_logs, cache, image_threads, io_threads, tile_threads,
        concurrent_processing_backend, dask_scheduler,
    )  # fmt: skip
    with engine.logging():
        run = RunOptions(engine, calculation_dtype, custom_nodata_value=custom_nodata_value)
        check_pif_keywords(
            "",
            feature_method,
            {
                "red_band_index": red_band_index,
                "nir_band_index": nir_band_index,
                "load_tie_points": load_tie_points,
            },
            {
                "vegetation_threshold": (vegetation_threshold, 0.2),
                "inz_threshold": (inz_threshold, 0.25),
                "region_radius": (region_radius, 5),
                "max_samples": (max_samples, 1000),
            },
        )
        if overlapping_pairs is not None:
            raise keyword_error(
                "overlapping_pairs", "must be None: every pair of overlapping images is used"
            )
        if min_samples is not None and not (isinstance(min_samples, int) and min_samples >= 0):
            raise keyword_error(
                "min_samples", f"must be a non-negative int or None, got {min_samples!r}"
            )
        collection = run.collection(input_images)
        names = _names(input_image_names, collection.names)
        step = GlobalModel(
            reference=_included(included_names, names),
            mean_weight=custom_mean_factor,
            std_weight=custom_std_factor,
        )
        detector = detector or CellPIF()
        masks_folder = change_mask_folder("save_inz", save_inz, detector)
        model = fitted(step, collection, run, detector, masks_folder)
        fit = model.steps_[0]
        assert isinstance(fit, GlobalModel)
        _check_min_samples(fit, min_samples)
        return np.stack([fit.gains_.T, fit.offsets_.T], axis=2).reshape(fit.gains_.shape[1], -1, 1)


def _names(given: Sequence[str] | None, names: list[str]) -> list[str]:
    if given is None:
        return names
    if len(given) != len(names) or len(set(given)) != len(given):
        raise keyword_error(
            "input_image_names",
            f"must be {len(names)} distinct names, one per input, got {list(given)!r}",
        )
    return list(given)


def _included(included: Sequence[str] | None, names: list[str]) -> list[int] | None:
    """Positions of the included images, or None when all are."""
    if included is None or set(included) == set(names):
        return None
    unknown = sorted(set(included) - set(names))
    if unknown:
        raise keyword_error("included_names", f"{unknown} are not among the images {names}")
    return [names.index(name) for name in included]


def _check_min_samples(fit: GlobalModel, min_samples: int | None) -> None:
    """An error for the first overlap with fewer than ``min_samples`` invariant pixels."""
    if min_samples is None:
        return
    diagnostics = fit.diagnostics_
    assert diagnostics is not None  # fitted here, not read from a file
    for (first, second), counts in zip(diagnostics.pairs, diagnostics.count, strict=True):
        if counts.min() < min_samples:
            raise keyword_error(
                "min_samples",
                f"the overlap of {first} and {second} keeps {int(counts.min())} invariant "
                f"pixels, fewer than {min_samples}",
            )


class Pif:
    """The published namespace: ``Pif.flood_from_match_points``."""

    flood_from_match_points = staticmethod(flood_from_match_points)
