"""``spectralmatch fit``: fit a model on images and save it."""

from __future__ import annotations

from typing import Any

import click

from .options import build_model, engine_options, inputs_command, model_options


@inputs_command
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to save the fitted model (JSON).",
)
@model_options
@engine_options
def fit(inputs: tuple[str, ...], model_path: str, **options: Any) -> None:
    """Fit a model on INPUTS and save it, without writing images.

    \b
    Example:
      spectralmatch fit data/ --model model.json
    """
    model, collection = build_model(inputs, options)
    model.fit(collection).save(model_path)
    if not options["quiet"]:
        click.echo(f"fitted {len(collection)} images; model saved to {model_path}", err=True)
