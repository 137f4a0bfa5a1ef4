"""``pipeline``: the published one-call workflow, from input images to a merged mosaic.

The steps are the function API's (``global_regression``, ``align_rasters``, ...), run in
the order given, each writing into a folder of a temporary working directory that the
next one reads; the last step writes the output. Keywords reach a step as
``<step prefix>_<keyword>`` (``merge_rasters_output_tiles=True``) or, for every step that
takes them, as ``shared_<keyword>``.
"""

from __future__ import annotations

import difflib
import inspect
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from attrs import frozen

from .engine.published import ENGINE_KEYWORDS, LOGGER, EngineKeywords, keyword_error
from .errors import SpectralMatchError, SpectralMatchWarning
from .ops.align import align_rasters
from .ops.clip import mask_rasters
from .ops.coregister import joint_coregistration
from .ops.merge import merge_rasters
from .ops.seamline import voronoi_center_seamline, weighted_seamline
from .raster.collection import resolve_paths
from .raster.image import DEFAULT_WINDOW_SIZE
from .raster.paths import TEMPLATE_SYMBOLS, names_a_file
from .workflow import global_regression, local_block_adjustment

#: What a step writes: one raster per image, one vector layer, or one mosaic.
IMAGES, VECTOR, MOSAIC = "images", "vector", "mosaic"


@frozen
class Step:
    """One step of the pipeline: the function it calls and where its output goes."""

    name: str
    prefix: str
    function: Callable[..., Any]
    writes: str
    temporary_output: str

    def keywords(self) -> set[str]:
        """The keywords its function takes, the engine keywords included."""
        parameters = inspect.signature(self.function).parameters.values()
        named = {
            parameter.name
            for parameter in parameters
            if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }
        return named | set(ENGINE_KEYWORDS)


STEPS = {
    step.name: step
    for step in (
        Step(
            "joint_coregistration",
            "joint_coregistration",
            joint_coregistration,
            IMAGES,
            "coregistered",
        ),
        Step("align", "align_rasters", align_rasters, IMAGES, "aligned"),
        Step("global_regression", "global_regression", global_regression, IMAGES, "global"),
        Step(
            "local_block_adjustment",
            "local_block_adjustment",
            local_block_adjustment,
            IMAGES,
            "local",
        ),
        Step(
            "voronoi_center_seamline",
            "voronoi_center_seamline",
            voronoi_center_seamline,
            VECTOR,
            "seamline/ImageMasks.gpkg",
        ),
        Step(
            "weighted_seamline",
            "weighted_seamline",
            weighted_seamline,
            VECTOR,
            "seamline/ImageMasks.gpkg",
        ),
        Step("mask", "mask_rasters", mask_rasters, IMAGES, "clip"),
        Step("merge", "merge_rasters", merge_rasters, MOSAIC, "merged.tif"),
    )
}
DEFAULT_STEPS = (
    "joint_coregistration",
    "global_regression",
    "local_block_adjustment",
    "voronoi_center_seamline",
    "mask",
    "merge",
)
#: Where the published pipeline's defaults differ from its functions' defaults.
PIPELINE_DEFAULTS = {"merge": {"build_overviews": True}}
#: Shared keywords a step takes only with one of its own set: merge_rasters runs tiles in
#: parallel (and refuses the thread keywords for one mosaic).
SHARED_ONLY_WITH = {
    "merge": ({"image_threads", "concurrent_processing_backend", "dask_scheduler"}, "output_tiles")
}
#: The file that marks a folder of the working directory as a step's.
STEP_MARK = ".spectralmatch-pipeline-step"
#: Keywords that name a step's inputs and outputs: the pipeline sets them.
WIRED = {"input_images", "output_images", "output_mask", "output_image_path"}


