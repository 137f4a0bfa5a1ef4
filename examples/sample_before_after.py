"""Match the sample mosaic in data/ and draw it before and after (docs/images/).

    python examples/sample_before_after.py
"""

import tempfile
from pathlib import Path

import numpy as np

import spectralmatch as sm
from spectralmatch.plot import plot_before_after

ROOT = Path(__file__).resolve().parents[1]


def overlap_table(model: sm.Mosaic) -> str:
    """Markdown table: mean absolute difference of each overlap's means, before and after."""
    diagnostics = model.steps_[0].diagnostics_
    lines = ["| overlap | pixels | mean abs. difference before (R / G / B, DN) | after |",
             "| --- | --- | --- | --- |"]
    for pair, count, before, after in zip(diagnostics.pairs, diagnostics.count,
                                          diagnostics.mean_difference_before,
                                          diagnostics.mean_difference_after, strict=True):
        def cells(values):
            return " / ".join(f"{abs(v):.0f}" for v in values)
        lines.append(f"| {pair[0]} - {pair[1]} | {int(count[0])} | {cells(before)} | "
                     f"{cells(after)} |")
    return "\n".join(lines)


def main() -> None:
    images = sm.ImageCollection.from_paths(ROOT / "data")
    model = sm.Mosaic([sm.GlobalModel()])
    with tempfile.TemporaryDirectory() as folder:
        matched = model.fit_transform(images, folder)
        path = plot_before_after(images, matched, ROOT / "docs/images/sample_before_after.png",
                                 titles=("Input tiles", "After spectralmatch (global model)"))
    print(f"wrote {path}")
    print(overlap_table(model))
    print("gains:\n", np.round(model.steps_[0].gains_, 3))


if __name__ == "__main__":
    main()
