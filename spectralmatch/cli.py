"""The ``spectralmatch`` command line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import click

from ._version import __version__
from .block_map import CORRECTIONS
from .errors import SpectralMatchError

INPUTS_HELP = "INPUTS are raster files, glob patterns or folders (their .tif files)."


def _report_errors(command: Callable) -> Callable:
    """Turn expected failures into a one-line error and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import rasterio.errors

        try:
            return command(*args, **kwargs)
        except (SpectralMatchError, rasterio.errors.RasterioError, OSError) as error:
            raise click.ClickException(str(error).splitlines()[0]) from None

    return wrapper


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _engine_options(command: Callable) -> Callable:
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


def _reference_option(command: Callable) -> Callable:
    return click.option(
        "--reference",
        "-r",
        "references",
        multiple=True,
        metavar="NAME",
        help="Reference image (file name, stem or path), kept unchanged; repeatable. "
        "Default: match to the collection's central tendency.",
    )(command)


def _write_options(command: Callable) -> Callable:
    return click.option("--cog", is_flag=True, help="Write Cloud Optimized GeoTIFFs.")(command)


def _local_options(command: Callable) -> Callable:
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


def _exclude_option(command: Callable) -> Callable:
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


def _build_model(
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
    from .block_map import BlockMap
    from .collection import ImageCollection, resolve_paths
    from .global_model import GlobalModel
    from .image import Image
    from .mosaic import Mosaic

    collection = ImageCollection([Image(path, mask=exclude) for path in resolve_paths(inputs)])
    reference = [collection.names[collection.index(key)] for key in references] or None
    steps = [GlobalModel(reference=reference, robust=robust)]
    if local:
        steps.append(BlockMap(block_size=block_size, correction=correction, reference=reference))
    from .pif import IRMAD, ResidualPIF

    detector = {"residual": ResidualPIF, "irmad": IRMAD}[pif]() if pif else None
    model = Mosaic(
        steps,
        window_size=window_size,
        threads=threads,
        progress=_show_progress(quiet),
        pif=detector,
        pif_dir=pif_dir,
        cache=(cache_dir or True) if cache else False,
    )
    return model, collection


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spectralmatch")
def main() -> None:
    """Relative radiometric normalization of raster mosaics and time series.

    \b
    Example:
      spectralmatch match data/ -o matched/
    """


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; outputs keep the input file names.",
)
@_reference_option
@click.option(
    "--save-model", type=click.Path(dir_okay=False), help="Also save the fitted model (JSON) there."
)
@_exclude_option
@_local_options
@_write_options
@_engine_options
@_report_errors
def match(
    inputs,
    out_dir,
    references,
    save_model,
    exclude,
    robust,
    pif_dir,
    pif,
    local,
    block_size,
    correction,
    cog,
    threads,
    window_size,
    quiet,
    cache,
    cache_dir,
):
    """Fit a model on INPUTS and write the matched images to OUTPUT.

    \b
    Example:
      spectralmatch match data/*.tif -o matched/ --reference tile_00
    """
    model, collection = _build_model(
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
    )
    model.fit(collection)
    if save_model:
        model.save(save_model)
    written = model.transform(collection, out_dir, cog=cog)
    if not quiet:
        click.echo(f"matched {len(written)} images into {out_dir}", err=True)


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to save the fitted model (JSON).",
)
@_reference_option
@_exclude_option
@_local_options
@_engine_options
@_report_errors
def fit(
    inputs,
    model_path,
    references,
    exclude,
    robust,
    pif_dir,
    pif,
    local,
    block_size,
    correction,
    threads,
    window_size,
    quiet,
    cache,
    cache_dir,
):
    """Fit a model on INPUTS and save it, without writing images.

    \b
    Example:
      spectralmatch fit data/ --model model.json
    """
    model, collection = _build_model(
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
    )
    model.fit(collection).save(model_path)
    if not quiet:
        click.echo(f"fitted {len(collection)} images; model saved to {model_path}", err=True)


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A model saved by fit or match.",
)
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; outputs keep the input file names.",
)
@click.option(
    "--update-model",
    is_flag=True,
    help="Save the model back with the parameters solved for new images.",
)
@_write_options
@_engine_options
@_report_errors
def transform(
    inputs, model_path, out_dir, update_model, cog, threads, window_size, quiet, cache, cache_dir
):
    """Apply a saved model to INPUTS and write them to OUTPUT.

    Images that were not in the fit (new scenes) are first solved against the frozen
    model through their overlaps with the fitted images.

    \b
    Example:
      spectralmatch transform new_scene.tif --model model.json -o matched/
    """
    from .collection import ImageCollection
    from .mosaic import Mosaic

    model = Mosaic.load(model_path).set_params(
        threads=threads,
        window_size=window_size,
        progress=_show_progress(quiet),
        cache=(cache_dir or True) if cache else False,
    )
    written = model.transform(ImageCollection.from_paths(inputs), out_dir, cog=cog)
    if update_model:
        model.save(model_path)
    if not quiet:
        click.echo(f"transformed {len(written)} images into {out_dir}", err=True)


