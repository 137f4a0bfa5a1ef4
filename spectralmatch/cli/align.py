"""``spectralmatch align``: put images on one pixel grid."""

from __future__ import annotations

import click

from .options import inputs_command, output_folder_option, write_options


def resolution_option(context, parameter, value: str):
    """``--resolution``: a keyword, or X[,Y] in CRS units."""
    if value is None or value in ("highest", "lowest", "average"):
        return value
    try:
        x, _, y = value.partition(",")
        return float(x), float(y or x)
    except ValueError:
        raise click.BadParameter("highest, lowest, average, or X[,Y]") from None


@inputs_command
@output_folder_option
@click.option(
    "--resolution",
    default=None,
    callback=resolution_option,
    help="Pixel size: highest, lowest, average, or X[,Y] in CRS units [default: the "
    "finest of the images already in the target CRS].",
)
@click.option(
    "--dst-crs",
    default=None,
    metavar="CRS",
    help="Reproject to this CRS (EPSG:32621, a WKT...) [default: the images' most common CRS].",
)
@click.option(
    "--tap/--no-tap",
    default=False,
    show_default=True,
    help="Grid lines on multiples of the pixel size (target-aligned pixels) instead of "
    "through the first image's corner.",
)
@click.option(
    "--resampling",
    default="nearest",
    show_default=True,
    type=click.Choice(("nearest", "bilinear", "cubic", "average", "mode")),
)
@write_options
def align(inputs, out_dir, resolution, dst_crs, tap, resampling, cog):
    """Put INPUTS on one pixel grid (one CRS, one pixel size) and write them to OUTPUT.

    \b
    Example:
      spectralmatch align scenes/ -o aligned/ --dst-crs EPSG:32621
    """
    from ..ops.align import align_rasters

    align_rasters(
        list(inputs),
        out_dir,
        crs=dst_crs,
        resolution=resolution,
        tap=tap,
        resampling_method=resampling,
        save_as_cog=cog,
    )
