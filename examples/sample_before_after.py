"""Match the sample mosaic in data/ and show it before and after.

    python examples/sample_before_after.py [FOLDER]

Writes the figure ``sample_before_after.png`` into FOLDER (default: a new temporary
folder, printed; never over an existing file: README.md says how the tracked figure is
regenerated).

Prints a Markdown table of the mean absolute difference between overlapping tiles,
before, after the global model alone, and after global + local adjustment: the table
of README.md.
"""

import tempfile
from pathlib import Path

from example_output import new_file, output_folder

import spectralmatch as sm
from spectralmatch.report.metrics import overlap_differences
from spectralmatch.report.plots import plot_before_after

ROOT = Path(__file__).resolve().parents[1]


def cells(values) -> str:
    return " / ".join(f"{value:.0f}" for value in values)


def main(folder: Path) -> str:
    """Write the figure into ``folder``; print the table and return it."""
    figure = new_file(folder, "sample_before_after.png")
    images = sm.ImageCollection.from_paths(ROOT / "data")
    with tempfile.TemporaryDirectory() as work:
        global_only = sm.Mosaic(steps=[sm.GlobalModel()]).fit_transform(images, Path(work, "g"))
        matched = sm.Mosaic(steps=[sm.GlobalModel(), sm.BlockMap()]).fit_transform(
            images, Path(work, "gl")
        )
        path = plot_before_after(
            images,
            matched,
            figure,
            titles=("Input tiles", "After spectralmatch match"),
        )
        columns = [overlap_differences(c) for c in (images, global_only, matched)]
    lines = [
        "| overlap | pixels | before | global model | global + local |",
        "| --- | --- | --- | --- | --- |",
    ]
    for before, middle, after in zip(*columns, strict=True):
        lines.append(
            f"| {before.first} - {before.second} | {int(before.count[0])} | "
            f"{cells(before.mean_abs_difference)} | {cells(middle.mean_abs_difference)} | "
            f"{cells(after.mean_abs_difference)} |"
        )
    table = "\n".join(lines)
    print(f"wrote {path}\n\n{table}")
    return table


if __name__ == "__main__":
    main(output_folder())
