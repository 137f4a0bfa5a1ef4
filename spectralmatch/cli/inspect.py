"""``spectralmatch inspect``: print what a saved model does."""

from __future__ import annotations

import click

from .options import report_errors


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@report_errors
def inspect(model_path: str) -> None:
    """Print the gains and offsets of a saved MODEL, and how far apart its overlaps were
    before and after the fit (the table `spectralmatch match` ends with).

    \b
    Example:
      spectralmatch inspect model.json
    """
    from ..model.pipeline import Mosaic
    from ..report.summary import fit_summary

    click.echo(fit_summary(Mosaic.load(model_path)))
