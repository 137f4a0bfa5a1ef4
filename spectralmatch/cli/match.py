"""``spectralmatch match``: fit a model on images and write them matched."""

from __future__ import annotations

from typing import Any

import click

from ..raster.lock import folder_lock
from .options import (
    build_model,
    correction_write_options,
    engine_options,
    inputs_command,
    model_options,
    output_folder_option,
    write_settings,
)
from .report import report_option, write_html_report


@inputs_command
@output_folder_option
@click.option(
    "--save-model", type=click.Path(dir_okay=False), help="Also save the fitted model (JSON) there."
)
@report_option
@model_options
@correction_write_options
@engine_options
def match(
    inputs: tuple[str, ...],
    out_dir: str,
    save_model: str | None,
    report_dir: str | None,
    **options: Any,
) -> None:
    """Fit a model on INPUTS and write the matched images to OUTPUT; then print the
    fitted gains and offsets and the overlaps' differences before and after (not with
    --quiet).

    \b
    Example:
      spectralmatch match data/*.tif -o matched/ --reference tile_00 --report report/
    """
    model, collection = build_model(inputs, options)
    with folder_lock([out_dir]):
        model.fit(collection)
        if save_model:
            model.save(save_model)
        written = model.transform(collection, out_dir, **write_settings(options))
    if not options["quiet"]:
        from ..report.summary import fit_summary

        click.echo(f"matched {len(written)} images into {out_dir}", err=True)
        click.echo(fit_summary(model))
    if report_dir:
        page = write_html_report(
            [image.path for image in collection],
            [image.path for image in written],
            report_dir,
            model,
            options["nodata"],
        )
        if not options["quiet"]:
            click.echo(f"wrote the report {page}", err=True)
