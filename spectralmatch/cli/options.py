"""Options shared by the commands, the model they build, and how errors are reported."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any, Literal, get_args

import click
from rasterio.errors import NotGeoreferencedWarning

from .._interrupt import Interrupted, raise_on_sigterm
from .._typing import DEFAULT_STEPS, Correction, OutputDtype, StepName, WorkingDtype
from ..errors import SpectralMatchError
from .masking import band_roles, fit_mask

CORRECTIONS = get_args(Correction)
WORKING_DTYPES = get_args(WorkingDtype)
OUTPUT_DTYPES = get_args(OutputDtype)
STEP_NAMES = get_args(StepName)

INPUTS_HELP = "INPUTS are raster files, glob patterns or folders (their .tif files)."

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def report_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into a one-line error and exit code 1, warnings into
    one-line notices, and an interrupt (SIGINT, SIGTERM) into one line and the shell's
    exit code (130, 143) once the running tasks have stopped and cleaned up."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..raster.image import GDAL_ERRORS

        raise_on_sigterm()
        _quiet_gdal_log()
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                # rasterize's in-memory dataset is georeferenced only after it is made:
                # we always give it a transform, so the note is noise here
                warnings.filterwarnings(
                    "ignore", category=NotGeoreferencedWarning, module="rasterio.features"
                )
                return command(*args, **kwargs)
        except (SpectralMatchError, *GDAL_ERRORS) as error:
            raise click.ClickException(str(error).splitlines()[0]) from None
        except KeyboardInterrupt as error:
            signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
            click.echo(
                f"spectralmatch: stopped by {signal.Signals(signum).name}; complete outputs "
                "were kept, partial ones removed",
                err=True,
            )
            raise click.exceptions.Exit(128 + signum) from None

    return wrapper


def _quiet_gdal_log() -> None:
    """GDAL's messages reach the user as the one-line error of the failure they cause,
    not also as bare lines from Python's last-resort log handler (unless the user
    configured logging)."""
    logger = logging.getLogger("rasterio")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"Warning: {str(message).splitlines()[0]}", err=True)


def inputs_command(function: Callable[..., Any]) -> click.Command:
    """A command whose arguments are INPUTS (raster files, globs, folders), with expected
    failures reported in one line (exit code 1)."""
    inputs = click.argument("inputs", nargs=-1, required=True)
    return click.command(epilog=INPUTS_HELP)(inputs(report_errors(function)))


output_folder_option = click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; outputs keep the input file names.",
)


def output_file_option(help: str) -> Decorator:
    """``--output`` / ``-o``: one file to write."""
    return click.option(
        "--output", "-o", "out_path", required=True, type=click.Path(dir_okay=False), help=help
    )


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _apply(options: list[Decorator]) -> Decorator:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _step_list(context: click.Context, parameter: click.Parameter, value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STEP_NAMES]
    if unknown or not names:
        raise click.BadParameter(
            f"a comma-separated list of {', '.join(STEP_NAMES)}, got {value!r}"
        )
    return names


engine_options = _apply(
    [
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="Workers running at once [default: number of CPUs].",
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
            "--nodata",
            type=float,
            default=None,
            help="Take this value as nodata in every input (overrides the files' own); "
            "without it, an input with neither a nodata value nor a mask is taken as "
            "valid everywhere.",
        ),
        click.option(
            "--processes",
            is_flag=True,
            help="Run the tasks in worker processes instead of threads: faster for "
            "hundreds of small images, whose statistics keep Python busy; slower for a "
            "few large ones, which pay for starting the processes.",
        ),
        click.option(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Run the work on a Dask cluster: a running scheduler's address "
            "(tcp://HOST:PORT), or local:N to start N local worker processes "
            "(needs spectralmatch[dask]).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Cache folder [default: $SPECTRALMATCH_CACHE or ~/.cache/spectralmatch].",
        ),
    ]
)

model_options = _apply(
    [
        click.option(
            "--reference",
            "-r",
            "references",
            multiple=True,
            metavar="NAME",
            help="Reference image (file name, stem or path), kept unchanged; repeatable. "
            "Default: match to the collection's central tendency.",
        ),
        click.option(
            "--steps",
            default=",".join(DEFAULT_STEPS),
            show_default=True,
            callback=_step_list,
            help="The model's steps, in order: global (a gain and offset per image and "
            "band), histogram (a monotone curve per image and band), local (block "
            "adjustment).",
        ),
        click.option(
            "--local/--no-local",
            default=True,
            show_default=True,
            help="Keep the local step of --steps (--no-local drops it).",
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
        click.option(
            "--robust",
            is_flag=True,
            help="Down-weight overlaps that disagree with the rest (robust IRLS).",
        ),
        click.option(
            "--exclude",
            "exclude",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False),
            help="Raster (non-zero pixels) or vector file (polygons) of areas to leave out "
            "of the fit, e.g. clouds or water; repeatable.",
        ),
        click.option(
            "--mask-expression",
            "mask_expressions",
            multiple=True,
            metavar="EXPR",
            help="Leave out the pixels where EXPR is true, e.g. 'B1 > 9000 && B3 > 8000' "
            "(bands B1..Bn or their descriptions; + - * / ^, comparisons, && || !, "
            "c ? a : b, abs, sqrt, ln, min, max); repeatable.",
        ),
        click.option(
            "--mask-ndvi",
            metavar="CONDITION",
            default=None,
            help="Leave out the pixels whose NDVI meets CONDITION, e.g. '>0.5' (dense "
            "vegetation) or '<0' (water); needs the red and nir bands (--bands, or band "
            "descriptions naming them).",
        ),
        click.option(
            "--mask-cloud",
            is_flag=True,
            help="Leave out clouds and their shadows, found by an offline spectral test "
            "(brightness, whiteness, haze; NIR and SWIR where known); needs the blue, green "
            "and red bands (--bands, or band descriptions naming them).",
        ),
        click.option(
            "--bands",
            "band_roles",
            callback=band_roles,
            metavar="ROLE=N,...",
            default=None,
            help="Which band is which, e.g. 'red=1,green=2,blue=3,nir=4' [default: read "
            "from the band descriptions].",
        ),
        click.option(
            "--pif",
            type=click.Choice(("auto", "residual", "irmad")),
            default="auto",
            show_default=True,
            help="How changed pixels (land cover that changed, clouds) are found and left "
            "out of the fit: auto (outlying cells of the one statistics pass, no second "
            "read), residual (a robust residual test) or irmad (IR-MAD); the last two "
            "read the overlaps again.",
        ),
        click.option(
            "--no-pif",
            is_flag=True,
            help="Fit on every overlap pixel: no change detection.",
        ),
        click.option(
            "--pif-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Keep the change masks found by --pif there (<image>.tif on the image's "
            "grid, 1 = changed).",
        ),
    ]
)


def write_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--cog", is_flag=True, help="Write Cloud Optimized GeoTIFFs.")(command)


correction_write_options = _apply(
    [
        write_options,
        click.option(
            "--output-dtype",
            type=click.Choice(OUTPUT_DTYPES),
            default=None,
            help="Data type of the outputs [default: each input's own; required when the "
            "inputs' types differ].",
        ),
        click.option(
            "--working-dtype",
            type=click.Choice(WORKING_DTYPES),
            default=None,
            help="Precision of the computation [default: float64 for float64 and 32-bit "
            "integer data, float32 otherwise].",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help="Keep the outputs an interrupted run of the same model and settings "
            "completed (checked by size and checksum); write only the others.",
        ),
    ]
)


def write_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The keywords of ``Mosaic.transform`` that :data:`correction_write_options` set."""
    return {
        "cog": options["cog"],
        "output_dtype": options["output_dtype"],
        "working_dtype": options["working_dtype"],
        "resume": options["resume"],
    }


