"""The function API as commands, called as the published package's command line calls
them: ``spectralmatch global_regression IN OUT --pif_method=entire``.

Each public function is a command of its own name, and each namespace (``Match``,
``Seamline``, ``Pif``) a group of its methods. Arguments are the function's positional
arguments, then ``--keyword=value`` or ``--keyword value`` (``-`` and ``_`` alike); a
value is read as a Python literal (``--window_size=512``, ``--steps='["merge"]'``,
``--vector_mask='("include", "masks.gpkg", "image")'``) and otherwise taken as text, and a
bare ``--keyword`` is True. Only literals are read: nothing the user types is run.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import click
import numpy as np

from .. import chain, pif, workflow
from ..engine.published import LOGGER
from ..ops import (
    align,
    bandmath,
    clip,
    clouds,
    coregister,
    merge,
    overviews,
    polygons,
    seamline,
    vectors,
)
from ..raster import paths
from ..report import published
from .options import report_errors

#: The published functions, by the names its command line gives them.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "pipeline": chain.pipeline,
    "global_regression": workflow.global_regression,
    "local_block_adjustment": workflow.local_block_adjustment,
    "joint_coregistration": coregister.joint_coregistration,
    "voronoi_center_seamline": seamline.voronoi_center_seamline,
    "weighted_seamline": seamline.weighted_seamline,
    "align_rasters": align.align_rasters,
    "mask_rasters": clip.mask_rasters,
    "create_cloud_mask": clouds.create_cloud_mask,
    "create_cloud_mask_with_omnicloudmask": clouds.create_cloud_mask_with_omnicloudmask,
    "merge_rasters": merge.merge_rasters,
    "merge_vectors": vectors.merge_vectors,
    "compute_overviews": overviews.compute_overviews,
    "band_math": bandmath.band_math,
    "create_ndvi_raster": bandmath.create_ndvi_raster,
    "create_ndwi_raster": bandmath.create_ndwi_raster,
    "threshold_raster": bandmath.threshold_raster,
    "process_raster_values_to_vector_polygons": polygons.process_raster_values_to_vector_polygons,
    "search_paths": paths.search_paths,
    "create_paths": paths.create_paths,
    "match_paths": paths.match_paths,
    "compare_image_spectral_profiles_pairs": published.compare_image_spectral_profiles_pairs,
    "compare_spatial_spectral_difference_band_average": (
        published.compare_spatial_spectral_difference_band_average
    ),
    "compare_before_after_all_images": published.compare_before_after_all_images,
}
#: The keywords that ask for debug messages.
DEBUG_KEYWORDS = ("debug_logs", "shared_debug_logs")
#: The published namespaces and their methods.
NAMESPACES: dict[str, dict[str, Callable[..., Any]]] = {
    "Match": {
        "global_regression": workflow.Match.global_regression,
        "local_block_adjustment": workflow.Match.local_block_adjustment,
    },
    "Seamline": {"voronoi": seamline.Seamline.voronoi, "weighted": seamline.Seamline.weighted},
    "Pif": {"flood_from_match_points": pif.Pif.flood_from_match_points},
}


def function_commands() -> list[click.Command]:
    """One command per published function and one group per namespace."""
    commands = [_command(name, function) for name, function in FUNCTIONS.items()]
    for name, methods in NAMESPACES.items():
        group = click.Group(name, help=f"The published {name} namespace: {', '.join(methods)}.")
        for method, function in methods.items():
            group.add_command(_command(method, function))
        commands.append(group)
    return commands


def _command(name: str, function: Callable[..., Any]) -> click.Command:
    summary = (inspect.getdoc(function) or name).splitlines()[0]
    parameters = list(inspect.signature(function).parameters.values())
    usage = " ".join(
        parameter.name.upper()
        for parameter in parameters
        if parameter.default is inspect.Parameter.empty
        and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    )
    keywords = ", ".join(
        f"--{parameter.name}"
        for parameter in parameters
        if parameter.default is not inspect.Parameter.empty
    )

    @report_errors
    def run(arguments: tuple[str, ...]) -> None:
        positional, keywords = parse_arguments(arguments)
        with _debug_lines(any(keywords.get(key) for key in DEBUG_KEYWORDS)):
            _show(function(*positional, **keywords))

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["arguments"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]},
        help=f"{summary}\n\n\b\nArguments: {usage}\nKeywords: {keywords}\n\n"
        f"Values are Python literals (text otherwise); see help(spectralmatch.{name}).",
        short_help=summary,
    )


@contextlib.contextmanager
def _debug_lines(show: bool) -> Iterator[None]:
    """With ``debug_logs``, the ``spectralmatch`` logger's messages on stderr."""
    if not show:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOGGER.addHandler(handler)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)


def parse_arguments(arguments: tuple[str, ...] | list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Positional values and keywords from ``ARG ... --key=value --key value --flag``."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    tokens = list(arguments)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token == "--":
            positional.append(literal(token))
            continue
        key, equals, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not equals:
            value = tokens.pop(0) if tokens and not tokens[0].startswith("--") else "True"
        if key in keywords:
            raise click.UsageError(f"--{key} is given twice")
        keywords[key] = literal(value)
    return positional, keywords


def literal(text: str) -> Any:
    """``text`` read as a Python literal (numbers, strings, tuples, lists, dicts, True,
    False, None), or the text itself when it is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _show(result: Any) -> None:
    """Print what the function returned: one path per line, a dict or an array as JSON."""
    if result is None:
        return
    if isinstance(result, np.ndarray):
        click.echo(json.dumps(result.tolist()))
    elif isinstance(result, dict):
        click.echo(json.dumps(result, indent=2, default=str))
    elif isinstance(result, (list, tuple)):
        for item in result:
            click.echo(item)
    else:
        click.echo(result)
