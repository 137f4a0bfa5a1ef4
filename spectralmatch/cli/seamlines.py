"""``spectralmatch seamlines``: one polygon per image, no gaps, no overlaps."""

from __future__ import annotations

import click

from .options import inputs_command, output_file_option


@inputs_command
@output_file_option("Vector file to write (e.g. seams.gpkg).")
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
def seamlines(inputs, out_path, field, method):
    """Seamlines of INPUTS: one polygon per image, no gaps, no overlaps.

    \b
    Example:
      spectralmatch seamlines matched/ -o seams.gpkg --method least-cost
    """
    from ..ops.seamline import Seamline

    build = Seamline.voronoi if method == "voronoi" else Seamline.least_cost
    build(list(inputs)).to_file(out_path, field)