def pipeline(
    shared_input_images: Any,
    shared_output_image_path: Any,
    *,
    shared_temp_dir: str | os.PathLike | None = None,
    delete_temp_dir: bool = True,
    delete_previous_step: bool = False,
    shared_resume_from_steps: str = "no",
    shared_debug_logs: bool = False,
    shared_cache: float | str | None = "auto",
    shared_custom_nodata_value: float | None = None,
    shared_window_size: int = DEFAULT_WINDOW_SIZE,
    shared_window_scales: tuple[int, ...] | None = (2, 4, 8, 16, 32),
    shared_image_threads: Any = "auto",
    shared_io_threads: Any = "auto",
    shared_tile_threads: Any = "auto",
    shared_concurrent_processing_backend: str = "process_pool",
    shared_dask_scheduler: tuple[str, str] | None = None,
    shared_calculation_dtype: str = "float32",
    shared_output_dtype: str | None = None,
    shared_save_as_cog: bool = False,
    steps: Sequence[str] = DEFAULT_STEPS,
    **step_keywords: Any,
) -> dict[str, Any]:
    """Run the workflow's steps in one call, from input images to their output.

    Every step is a function of the function API, called with the previous step's
    outputs as its inputs; intermediate outputs go to folders of a working directory
    (``coregistered/``, ``aligned/``, ``global/``, ``local/``, ``seamline/``, ``clip/``),
    and the last step writes ``shared_output_image_path``. Everything is checked before
    the first step runs: the step names, every keyword, and the output's form.

    Parameters
    ----------
    shared_input_images : folder, glob pattern, ``(folder, pattern)`` or list of paths
    shared_output_image_path : path or list of paths
        For a last step that writes one raster per image: a folder (the outputs keep the
        input file names), a ``$`` template or a list. For ``merge``: the mosaic's file,
        or with ``merge_rasters_output_tiles=True`` the folder of tiles. For a seamline
        step: the vector file.
    shared_temp_dir : path, optional
        The working directory; default: a new temporary one.
    delete_temp_dir : bool, default True
        Delete the steps' folders in the working directory at the end (and the working
        directory itself when this call created it or it is left empty). Files of yours
        in a ``shared_temp_dir`` you gave are never deleted: a folder there with a step's
        name that a pipeline run did not make stops the run before any step.
    delete_previous_step : bool, default False
        Delete a step's intermediate outputs as soon as no later step needs them.
    shared_resume_from_steps : {"no", "yes", "validate"}, default "no"
        Passed to every step as ``resume_from_outputs``: with ``"yes"`` a step keeps the
        outputs a previous run completed (``"validate"``: those that still open and
        check), so a stopped pipeline run again with the same ``shared_temp_dir`` goes
        on where it stopped.
    shared_debug_logs, shared_cache, shared_image_threads, shared_io_threads, \
shared_tile_threads, shared_concurrent_processing_backend, shared_dask_scheduler
        The engine keywords, for every step (see
        :mod:`spectralmatch.engine.published`). ``"auto"`` (the default of the cache and
        the thread counts) leaves them to our engine: GDAL's own cache, every CPU.
    shared_custom_nodata_value, shared_window_size, shared_window_scales, \
shared_calculation_dtype, shared_output_dtype, shared_save_as_cog
        Passed to every step that takes the keyword without the ``shared_`` prefix.
    steps : sequence of str
        In order, any of ``"joint_coregistration"``, ``"align"``,
        ``"global_regression"``, ``"local_block_adjustment"``,
        ``"voronoi_center_seamline"`` or ``"weighted_seamline"`` (at most one),
        ``"mask"`` and ``"merge"``. Default: co-registration, global and local
        matching, Voronoi seamlines, mask and merge.
    **step_keywords
        Keywords of one step, prefixed with its function's name:
        ``joint_coregistration_``, ``align_rasters_``, ``global_regression_``,
        ``local_block_adjustment_``, ``voronoi_center_seamline_``,
        ``weighted_seamline_``, ``mask_rasters_``, ``merge_rasters_``
        (``local_block_adjustment_number_of_blocks=50``). A step keyword wins over a
        shared one. ``merge_rasters_build_overviews`` defaults to True here, as in the
        published pipeline. Without ``mask_rasters_vector_mask``, ``mask`` clips each
        image to its polygon from the seamline step.

    Returns
    -------
    dict
        ``"output"`` (the last step's output), ``"temp_dir"``, ``"steps"``, the output of
        each step under its name (and ``"align_rasters"``, ``"mask_rasters"``,
        ``"merge_rasters"`` for those), ``"num_input_images"``, ``"start_time"``,
        ``"end_time"``, ``"duration_seconds"`` and the ``"resolved_shared_*"`` settings.

    Raises
    ------
    SpectralMatchError
        Before any step runs, for an unknown step or keyword, a mask step with no
        polygons to mask by, or an output that does not fit the last step; and from the
        step that fails, naming the file and the problem.
    """
    shared = {
        "debug_logs": shared_debug_logs,
        "cache": None if shared_cache == "auto" else shared_cache,
        "image_threads": _threads(shared_image_threads),
        "io_threads": _threads(shared_io_threads),
        "tile_threads": _threads(shared_tile_threads),
        "concurrent_processing_backend": shared_concurrent_processing_backend,
        "dask_scheduler": shared_dask_scheduler,
        "resume_from_outputs": shared_resume_from_steps,
        "custom_nodata_value": shared_custom_nodata_value,
        "window_size": shared_window_size,
        "window_scales": shared_window_scales,
        "calculation_dtype": shared_calculation_dtype,
        "output_dtype": shared_output_dtype,
        "save_as_cog": shared_save_as_cog,
    }
    engine = EngineKeywords(**{name: shared[name] for name in ENGINE_KEYWORDS})
    plan = _plan(steps, step_keywords, shared)
    _check_output(shared_output_image_path, plan)
    run = _Run(Path(shared_temp_dir) if shared_temp_dir else None, delete_temp_dir)
    started, clock = datetime.now(), time.perf_counter()
    with engine.logging():
        LOGGER.debug("pipeline: steps %s, working directory %s", list(steps), run.folder)
        try:
            results = run.steps(
                plan, shared_input_images, shared_output_image_path, delete_previous_step
            )
        finally:
            run.clean_up()
    return {
        **results,
        "temp_dir": str(run.folder),
        "input_images": shared_input_images,
        "num_input_images": len(resolve_paths(shared_input_images)),
        "steps": list(steps),
        "start_time": started.isoformat(timespec="seconds"),
        "end_time": datetime.now().isoformat(timespec="seconds"),
        "duration_seconds": round(time.perf_counter() - clock, 2),
        "shared_resume_from_steps": shared_resume_from_steps,
        "shared_concurrent_processing_backend": shared_concurrent_processing_backend,
        "shared_dask_scheduler": shared_dask_scheduler,
        "resolved_shared_cache": shared["cache"],
        **{
            f"resolved_shared_{name}": shared[name] or os.cpu_count()
            for name in ("image_threads", "io_threads", "tile_threads")
        },
    }


