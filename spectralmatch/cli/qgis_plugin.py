"""``spectralmatch qgis-plugin``: build the installable QGIS plugin zip."""

from __future__ import annotations

import click

from .options import report_errors


@click.command("qgis-plugin")
@click.option(
    "--output",
    "-o",
    "out_path",
    default="spectralmatch.zip",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The plugin zip to write.",
)
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False),
    help="A wheel of the library for the plugin to carry and install [default: one made "
    "of this library as installed].",
)
@report_errors
def qgis_plugin(out_path: str, wheel: str | None) -> None:
    """Build the QGIS Processing plugin as a zip to install in QGIS (Plugins > Manage and
    Install Plugins > Install from ZIP).

    The zip carries a wheel of the library, which the plugin's algorithm "Install or
    update the spectralmatch library" installs into QGIS's Python by default.

    \b
    Example:
      spectralmatch qgis-plugin -o spectralmatch.zip
    """
    from ..qgis.build import build_plugin

    click.echo(f"wrote the QGIS plugin {build_plugin(out_path, wheel)}", err=True)
