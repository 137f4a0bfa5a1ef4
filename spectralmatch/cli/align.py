"""``spectralmatch align``: put images on one pixel grid."""

from __future__ import annotations

import click

from .options import inputs_command, output_folder_option, write_options


def _resolution(context, parameter, value: str):
    """``--resolution``: a keyword, or X[,Y] in CRS units."""
    if value in ("highest", "lowest", "average"):
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
@write_options
def align(inputs, out_dir, resolution, tap, resampling, cog):
    """Put INPUTS on one pixel grid and write them to OUTPUT.

    \b
    Example:
      spectralmatch align matched/ -o aligned/ --resolution highest
    """
    from ..ops.align import align_rasters

    align_rasters(
        list(inputs),
        out_dir,
        resolution=resolution,
        tap=tap,
        resampling=resampling,
        save_as_cog=cog,
    )