def _threads(value: Any) -> Any:
    """The published ``"auto"`` thread count is our engine's default (None: every CPU)."""
    return None if value == "auto" else value


def _plan(
    steps: Sequence[str], step_keywords: dict[str, Any], shared: dict[str, Any]
) -> list[tuple[Step, dict[str, Any]]]:
    """Each step of ``steps`` with the keywords it will be called with; every keyword of
    ``step_keywords`` must belong to a step of the pipeline."""
    if isinstance(steps, str) or not isinstance(steps, Sequence):
        raise keyword_error("steps", f"must be a list of step names, got {steps!r}")
    unknown = [name for name in steps if name not in STEPS]
    if unknown:
        raise keyword_error(
            "steps", f"unknown step {unknown[0]!r}; the steps are {', '.join(STEPS)}"
        )
    if len(set(steps)) != len(steps):
        raise keyword_error("steps", f"a step appears twice in {list(steps)}")
    if {"voronoi_center_seamline", "weighted_seamline"} <= set(steps):
        raise keyword_error("steps", "take one seamline step, not both")
    own = _split_keywords(step_keywords)
    plan = []
    for name in steps:
        step = STEPS[name]
        given = PIPELINE_DEFAULTS.get(name, {}) | own.pop(step.prefix, {})
        accepted = step.keywords() - WIRED
        if name in SHARED_ONLY_WITH and not given.get(SHARED_ONLY_WITH[name][1]):
            accepted -= SHARED_ONLY_WITH[name][0]
        keywords = {key: value for key, value in shared.items() if key in accepted}
        plan.append((step, keywords | given))
    if own:
        skipped = sorted(f"{prefix}_{key}" for prefix, given in own.items() for key in given)
        warnings.warn(
            f"keywords of steps that do not run, not used: {', '.join(skipped)}",
            SpectralMatchWarning,
            stacklevel=3,
        )
    _check_mask_has_polygons(plan)
    return plan