def _resolution(context, parameter, value: str):
    """``--resolution``: a keyword, or X[,Y] in CRS units."""
    if value in ("highest", "lowest", "average"):
        return value
    try:
        x, _, y = value.partition(",")
        return float(x), float(y or x)
    except ValueError:
        raise click.BadParameter("highest, lowest, average, or X[,Y]") from None


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; outputs keep the input file names.",
)
@click.option(
    "--resolution",
    default="highest",
    show_default=True,
    callback=_resolution,
    help="Pixel size: highest, lowest, average, or X[,Y] in CRS units.",
)
@click.option(
    "--tap/--no-tap",
    default=True,
    show_default=True,
    help="Grid lines on multiples of the pixel size (target-aligned pixels).",
)
@click.option(
    "--resampling",
    default="nearest",
    show_default=True,
    type=click.Choice(("nearest", "bilinear", "cubic", "average", "mode")),
)
@_write_options
@_report_errors
def align(inputs, out_dir, resolution, tap, resampling, cog):
    """Put INPUTS on one pixel grid and write them to OUTPUT.

    \b
    Example:
      spectralmatch align matched/ -o aligned/ --resolution highest
    """
    from .ops import align_rasters

    align_rasters(
        list(inputs),
        out_dir,
        resolution=resolution,
        tap=tap,
        resampling=resampling,
        save_as_cog=cog,
    )


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Vector file to write (e.g. seams.gpkg).",
)
@click.option(
    "--field", default="image", show_default=True, help="Field holding each polygon's image name."
)
@click.option(
    "--method",
    type=click.Choice(("voronoi", "least-cost")),
    default="voronoi",
    show_default=True,
    help="Nearest footprint centre, or cuts moved to where the images differ least.",
)
@_report_errors
def seamlines(inputs, out_path, field, method):
    """Seamlines of INPUTS: one polygon per image, no gaps, no overlaps.

    \b
    Example:
      spectralmatch seamlines matched/ -o seams.gpkg --method least-cost
    """
    from .seamline import Seamline

    build = Seamline.voronoi if method == "voronoi" else Seamline.least_cost
    build(list(inputs)).to_file(out_path, field)


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; outputs keep the input file names.",
)
@click.option(
    "--vector",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Polygons to clip by.",
)
@click.option(
    "--mode",
    type=click.Choice(("include", "exclude")),
    default="include",
    show_default=True,
    help="Keep the pixels inside (include) or outside.",
)
@click.option(
    "--field", default=None, help="Use only the features whose FIELD holds the image's name."
)
@_write_options
@_report_errors
def mask(inputs, out_dir, vector, mode, field, cog):
    """Set the pixels of INPUTS outside (or inside) polygons to nodata.

    \b
    Example:
      spectralmatch mask aligned/ -o clipped/ --vector seams.gpkg --field image
    """
    from .ops import mask_rasters

    vector_mask = (mode, vector, field) if field else (mode, vector)
    mask_rasters(list(inputs), out_dir, vector_mask=vector_mask, save_as_cog=cog)


@main.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The mosaic to write.",
)
@click.option(
    "--seamlines",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Polygons (one per image, field --field) placing each image.",
)
@click.option(
    "--field",
    default="image",
    show_default=True,
    help="Field of --seamlines holding the image names.",
)
@click.option(
    "--feather",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Blend across cut lines over this many pixels.",
)
@click.option(
    "--report",
    is_flag=True,
    help="Print how visible the cut lines are (needs --seamlines): neighbour "
    "differences across cuts over those inside images, per band; ~1 = unseen.",
)
@_write_options
@_report_errors
def merge(inputs, out_path, seamlines, field, feather, report, cog):
    """Merge INPUTS (on one grid) into one raster.

    Without --seamlines the first valid value in input order wins.

    \b
    Example:
      spectralmatch merge aligned/ -o mosaic.tif --seamlines seams.gpkg --feather 8 --report
    """
    from .ops import merge_rasters

    if report and not seamlines:
        raise click.UsageError("--report needs --seamlines")
    merge_rasters(
        list(inputs),
        out_path,
        seamlines=seamlines,
        feather=feather,
        image_field=field,
        save_as_cog=cog,
    )
    if report:
        from .metrics import seam_contrast

        contrast = seam_contrast(out_path, seamlines, field)
        click.echo("seam contrast per band: " + " ".join(f"{value:.3f}" for value in contrast))


if __name__ == "__main__":  # pragma: no cover
    main()