def engine_executor(options: dict[str, Any]) -> Any:
    """The executor of :data:`engine_options`: threads, processes with ``--processes``,
    or with ``--scheduler`` a Dask executor, its cluster or connection closed when the
    command ends."""
    if options["scheduler"] is None:
        return "processes" if options["processes"] else "threads"
    if options["processes"]:
        raise click.UsageError("--processes and --scheduler exclude each other")
    from ..engine.dask import cli_executor

    return click.get_current_context().with_resource(cli_executor(options["scheduler"]))


def build_model(inputs: tuple[str, ...], options: dict[str, Any]) -> tuple[Any, Any]:
    """The model and the collection the options of :data:`model_options` and
    :data:`engine_options` describe."""
    from ..model.pif import IRMAD, ChangeDetector, ResidualPIF
    from ..model.pipeline import STEP_CLASSES, Mosaic
    from ..raster.collection import ImageCollection, resolve_paths
    from ..raster.image import Image

    paths = resolve_paths(list(inputs))
    collection = ImageCollection(
        [
            Image(
                path,
                mask=fit_mask(Image(path, nodata=options["nodata"]), options),
                nodata=options["nodata"],
            )
            for path in paths
        ]
    )
    named = [collection.names[collection.index(key)] for key in options["references"]]
    reference = named or None
    settings = {
        "global": {"reference": reference, "robust": options["robust"]},
        "histogram": {"reference": reference},
        "local": {
            "reference": reference,
            "block_size": options["block_size"],
            "correction": options["correction"],
        },
    }
    names = [n for n in options["steps"] if options["local"] or n != "local"]
    if not names:
        raise SpectralMatchError("--no-local leaves no step; give --steps global (or histogram)")
    steps = [STEP_CLASSES[name]().set_params(**settings[name]) for name in names]
    detectors: dict[str, ChangeDetector | Literal["auto"]] = {
        "auto": "auto",
        "residual": ResidualPIF(),
        "irmad": IRMAD(),
    }
    model = Mosaic(
        steps=steps,
        window_size=options["window_size"],
        threads=options["threads"],
        executor=engine_executor(options),
        progress=show_progress(options["quiet"]),
        pif=None if options["no_pif"] else detectors[options["pif"]],
        pif_dir=options["pif_dir"],
        cache=(options["cache_dir"] or True) if options["cache"] else False,
    )
    return model, collection
