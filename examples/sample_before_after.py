"""Match the sample mosaic in data/ and show it before and after.

    python examples/sample_before_after.py [FOLDER]

Writes the figure ``sample_before_after.png`` into FOLDER (default: a new temporary folder;
``docs/images`` regenerates the README's figure).

Prints a Markdown table of the mean absolute difference between overlapping tiles,
before, after the global model alone, and after global + local adjustment.
"""

import sys
import tempfile
from pathlib import Path

import spectralmatch as sm
from spectralmatch.report.metrics import overlap_differences
from spectralmatch.report.plots import plot_before_after

ROOT = Path(__file__).resolve().parents[1]


def cells(values) -> str:
    return " / ".join(f"{value:.0f}" for value in values)


def figure_folder() -> Path:
    """The folder given on the command line, or a new temporary one."""
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    return Path(tempfile.mkdtemp(prefix="spectralmatch-figures-"))


def main() -> None:
    images = sm.ImageCollection.from_paths(ROOT / "data")
    with tempfile.TemporaryDirectory() as folder:
        global_only = sm.Mosaic(steps=[sm.GlobalModel()]).fit_transform(images, Path(folder, "g"))
        matched = sm.Mosaic(steps=[sm.GlobalModel(), sm.BlockMap()]).fit_transform(
            images, Path(folder, "gl")
        )
        path = plot_before_after(
            images,
            matched,
            figure_folder() / "sample_before_after.png",
            titles=("Input tiles", "After spectralmatch match"),
        )
        columns = [overlap_differences(c) for c in (images, global_only, matched)]
    print(f"wrote {path}\n")
    print("| overlap | pixels | before | global model | global + local |")
    print("| --- | --- | --- | --- | --- |")
    for before, middle, after in zip(*columns, strict=True):
        print(
            f"| {before.first} - {before.second} | {int(before.count[0])} | "
            f"{cells(before.mean_abs_difference)} | {cells(middle.mean_abs_difference)} | "
            f"{cells(after.mean_abs_difference)} |"
        )


if __name__ == "__main__":
    main()
