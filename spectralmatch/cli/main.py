"""The ``spectralmatch`` command group; each command lives in its own module."""

from __future__ import annotations

import os

import click

from .._version import __version__
from ..engine.heap import keep_freed_windows, limit_malloc_arenas
from .align import align
from .fit import fit
from .functions import function_commands
from .inspect import inspect
from .mask import mask
from .match import match
from .merge import merge
from .qgis_plugin import qgis_plugin
from .report import report
from .seamlines import seamlines
from .transform import transform


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spectralmatch")
def main() -> None:
    """Relative radiometric normalization of raster mosaics and time series.

    \b
    Example:
      spectralmatch match data/ -o matched/

    The commands with underscores (and Match, Seamline, Pif) are the function API, called as
    the published package's command line calls them:
    spectralmatch pipeline data/ mosaic.tif --shared_debug_logs=True
    """
    # this process is the command's own: its threads share as many arenas as cores,
    # which keep the windows they free for the next ones
    limit_malloc_arenas(os.cpu_count() or 1)
    keep_freed_windows()


for command in (
    match,
    fit,
    transform,
    inspect,
    align,
    seamlines,
    mask,
    merge,
    report,
    qgis_plugin,
    *function_commands(),
):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
