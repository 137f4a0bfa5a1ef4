"""``spectralmatch merge``: one raster, or a folder of tiles, from images in one CRS."""

from __future__ import annotations

import os

import click

from .align import resolution_option
from .options import inputs_command, write_options


@inputs_command
@click.option(
    "--output",
    "-o",
    "out_path",
    required=True,
    type=click.Path(),
    help="The mosaic to write (with --tiles, the folder of tiles).",
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
    "differences across cuts over those beside them (within 3 px), per band; ~1 = unseen.",
)
@click.option(
    "--resolution",
    default="highest",
    show_default=True,
    callback=resolution_option,
    help="Pixel size of the mosaic: highest, lowest, average, or X[,Y] in CRS units.",
)
@click.option(
    "--resampling",
    default="nearest",
    show_default=True,
    type=click.Choice(("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average")),
    help="How images not on the mosaic's grid are resampled.",
)
@click.option(
    "--tiles",
    is_flag=True,
    help="Write tiles mosaic_<row>_<col>.tif into the folder OUTPUT, and a VRT over them.",
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=1),
    default=None,
    help="Tile width and height in pixels (with --tiles) [default: 256].",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Pixels shared by neighbouring tiles (with --tiles).",
)
@click.option(
    "--tiles-csv",
    default=None,
    metavar="NAME.csv",
    help="Also write a tile index (name;minx;maxx;miny;maxy) of this name (with --tiles).",
)
@click.option(
    "--vrt",
    default="MergedImage.vrt",
    show_default=True,
    metavar="NAME.vrt",
    help="File name of the VRT over the tiles (with --tiles).",
)
@click.option(
    "--overviews",
    is_flag=True,
    help="Build overviews (2, 4, 8, 16, 32) in the mosaic, or with --tiles a pyramid of "
    "tiles in the sub-folders 1, 2, ... (their VRTs are the top VRT's overviews).",
)
@write_options
def merge(
    inputs,
    out_path,
    seamlines,
    field,
    feather,
    report,
    resolution,
    resampling,
    tiles,
    tile_size,
    overlap,
    tiles_csv,
    vrt,
    overviews,
    cog,
):
    """Merge INPUTS (in one CRS) into one raster, or into tiles with --tiles.

    Without --seamlines the first valid value in input order wins. Images off the
    mosaic's grid are resampled onto it.

    \b
    Examples:
      spectralmatch merge aligned/ -o mosaic.tif --seamlines seams.gpkg --feather 8 --report
      spectralmatch merge aligned/ -o tiles/ --tiles --tile-size 512 --overlap 16
    """
    from ..ops.merge import merge_rasters

    if report and not seamlines:
        raise click.UsageError("--report needs --seamlines")
    if report and tiles:
        raise click.UsageError("--report needs a single mosaic, not --tiles")
    if tile_size and not tiles:
        raise click.UsageError("--tile-size needs --tiles")
    if not tiles and os.path.isdir(out_path):
        raise click.BadParameter(
            f"File {out_path!r} is a directory (use --tiles to write tiles there).",
            param_hint="'--output' / '-o'",
        )
    merge_rasters(
        list(inputs),
        out_path,
        seamlines=seamlines,
        feather=feather,
        image_field=field,
        resolution=resolution,
        resampling_method=resampling,
        output_tiles=tiles,
        overlap=overlap,
        custom_tiles_csv=tiles_csv,
        create_vrts=vrt,
        window_size=tile_size,
        build_overviews=overviews,
        save_as_cog=cog,
    )
    if report:
        from ..report.metrics import seam_contrast

        contrast = seam_contrast(out_path, seamlines, field)
        click.echo("seam contrast per band: " + " ".join(f"{value:.3f}" for value in contrast))
