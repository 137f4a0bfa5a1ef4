"""``spectralmatch match``: fit a model on images and write them matched."""

from __future__ import annotations

import click

from .options import (
    INPUTS_HELP,
    build_model,
    engine_options,
    exclude_option,
    local_options,
    reference_option,
    report_errors,
    write_options,
)


@click.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; outputs keep the input file names.",
)
@reference_option
@click.option(
    "--save-model", type=click.Path(dir_okay=False), help="Also save the fitted model (JSON) there."
)
@exclude_option
@local_options
@write_options
@engine_options
@report_errors
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
    model, collection = build_model(
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
