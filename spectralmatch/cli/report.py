"""``spectralmatch report``: figures and one HTML page comparing images before and after."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import SpectralMatchError
from .options import inputs_command


def report_option(command: Any) -> Any:
    """``--report DIR``: also write the HTML report there."""
    return click.option(
        "--report",
        "report_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Also write figures (PNG) and a self-contained page (index.html) comparing "
        "the images before and after into this folder.",
    )(command)


def command_line() -> str:
    """The command line that is running, as the user could type it again."""
    program = click.get_current_context().find_root().info_name or "spectralmatch"
    return shlex.join([program, *sys.argv[1:]])


def write_html_report(
    inputs: list[Path],
    outputs: list[Path],
    report_dir: str,
    model: Any,
    nodata: float | None,
    commands: list[str] | None = None,
) -> Path:
    """Write the report of ``inputs`` (before) against ``outputs`` (after); the page lists
    ``commands`` as what made it (default: the command line running)."""
    from ..raster.collection import ImageCollection
    from ..raster.image import Image
    from ..report.html import write_report

    def collection(paths: list[Path]) -> ImageCollection:
        return ImageCollection([Image(path, nodata=nodata) for path in paths])

    return write_report(
        collection(inputs), collection(outputs), report_dir, commands or [command_line()], model
    )


@inputs_command
@click.option(
    "--matched",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of the matched images (as match -o wrote them: the inputs' file names).",
)
@click.option(
    "--output",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Report folder: figures (PNG) and index.html.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The model that matched them (saved by fit or match --save-model), to list its "
    "parameters.",
)
@click.option(
    "--nodata",
    type=float,
    default=None,
    help="Take this value as nodata in every image (overrides the files' own).",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not say what was written.")
def report(inputs, matched, out_dir, model_path, nodata, quiet):
    """Compare INPUTS with their matched versions in MATCHED: write figures and one
    self-contained HTML page (no network, no external file) into OUTPUT.

    \b
    Example:
      spectralmatch report data/*.tif --matched matched/ -o report/ --model model.json
    """
    from ..model.pipeline import Mosaic
    from ..raster.collection import resolve_paths

    paths = resolve_paths(list(inputs))
    outputs = [Path(matched) / path.name for path in paths]
    missing = [str(path) for path in outputs if not path.is_file()]
    if missing:
        raise SpectralMatchError(
            f"report: no matched image {', '.join(missing)} (the inputs' file names in "
            f"--matched {matched})"
        )
    model = Mosaic.load(model_path) if model_path else None
    page = write_html_report(paths, outputs, out_dir, model, nodata)
    if not quiet:
        click.echo(f"wrote the report {page}", err=True)
