"""Merge the sample into one mosaic, before and after matching.

    python examples/sample_mosaic.py [FOLDER]

Writes the figure ``sample_mosaic_before_after.png`` into FOLDER (default: a new
temporary folder, printed; never over an existing file: README.md says how the tracked
figure is regenerated).

Prints the seam contrast of each mosaic: the mean absolute difference between
neighbouring pixels across the cut lines over the same for neighbours of one image
beside the cuts (within 3 pixels), per band (about 1 when the cuts cannot be seen):
the table of README.md.
"""

import tempfile
from pathlib import Path

from example_output import new_file, output_folder

import spectralmatch as sm
from spectralmatch.report.metrics import seam_contrast
from spectralmatch.report.plots import plot_before_after

ROOT = Path(__file__).resolve().parents[1]


def main(folder: Path) -> str:
    """Write the figure into ``folder``; print the table and return it."""
    figure = new_file(folder, "sample_mosaic_before_after.png")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model = sm.Mosaic(steps=[sm.GlobalModel(), sm.BlockMap()])
        matched = model.fit_transform(ROOT / "data", work / "matched")
        rows = []
        for label, images, feather in (
            ("input tiles", ROOT / "data", 0),
            ("matched, voronoi cuts", matched, 0),
            ("matched, least-cost cuts", matched, 0),
            ("matched, least-cost cuts, feather 8", matched, 8),
        ):
            seams = (
                sm.Seamline.voronoi(images)
                if "voronoi" in label
                else sm.Seamline.least_cost(images)
            )
            path = model.merge(images, work / f"{len(rows)}.tif", seamlines=seams, feather=feather)
            rows.append((label, path, seam_contrast(path, seams)))
        picture = plot_before_after(
            [rows[0][1]],
            [rows[-1][1]],
            figure,
            titles=("Merged input tiles", "Merged after matching"),
        )
    lines = ["| mosaic | seam contrast (R / G / B) |", "| --- | --- |"]
    for label, _, contrast in rows:
        lines.append(f"| {label} | {' / '.join(f'{value:.2f}' for value in contrast)} |")
    table = "\n".join(lines)
    print(f"wrote {picture}\n\n{table}")
    return table


if __name__ == "__main__":
    main(output_folder())
