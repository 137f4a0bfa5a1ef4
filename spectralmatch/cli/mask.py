"""``spectralmatch mask``: set pixels outside or inside polygons to nodata."""

from __future__ import annotations

import click

from .options import inputs_command, output_folder_option, write_options


@inputs_command
@output_folder_option
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
@write_options
def mask(inputs, out_dir, vector, mode, field, cog):
    """Set the pixels of INPUTS outside (or inside) polygons to nodata.

    \b
    Example:
      spectralmatch mask aligned/ -o clipped/ --vector seams.gpkg --field image
    """
    from ..ops.clip import mask_rasters

    vector_mask = (mode, vector, field) if field else (mode, vector)
    mask_rasters(list(inputs), out_dir, vector_mask=vector_mask, save_as_cog=cog)
