"""Generate the spectralmatch sample mosaic from two real Landsat 8 scenes.

The two source scenes (USGS Landsat 8 OLI, path 224, rows 77 and 78, acquired
2020-05-18; bands B4/B3/B2, uint16, nodata 0, EPSG:32621, 30 m) lie on one pixel
lattice.  They are mosaicked into one radiometrically consistent "truth" image
(the row-77 scene wins where both are valid).  From a fully valid 640 x 640 px
region of it, crossing the seam between the two scenes, four overlapping tiles are
cut in a 2 x 2 layout (about 360 x 360 px each, about 30 % overlap between
neighbours) and written as ``tile_00.tif`` ... ``tile_03.tif`` (row-major).

Each tile imitates a separately acquired scene:

* nodata borders: the valid area is a rectangle rotated by 3-8 degrees whose
  corners touch the tile's north-up bounding box; pixels outside it are 0 in all
  bands;
* per band, ``gain * (1 + a * field(x, y)) * truth + offset + noise``, with
  ``gain`` in [0.75, 1.25], ``offset`` within +-6 % of the band's 2-98 percentile
  range, ``field`` a tilted plane in a random direction (max |field| = 1 on the
  tile), ``a`` in [0.03, 0.08] and Gaussian noise with sd 0.3 % of that range;
  valid pixels are rounded and clipped to [1, 65535].

The parameters applied are written to ``sample.json``.  The output is
deterministic: the same command gives byte-identical files, so
``python data/make_sample.py OUT && cmp OUT/tile_00.tif data/tile_00.tif`` checks the
shipped sample; the script never writes into data/ unless told to.

Source scenes: the shared benchmark data (``../shared/bench/data`` beside the clone,
whose README.md tells how they were cropped), two public-domain USGS Landsat 8 OLI
Level-1 products, ``LC08_L1TP_224077_20200518_20200518_01_RT`` and
``LC08_L1TP_224078_20200518_20200518_01_RT``, bands 4, 3, 2 (red, green, blue) stacked
in that order as ``<scene ID>_B432.tif``.  Where ../shared is not beside the clone, get
the two scenes by their scene IDs from USGS EarthExplorer or the AWS Landsat public
bucket, stack bands 4, 3, 2 of each into one uint16 GeoTIFF (nodata 0) under those names
(the crops of the shared data are subsets of those files; a different crop gives other
tiles), and pass their folder with ``--source``.  Nothing is downloaded at run time, and
nothing needs to be: data/ ships the sample this script made.

Usage: python data/make_sample.py [OUTPUT_DIR] [--source DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

SCENES = (
    "LC08_L1TP_224077_20200518_20200518_01_RT_B432.tif",
    "LC08_L1TP_224078_20200518_20200518_01_RT_B432.tif",
)
BAND_NAMES = ("B4 red", "B3 green", "B2 blue")
SEED = 20200518
REGION_ORIGIN = (810, 400)  # (row, col) on the truth grid: farmland, town, reservoir
REGION_SIZE = 640  # every tile lies inside this square, checked to be fully valid
TILE_STEP = 252  # nominal distance between neighbouring tile origins (px)
TILE_SIZE_RANGE = (350, 370)  # tile height / width (px), inclusive
TILE_JITTER = 12  # tile origins move by 0..TILE_JITTER px from the nominal lattice
ANGLE_RANGE = (3.0, 8.0)  # rotation of a tile's valid rectangle (degrees)
GAIN_RANGE = (0.75, 1.25)
OFFSET_FRACTION = 0.06
FIELD_AMPLITUDE_RANGE = (0.03, 0.08)
NOISE_FRACTION = 0.003


@dataclass(frozen=True)
class Truth:
    """The mosaic of the source scenes: data (bands, rows, cols) and its grid."""

    data: np.ndarray
    transform: Affine
    crs: CRS


def parse_args() -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output",
        nargs="?",
        type=Path,
        default=None,
        help="output folder (default: a new temporary folder, printed; the shipped sample in"
        " data/ is replaced only by copying on purpose)",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=here.parents[1] / "shared/bench/data",
        help="folder holding the two Landsat 8 source scenes",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="random seed")
    return parser.parse_args()


def source_paths(source: Path) -> list[Path]:
    paths = [source / name for name in SCENES]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        sys.exit(
            "Source scene(s) not found: "
            + ", ".join(missing)
            + "\nPass the folder holding them with --source (this script's docstring says"
            + " where the scenes come from)."
        )
    return paths


def load_truth(paths: list[Path]) -> Truth:
    """Mosaic the scenes on the union of their (shared) pixel lattice; first valid wins."""
    with rasterio.open(paths[0]) as first:
        crs, res = first.crs, first.res
    scenes = []
    for path in paths:
        with rasterio.open(path) as src:
            if src.crs != crs or src.res != res:
                sys.exit(f"{path.name} is not on the grid of {paths[0].name}")
            scenes.append((src.read(), src.transform))
    left = min(t.c for _, t in scenes)
    top = max(t.f for _, t in scenes)
    placed = []
    for data, t in scenes:
        row, col = (top - t.f) / res[1], (t.c - left) / res[0]
        if abs(row - round(row)) > 1e-6 or abs(col - round(col)) > 1e-6:
            sys.exit("The source scenes are not on one pixel lattice.")
        placed.append((data, round(row), round(col)))
    height = max(row + data.shape[1] for data, row, _ in placed)
    width = max(col + data.shape[2] for data, _, col in placed)
    mosaic = np.zeros((len(BAND_NAMES), height, width), dtype=np.uint16)
    for data, row, col in placed:
        target = mosaic[:, row : row + data.shape[1], col : col + data.shape[2]]
        fill = (target == 0).any(axis=0) & (data != 0).all(axis=0)
        target[:, fill] = data[:, fill]
    return Truth(mosaic, Affine(res[0], 0.0, left, 0.0, -res[1], top), crs)


def tile_windows(rng: np.random.Generator) -> list[Window]:
    """Four windows in a 2 x 2 layout with jittered origins and sizes (row-major)."""
    windows = []
    for i in range(2):
        for j in range(2):
            row, col = (
                REGION_ORIGIN[0] + i * TILE_STEP + int(rng.integers(0, TILE_JITTER + 1)),
                REGION_ORIGIN[1] + j * TILE_STEP + int(rng.integers(0, TILE_JITTER + 1)),
            )
            height, width = (
                int(v) for v in rng.integers(TILE_SIZE_RANGE[0], TILE_SIZE_RANGE[1] + 1, size=2)
            )
            windows.append(Window(col, row, width, height))
    return windows


def region_slices() -> tuple[slice, slice]:
    row, col = REGION_ORIGIN
    return slice(row, row + REGION_SIZE), slice(col, col + REGION_SIZE)


def check_region(truth: Truth, windows: list[Window]) -> None:
    rows, cols = region_slices()
    if not (truth.data[:, rows, cols] != 0).all():
        sys.exit("The sample region of the truth mosaic is not fully valid.")
    for window in windows:
        if window.row_off + window.height > rows.stop or window.col_off + window.width > cols.stop:
            sys.exit(f"Tile window {window} leaves the sample region.")


def band_ranges(truth: Truth) -> np.ndarray:
    """2-98 percentile range of each band over the sample region."""
    rows, cols = region_slices()
    region = truth.data[:, rows, cols].reshape(len(BAND_NAMES), -1).astype(np.float64)
    low, high = np.percentile(region, [2, 98], axis=1)
    return high - low


def rotated_rectangle_mask(height: int, width: int, angle_deg: float) -> np.ndarray:
    """True inside a rectangle rotated by angle_deg whose corners touch the box edges."""
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # w cos + h sin = width, w sin + h cos = height
    rect_w = (width * cos - height * sin) / (cos**2 - sin**2)
    rect_h = (height * cos - width * sin) / (cos**2 - sin**2)
    y, x = np.mgrid[0:height, 0:width] + 0.5
    x, y = x - width / 2, y - height / 2
    u, v = x * cos + y * sin, -x * sin + y * cos
    return (np.abs(u) <= rect_w / 2) & (np.abs(v) <= rect_h / 2)


def gradient_field(height: int, width: int, direction_deg: float) -> np.ndarray:
    """A plane tilted towards direction_deg (clockwise from north), max |field| = 1."""
    phi = np.deg2rad(direction_deg)
    y, x = np.mgrid[0:height, 0:width] + 0.5
    field = (x - width / 2) * np.sin(phi) - (y - height / 2) * np.cos(phi)
    return field / np.abs(field).max()


def round_params(values: np.ndarray, decimals: int) -> list[float]:
    return [round(float(v), decimals) for v in values]


def distort_tile(
    truth: np.ndarray, ranges: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """Apply a random nodata border and per-band radiometric distortion to one tile."""
    bands, height, width = truth.shape
    angle = round(float(rng.uniform(*ANGLE_RANGE)), 2)
    direction = round(float(rng.uniform(0.0, 360.0)), 1)
    gains = round_params(rng.uniform(*GAIN_RANGE, size=bands), 4)
    offsets = round_params(rng.uniform(-OFFSET_FRACTION, OFFSET_FRACTION, size=bands) * ranges, 1)
    amplitudes = round_params(rng.uniform(*FIELD_AMPLITUDE_RANGE, size=bands), 4)
    noise_sd = NOISE_FRACTION * ranges

    valid = rotated_rectangle_mask(height, width, angle)
    field = gradient_field(height, width, direction)
    out = np.zeros_like(truth)
    for b in range(bands):
        value = (
            gains[b] * (1.0 + amplitudes[b] * field) * truth[b]
            + offsets[b]
            + rng.normal(0.0, noise_sd[b], size=(height, width))
        )
        out[b] = np.where(valid, np.clip(np.rint(value), 1, 65535), 0).astype(np.uint16)
    params = {
        "rotation_deg": angle,
        "field_direction_deg": direction,
        "valid_fraction": round(float(valid.mean()), 4),
        "bands": [
            {
                "band": name,
                "gain": gains[b],
                "offset": offsets[b],
                "field_amplitude": amplitudes[b],
                "noise_sd": round(float(noise_sd[b]), 2),
            }
            for b, name in enumerate(BAND_NAMES)
        ],
    }
    return out, params


def write_tile(path: Path, data: np.ndarray, transform: Affine, crs: CRS) -> None:
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "nodata": 0,
        "crs": crs,
        "transform": transform,
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 9,
        "interleave": "pixel",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for b, name in enumerate(BAND_NAMES, start=1):
            dst.set_band_description(b, name)


def main() -> None:
    args = parse_args()
    truth = load_truth(source_paths(args.source))
    rng = np.random.default_rng(args.seed)
    windows = tile_windows(rng)
    check_region(truth, windows)
    ranges = band_ranges(truth)
    if args.output is None:
        args.output = Path(tempfile.mkdtemp(prefix="spectralmatch-sample-"))
    args.output.mkdir(parents=True, exist_ok=True)

    tiles = []
    for index, window in enumerate(windows):
        rows, cols = window.toslices()
        data, params = distort_tile(truth.data[:, rows, cols].astype(np.float64), ranges, rng)
        transform = window_transform(window, truth.transform)
        name = f"tile_{index:02d}.tif"
        write_tile(args.output / name, data, transform, truth.crs)
        bounds = window_bounds(window, truth.transform)
        tiles.append(
            {
                "file": name,
                "width": window.width,
                "height": window.height,
                "bounds": [float(v) for v in bounds],
                **params,
            }
        )
        print(f"wrote {name}: {window.width} x {window.height} px, bounds {bounds}")

    metadata = {
        "description": (
            "Four overlapping tiles cut from a mosaic of two Landsat 8 scenes; per band value = "
            "gain * (1 + field_amplitude * field(x, y)) * truth + offset + noise."
        ),
        "seed": args.seed,
        "sources": list(SCENES),
        "crs": truth.crs.to_string(),
        "band_range_2_98": dict(zip(BAND_NAMES, round_params(ranges, 1), strict=True)),
        "tiles": tiles,
    }
    (args.output / "sample.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"wrote sample.json to {args.output}")


if __name__ == "__main__":
    main()
