"""``spectralmatch fit``: fit a model on images and save it."""

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
)


@click.command(epilog=INPUTS_HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to save the fitted model (JSON).",
)
@reference_option
@exclude_option
@local_options
@engine_options
@report_errors
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
    model.fit(collection).save(model_path)
    if not quiet:
        click.echo(f"fitted {len(collection)} images; model saved to {model_path}", err=True)
