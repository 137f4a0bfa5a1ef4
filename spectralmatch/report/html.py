"""One self-contained HTML page of a normalization: figures (embedded PNG), tables of
numbers, the model's parameters and the commands that made it.

The page needs no network, no external file and no JavaScript. Its one inline script
only copies, once the page has loaded, the natural width of every figure and the text of
every table cell into the hidden element ``#page-check``, so that a headless browser can
tell whether the page rendered.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np
from attrs import frozen

from ..errors import SpectralMatchError
from ..raster.collection import ImageCollection
from ..raster.image import Image
from .figures import (
    plot_block_surfaces,
    plot_disagreement,
    plot_histograms,
    plot_overlap_graph,
    plot_spectral_profiles,
)
from .metrics import OverlapDifference, overlap_differences
from .plots import plot_before_after

if TYPE_CHECKING:
    from ..model.pipeline import Mosaic

NUMBER_FORMAT = "{:.2f}"
"""How the tables print image values (means, differences)."""

PARAMETER_FORMAT = "{:.4f}"
"""How the tables print gains and offsets."""

FigureMaker = Callable[[ImageCollection, ImageCollection, Path], Path]


def _disagreement_after(before: ImageCollection, after: ImageCollection, path: Path) -> Path:
    return plot_disagreement(after, path)


FIGURES: list[tuple[str, str, FigureMaker]] = [
    (
        "Quick-look before and after (one stretch, from after)",
        "before_after.png",
        plot_before_after,
    ),
    ("Mean spectral profile of every image", "profiles.png", plot_spectral_profiles),
    ("Histograms per band", "histograms.png", plot_histograms),
    ("Overlaps, coloured by their mean absolute difference", "overlaps.png", plot_overlap_graph),
    ("Where the images still disagree after matching", "disagreement.png", _disagreement_after),
]
"""The report's figures, in page order: (title, PNG file name, ``maker(before, after,
path)``). A new figure is one more entry."""


@frozen
class Figure:
    """A figure of the page: its title and the PNG file embedded."""

    title: str
    path: Path


def write_report(
    before,
    after,
    out_dir: str | os.PathLike,
    commands: Sequence[str] = (),
    model: Mosaic | None = None,
) -> Path:
    """Write the figures (PNG) and ``index.html`` into ``out_dir``.

    Parameters
    ----------
    before, after : collection-like
        The input images and the matched ones, with the same image names.
    out_dir : path
        The report folder (created if needed).
    commands : sequence of str
        The command lines that made the images, shown on the page.
    model : Mosaic, optional
        A fitted model whose parameters the page lists.

    Returns
    -------
    Path of the page.

    Raises
    ------
    SpectralMatchError
        If ``after`` does not hold an image of every name of ``before``.
    """
    before, after = ImageCollection.coerce(before), ImageCollection.coerce(after)
    _check_pairs(before, after)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [Figure(title, make(before, after, out_dir / name)) for title, name, make in FIGURES]
    figures += _model_figures(model, before, out_dir)
    sections = [
        _figures_section(figures),
        _means_section(before, after),
        _overlaps_section(overlap_differences(before), overlap_differences(after), before),
        _model_section(model),
        _commands_section(commands),
    ]
    page = out_dir / "index.html"
    page.write_text(
        PAGE.substitute(title="spectralmatch report", body="\n".join(sections)), encoding="utf-8"
    )
    return page


def _model_figures(model: Mosaic | None, before: ImageCollection, out_dir: Path) -> list[Figure]:
    """The block surfaces of the model's local step, when it has one."""
    steps = getattr(model, "steps_", [])
    return [
        Figure(
            "Local block surfaces: each image's shift per band",
            plot_block_surfaces(step, out_dir / f"blocks_{number}.png", before),
        )
        for number, step in enumerate(steps)
        if getattr(step, "surfaces_", None) is not None  # a fitted BlockMap
    ]


def _check_pairs(before: ImageCollection, after: ImageCollection) -> None:
    missing = [name for name in before.names if name not in after.names]
    if missing:
        raise SpectralMatchError(
            f"report: no matched image for {', '.join(missing)} among "
            f"{', '.join(str(image.path) for image in after)}"
        )


def band_labels(image: Image) -> list[str]:
    """The band descriptions of ``image``, ``band <n>`` where it has none."""
    return [text or f"band {n}" for n, text in enumerate(image.descriptions, start=1)]


