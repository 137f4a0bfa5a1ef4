"""The floor of any two-pass method: read every input once, computing nothing, then copy
them as ``rewrite_mt.py`` does (the shared harness's copy on every core).

    python benchmarks/two_pass_floor.py INPUT_DIR OUTPUT_DIR

A matching whose model depends on every pixel must read them all before it writes one,
so it cannot be faster than this; ``benchmarks/scale.py`` sets it beside the copy. Both
reads are done the same way: whole images in parallel, one per core, 1024-pixel windows.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import rasterio
from rasterio.windows import Window
from scale import bench_folder

STEP = 1024


def read_all(path: Path) -> None:
    """Read every window of the image at ``path`` and drop it."""
    with rasterio.open(path) as source:
        for row in range(0, source.height, STEP):
            for col in range(0, source.width, STEP):
                height, width = min(STEP, source.height - row), min(STEP, source.width - col)
                source.read(window=Window(col, row, width, height))


def main(source: str, destination: str) -> None:
    paths = sorted(Path(source).glob("*.tif"))
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(read_all, paths))
    spec = importlib.util.spec_from_file_location(
        "rewrite_mt", bench_folder() / "runners" / "rewrite_mt.py"
    )
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load the copy runner {bench_folder() / 'runners' / 'rewrite_mt.py'}")
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    copy.main(source, destination)


if __name__ == "__main__":
    main(*sys.argv[1:3])