def _split_keywords(step_keywords: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"merge_rasters_overlap": 4}`` -> ``{"merge_rasters": {"overlap": 4}}``; an
    unknown keyword is refused with the closest known ones."""
    known = {
        f"{step.prefix}_{key}": (step.prefix, key)
        for step in STEPS.values()
        for key in step.keywords() - WIRED
    }
    split: dict[str, dict[str, Any]] = {}
    for given, value in step_keywords.items():
        if given not in known:
            close = difflib.get_close_matches(given, known, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise TypeError(f"pipeline() got an unexpected keyword argument {given!r}{hint}")
        prefix, key = known[given]
        split.setdefault(prefix, {})[key] = value
    return split


def _check_mask_has_polygons(plan: list[tuple[Step, dict[str, Any]]]) -> None:
    names = [step.name for step, _ in plan]
    if "mask" not in names:
        return
    keywords = plan[names.index("mask")][1]
    seamline_before = any(step.writes == VECTOR for step, _ in plan[: names.index("mask")])
    if keywords.get("vector_mask") is None and not seamline_before:
        raise keyword_error(
            "mask_rasters_vector_mask",
            "the mask step needs polygons: give mask_rasters_vector_mask or run a "
            "seamline step before it",
        )


def _check_output(output: Any, plan: list[tuple[Step, dict[str, Any]]]) -> None:
    """The output must fit what the last step writes: one path for a mosaic or a vector
    layer (a folder for tiles), else a folder, a ``$`` template or a list."""
    if not plan:
        return
    step, keywords = plan[-1]
    if step.writes == IMAGES:
        if isinstance(output, (str, os.PathLike)) and names_a_file(os.fspath(output)):
            if not any(symbol in os.fspath(output) for symbol in TEMPLATE_SYMBOLS):
                raise keyword_error(
                    "shared_output_image_path",
                    f"{step.name} writes one raster per image: give a folder, a template "
                    f"with '$' or a list of paths, not the file {os.fspath(output)!r}",
                )
        return
    if not isinstance(output, (str, os.PathLike)):
        raise keyword_error(
            "shared_output_image_path", f"{step.name} writes one output: give one path"
        )
    text = os.fspath(output)
    if "$" in text:
        raise keyword_error(
            "shared_output_image_path", f"{step.name} writes one output: {text!r} has a '$'"
        )
    tiles = step.writes == MOSAIC and keywords.get("output_tiles")
    if tiles and names_a_file(text):
        raise keyword_error(
            "shared_output_image_path",
            f"with merge_rasters_output_tiles the output must be a folder, not {text!r}",
        )
    if not tiles and not names_a_file(text):
        raise keyword_error(
            "shared_output_image_path",
            f"{step.name} writes one file: {text!r} has no file extension",
        )


def _as_list(images: Any) -> list[str]:
    if isinstance(images, (str, os.PathLike)):
        return [os.fspath(images)]
    return [os.fspath(image) for image in images]


class _Run:
    """The working directory of one pipeline run and the steps' folders in it."""

    def __init__(self, folder: Path | None, delete: bool) -> None:
        self.created = folder is None or not folder.exists()
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="spectralmatch-pipeline-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.delete = delete
        self.written: list[Path] = []

    def steps(
        self,
        plan: list[tuple[Step, dict[str, Any]]],
        images: Any,
        output: Any,
        delete_previous: bool,
    ) -> dict[str, Any]:
        """Run the steps; returns each step's output under its name."""
        for step, _ in plan[:-1]:  # before any step runs: a folder of yours stops it
            self._claim(self._step_folder(step))
        results: dict[str, Any] = {}
        seamlines: tuple[str, str] | None = None
        for index, (step, keywords) in enumerate(plan):
            last = index == len(plan) - 1
            target = output if last else self._folder_for(step)
            LOGGER.info("pipeline step %d of %d: %s", index + 1, len(plan), step.name)
            if step.writes == VECTOR:
                results[step.name] = _call(step, keywords, images, target)
                seamlines = (results[step.name], keywords.get("image_field_name", "image"))
            else:
                if step.name == "mask" and keywords.get("vector_mask") is None:
                    assert seamlines is not None  # checked by _check_mask_has_polygons
                    keywords = {**keywords, "vector_mask": ("include", *seamlines)}
                images = _call(step, keywords, images, target)
                results[step.name] = images
                if step.prefix != step.name:
                    results[step.prefix] = images
            results["output"] = results[step.name]
            if delete_previous:
                self._delete_unneeded(plan[index + 1 :], images, seamlines)
        return results

    def _step_folder(self, step: Step) -> Path:
        path = self.folder / step.temporary_output
        return path if step.writes == IMAGES else path.parent

    @staticmethod
    def _claim(folder: Path) -> None:
        """Mark ``folder`` as a step's (made here, or by an earlier pipeline run); a
        folder of that name holding anything else is the user's, and is refused."""
        mark = folder / STEP_MARK
        if folder.is_dir() and any(folder.iterdir()) and not mark.exists():
            raise keyword_error(
                "shared_temp_dir",
                f"{folder} exists and was not made by a pipeline run; give another working "
                "directory (nothing in it was changed)",
            )
        folder.mkdir(parents=True, exist_ok=True)
        if not mark.exists():
            mark.touch()

    def _folder_for(self, step: Step) -> str:
        self.written.append(self._step_folder(step))
        return str(self.folder / step.temporary_output)

    def _delete_unneeded(
        self,
        remaining: list[tuple[Step, dict[str, Any]]],
        images: Any,
        seamlines: tuple[str, str] | None,
    ) -> None:
        needed = {Path(path).parent for path in _as_list(images)}
        if seamlines is not None and any(step.name == "mask" for step, _ in remaining):
            needed.add(Path(seamlines[0]).parent)
        for path in self.written:
            if path not in needed and path.exists():
                LOGGER.debug("deleting the intermediate outputs in %s", path)
                shutil.rmtree(path)

    def clean_up(self) -> None:
        """With ``delete_temp_dir``: remove the steps' folders, and the working directory
        when this run created it or nothing else is left in it."""
        if not self.delete:
            return
        for path in self.written:
            shutil.rmtree(path, ignore_errors=True)
        if self.created:
            shutil.rmtree(self.folder, ignore_errors=True)
        elif self.folder.exists() and not any(self.folder.iterdir()):
            self.folder.rmdir()


def _call(step: Step, keywords: dict[str, Any], images: Any, target: Any) -> Any:
    """Call a step's function on ``images`` (for ``weighted_seamline``, on its
    ``input_polygons``), writing ``target``."""
    keywords = dict(keywords)
    if step.name == "weighted_seamline":
        images = keywords.pop("input_polygons", None)
        if images is None:
            raise keyword_error(
                "weighted_seamline_input_polygons", "the weighted seamline step needs it"
            )
    try:
        return step.function(images, target, **keywords)
    except SpectralMatchError as error:
        raise SpectralMatchError(f"pipeline step {step.name}: {error}") from error
