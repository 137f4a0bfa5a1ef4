"""Options shared by the commands, the model they build, and how errors are reported."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import get_args

import click

from .._typing import Correction
from ..errors import SpectralMatchError

CORRECTIONS = get_args(Correction)

INPUTS_HELP = "INPUTS are raster files, glob patterns or folders (their .tif files)."


def report_errors(command: Callable) -> Callable:
    """Turn expected failures into a one-line error and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import rasterio.errors

        try:
            return command(*args, **kwargs)
        except (SpectralMatchError, rasterio.errors.RasterioError, OSError) as error:
            raise click.ClickException(str(error).splitlines()[0]) from None

    return wrapper


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def engine_options(command: Callable) -> Callable:
    options = [
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="Images processed at once [default: number of CPUs].",
        ),
        click.option(
            "--window-size",
            type=click.IntRange(min=64),
            default=1024,
            show_default=True,
            help="Pixels per side of each window read and written.",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option(
            "--cache/--no-cache",
            default=True,
            show_default=True,
            help="Reuse the statistics of unchanged images from earlier runs.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Cache folder [default: $SPECTRALMATCH_CACHE or ~/.cache/spectralmatch].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def reference_option(command: Callable) -> Callable:
    return click.option(
        "--reference",
        "-r",
        "references",
        multiple=True,
        metavar="NAME",
        help="Reference image (file name, stem or path), kept unchanged; repeatable. "
        "Default: match to the collection's central tendency.",
    )(command)


def write_options(command: Callable) -> Callable:
    return click.option("--cog", is_flag=True, help="Write Cloud Optimized GeoTIFFs.")(command)


def local_options(command: Callable) -> Callable:
    options = [
        click.option(
            "--local/--no-local",
            default=True,
            show_default=True,
            help="Local block adjustment after the global model.",
        ),
        click.option(
            "--block-size",
            type=click.IntRange(min=2),
            default=None,
            help="Block side in pixels for the local adjustment "
            "[default: an eighth of the median image side].",
        ),
        click.option(
            "--correction",
            type=click.Choice(CORRECTIONS),
            default=CORRECTIONS[0],
            show_default=True,
            help="Kind of local correction.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def exclude_option(command: Callable) -> Callable:
    command = click.option(
        "--pif",
        type=click.Choice(("residual", "irmad")),
        default=None,
        help="Fit again on pseudo-invariant pixels only: after a first fit, changed pixels "
        "of every overlap are found (robust residual test, or IR-MAD) and left out.",
    )(command)
    command = click.option(
        "--pif-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Keep the change masks found by --pif there (<image>.tif, 1 = changed).",
    )(command)
    command = click.option(
        "--robust",
        is_flag=True,
        help="Down-weight overlaps that disagree with the rest (robust IRLS).",
    )(command)
    return click.option(
        "--exclude",
        "exclude",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Raster (non-zero pixels) or vector file (polygons) of areas to leave out of "
        "the fit, e.g. clouds or water; they are still transformed.",
    )(command)


def build_model(
    inputs,
    references,
    exclude,
    robust,
    pif,
    pif_dir,
    local,
    block_size,
    correction,
    threads,
    window_size,
    quiet,
    cache,
    cache_dir,
):
    from ..model.pif import IRMAD, ResidualPIF
    from ..model.pipeline import Mosaic, default_steps
    from ..raster.collection import ImageCollection, resolve_paths
    from ..raster.image import Image

    collection = ImageCollection([Image(path, mask=exclude) for path in resolve_paths(inputs)])
    reference = [collection.names[collection.index(key)] for key in references] or None
    global_step, local_step = default_steps()
    global_step.set_params(reference=reference, robust=robust)
    local_step.set_params(block_size=block_size, correction=correction, reference=reference)
    detector = {"residual": ResidualPIF, "irmad": IRMAD}[pif]() if pif else None
    model = Mosaic(
        steps=[global_step, local_step] if local else [global_step],
        window_size=window_size,
        threads=threads,
        progress=show_progress(quiet),
        pif=detector,
        pif_dir=pif_dir,
        cache=(cache_dir or True) if cache else False,
    )
    return model, collection