def format_number(value: float, template: str = NUMBER_FORMAT) -> str:
    """A table value as the page prints it (``n/a`` for NaN)."""
    return "n/a" if np.isnan(value) else template.format(value)


def _figures_section(figures: list[Figure]) -> str:
    items = []
    for figure in figures:
        data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
        items.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_text(figure.title)}">'
            f"<figcaption>{_text(figure.title)}</figcaption></figure>"
        )
    return "<h2>Figures</h2>\n" + "\n".join(items)


def _means_section(before: ImageCollection, after: ImageCollection) -> str:
    bands = band_labels(before.images[0])
    header = ["image", *(f"{band} {when}" for band in bands for when in ("before", "after"))]
    rows = []
    for image in before:
        matched = after.images[after.index(image.name)]
        means = zip(image.statistics().mean, matched.statistics().mean, strict=True)
        rows.append([image.name, *(format_number(v) for pair in means for v in pair)])
    return "<h2>Mean per band</h2>\n" + _table("image-means", header, rows)


def _overlaps_section(
    before: list[OverlapDifference], after: list[OverlapDifference], images: ImageCollection
) -> str:
    bands = band_labels(images.images[0])
    header = ["first", "second", *(f"{b} {when}" for b in bands for when in ("before", "after"))]
    matched = {(d.first, d.second): d.mean_abs_difference for d in after}
    rows = []
    for difference in before:
        later = matched.get((difference.first, difference.second), np.full(len(bands), np.nan))
        values = zip(difference.mean_abs_difference, later, strict=True)
        rows.append(
            [
                difference.first,
                difference.second,
                *(format_number(v) for pair in values for v in pair),
            ]
        )
    return (
        "<h2>Overlaps: mean absolute difference</h2>\n"
        "<p>Over the pixels where both images are valid, in the images' units.</p>\n"
        + _table("overlap-differences", header, rows, labels=2)
    )


def _model_section(model: Mosaic | None) -> str:
    if model is None:
        return "<h2>Model</h2>\n<p>No model was given.</p>"
    parts = ["<h2>Model</h2>"]
    for number, step in enumerate(model.steps_, start=1):
        name = type(step).__name__
        settings = ", ".join(f"{key}={value!r}" for key, value in step.get_params().items())
        parts.append(f"<h3>{number}. {_text(name)}</h3>\n<p><code>{_text(settings)}</code></p>")
        if hasattr(step, "gains_") and hasattr(step, "offsets_"):
            parts.append(_gains_table(f"step-{number}-gains", step))
    return "\n".join(parts)


def _gains_table(table_id: str, step: Any) -> str:
    n_bands = step.gains_.shape[1]
    header = [
        "image",
        *(f"band {b} {kind}" for b in range(1, n_bands + 1) for kind in ("gain", "offset")),
    ]
    rows = [
        [
            name,
            *(
                format_number(value, PARAMETER_FORMAT)
                for pair in zip(gains, offsets, strict=True)
                for value in pair
            ),
        ]
        for name, gains, offsets in zip(step.images_, step.gains_, step.offsets_, strict=True)
    ]
    return _table(table_id, header, rows)


def _commands_section(commands: Sequence[str]) -> str:
    if not commands:
        return "<h2>Commands</h2>\n<p>Not recorded.</p>"
    lines = "\n".join(_text(command) for command in commands)
    return f"<h2>Commands</h2>\n<pre>{lines}</pre>"


def _table(table_id: str, header: list[str], rows: list[list[str]], labels: int = 1) -> str:
    """A table whose first ``labels`` columns name the row and the others are numbers."""
    head = "".join(f"<th>{_text(cell)}</th>" for cell in header)
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{_text(cell)}</td>"
            if column < labels
            else f'<td class="number">{_text(cell)}</td>'
            for column, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table id="{_text(table_id)}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
img { max-width: 100%; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f4f4f4; padding: 0.6em; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>$title</h1>
$body
<pre id="page-check" hidden></pre>
<script>
window.addEventListener("load", function () {
  var tables = {};
  document.querySelectorAll("table[id]").forEach(function (table) {
    tables[table.id] = Array.from(table.tBodies[0].rows, function (row) {
      return Array.from(row.cells, function (cell) { return cell.textContent; });
    });
  });
  var widths = Array.from(document.images, function (image) { return image.naturalWidth; });
  document.getElementById("page-check").textContent =
    JSON.stringify({ widths: widths, tables: tables });
});
</script>
</body>
</html>
"""
)
