"""``spectralmatch transform``: apply a saved model to images."""

from __future__ import annotations

import click

from .options import (
    engine_options,
    inputs_command,
    output_folder_option,
    show_progress,
    write_options,
)


@inputs_command
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A model saved by fit or match.",
)
@output_folder_option
@click.option(
    "--update-model",
    is_flag=True,
    help="Save the model back with the parameters solved for new images.",
)
@write_options
@engine_options
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
    from ..model.pipeline import Mosaic
    from ..raster.collection import ImageCollection

    model = Mosaic.load(model_path).set_params(
        threads=threads,
        window_size=window_size,
        progress=show_progress(quiet),
        cache=(cache_dir or True) if cache else False,
    )
    written = model.transform(ImageCollection.from_paths(inputs), out_dir, cog=cog)
    if update_model:
        model.save(model_path)
    if not quiet:
        click.echo(f"transformed {len(written)} images into {out_dir}", err=True)
