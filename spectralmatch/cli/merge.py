"""``spectralmatch merge``: one raster from images on one grid."""

from __future__ import annotations

import click

from .options import inputs_command, output_file_option, write_options


@inputs_command
@output_file_option("The mosaic to write.")
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
@write_options
def merge(inputs, out_path, seamlines, field, feather, report, cog):
    """Merge INPUTS (on one grid) into one raster.

    Without --seamlines the first valid value in input order wins.

    \b
    Example:
      spectralmatch merge aligned/ -o mosaic.tif --seamlines seams.gpkg --feather 8 --report
    """
    from ..ops.merge import merge_rasters

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
        from ..report.metrics import seam_contrast

        contrast = seam_contrast(out_path, seamlines, field)
        click.echo("seam contrast per band: " + " ".join(f"{value:.3f}" for value in contrast))
