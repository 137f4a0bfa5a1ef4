"""``spectralmatch transform``: apply a saved model to images."""

from __future__ import annotations

import click

from ..raster.lock import folder_lock
from .options import (
    correction_write_options,
    engine_executor,
    engine_options,
    inputs_command,
    output_folder_option,
    show_progress,
    write_settings,
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
@correction_write_options
@engine_options
def transform(inputs, model_path, out_dir, update_model, **options):
    """Apply a saved model to INPUTS and write them to OUTPUT.

    Images that were not in the fit (new scenes) are first solved against the frozen
    model through their overlaps with the fitted images.

    \b
    Example:
      spectralmatch transform new_scene.tif --model model.json -o matched/
    """
    from ..model.pipeline import Mosaic
    from ..raster.collection import ImageCollection, resolve_paths
    from ..raster.image import Image

    model = Mosaic.load(model_path).set_params(
        threads=options["threads"],
        executor=engine_executor(options),
        window_size=options["window_size"],
        progress=show_progress(options["quiet"]),
        cache=(options["cache_dir"] or True) if options["cache"] else False,
    )
    images = [Image(path, nodata=options["nodata"]) for path in resolve_paths(list(inputs))]
    with folder_lock([out_dir]):
        written = model.transform(ImageCollection(images), out_dir, **write_settings(options))
    if update_model:
        model.save(model_path)
    if not options["quiet"]:
        click.echo(f"transformed {len(written)} images into {out_dir}", err=True)
