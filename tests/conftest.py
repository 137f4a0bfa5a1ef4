"""Shared fixtures: the sample data, GeoTIFF writing, and tiles with known distortions.

Every raster used by the suite is real: either one of the sample tiles in ``data/`` or a
numpy array written to a GeoTIFF with rasterio in ``tmp_path``. The "truth" image is the
fully valid interior of ``data/tile_00.tif`` (real Landsat texture); tiles cut from it
get a known gain and offset per band plus Gaussian noise, so a correct normalization can
be checked against numbers that the package never computed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SAMPLE_TILES = [f"tile_{i:02d}" for i in range(4)]
CRS = "EPSG:32621"
BAND_NAMES = ("B4 red", "B3 green", "B2 blue")


@pytest.fixture(autouse=True, scope="session")
def private_statistics_cache(tmp_path_factory):
    """The command line caches statistics by default: keep that cache inside the test run."""
    folder = tmp_path_factory.mktemp("statistics-cache")
    previous = os.environ.get("SPECTRALMATCH_CACHE")
    os.environ["SPECTRALMATCH_CACHE"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["SPECTRALMATCH_CACHE"]
    else:
        os.environ["SPECTRALMATCH_CACHE"] = previous


#: Truth: rows/cols 40..240 of tile_00 (its valid area starts 30 px from every edge).
TRUTH_OFFSET = 40
TRUTH_SIZE = 200

#: Per tile and band: the distortion applied by ``make_tiles`` by default. Tile 0 is
#: undistorted so it can serve as the reference.
GAINS = np.array(
    [
        [1.00, 1.00, 1.00],
        [0.82, 1.18, 0.90],
        [1.22, 0.86, 1.10],
        [0.91, 1.07, 1.24],
    ]
)
OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],
        [150.0, -180.0, 260.0],
        [-120.0, 240.0, -60.0],
        [280.0, -90.0, 40.0],
    ]
)
#: 2 x 2 layout of 120 px tiles over the 200 px truth: 40 px overlaps between neighbours
#: (and a 40 x 40 px corner shared by the diagonal pairs).
LAYOUT = [
    Window(0, 0, 120, 120),
    Window(80, 0, 120, 120),
    Window(0, 80, 120, 120),
    Window(80, 80, 120, 120),
]


# ---------------------------------------------------------------------- plain helpers


def write_raster(
    path, array, *, transform=None, crs=CRS, nodata=None, dtype=None, descriptions=None, **profile
) -> Path:
    """Write ``array`` ((bands,) rows, cols) to a GeoTIFF and return its path.

    The data is cast to ``dtype`` (default: the array's dtype) as is; rounding is the
    caller's business.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[None]
    dtype = np.dtype(dtype or data.dtype)
    if transform is None:
        transform = Affine(30.0, 0.0, 700000.0, 0.0, -30.0, -2800000.0)
    options = {
        "driver": "GTiff",
        "dtype": dtype.name,
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    options.update(profile)
    with rasterio.open(path, "w", **options) as dataset:
        dataset.write(data.astype(dtype))
        for index, description in enumerate(descriptions or (), start=1):
            dataset.set_band_description(index, description)
    return path


def measure_moments(collection, edges, whole_images=None, window_size=1024, threads=1):
    """Whole-image and overlap moments of ``collection`` by the engine's statistics pass."""
    from spectralmatch.engine.collect import StatisticsPass
    from spectralmatch.engine.executors import as_executor
    from spectralmatch.stats.requests import ImageMoments, OverlapMoments

    statistics_pass = StatisticsPass(window_size, as_executor("threads", threads))
    return statistics_pass.collect(
        collection, edges, [ImageMoments(), OverlapMoments()], whole_images
    )


def read_raster(path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def valid_mask(array: np.ndarray, nodata) -> np.ndarray:
    """Validity as the tests define it: not nodata (NaN-aware) and finite."""
    if nodata is None:
        valid = np.ones(array.shape, dtype=bool)
    elif np.isnan(nodata):
        valid = ~np.isnan(array)
    else:
        valid = array != nodata
    if array.dtype.kind == "f":
        valid &= np.isfinite(array)
    return valid


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_listing(folder) -> list[str]:
    """Every entry under ``folder`` (recursively, hidden ones included), sorted."""
    folder = Path(folder)
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, dirs, files in os.walk(folder)
        for name in dirs + files
    )


def cast_to_dtype(values: np.ndarray, valid: np.ndarray, dtype, nodata) -> np.ndarray:
    """Round and clip float values to ``dtype`` (integers), put nodata where invalid."""
    dtype = np.dtype(dtype)
    values = np.asarray(values, dtype=np.float64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
        if nodata is not None:
            # a valid value must not look like nodata: move it one step into the range
            values[valid & (values == nodata)] = nodata + (1 if nodata < info.max else -1)
    out = np.where(valid, values, 0 if nodata is None else nodata)
    return out.astype(dtype)


@dataclass
class Truth:
    """A consistent image: float64 data (bands, rows, cols) and its grid."""

    data: np.ndarray
    transform: Affine
    crs: str = CRS


@dataclass
class TileSet:
    """Tiles cut from a truth image, each with a known per-band gain and offset."""

    folder: Path
    paths: list[Path]
    truth: Truth
    windows: list[Window]
    gains: np.ndarray
    offsets: np.ndarray
    dtype: str
    nodata: float | None
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [path.stem for path in self.paths]

    def truth_of(self, index: int) -> np.ndarray:
        rows, cols = self.windows[index].toslices()
        return self.truth.data[:, rows, cols]

    def data_of(self, index: int) -> np.ndarray:
        return read_raster(self.paths[index])

    def valid_of(self, index: int) -> np.ndarray:
        return valid_mask(self.data_of(index), self.nodata)


def load_truth(size: int = TRUTH_SIZE) -> Truth:
    """The fully valid interior of ``data/tile_00.tif`` as float64."""
    with rasterio.open(DATA_DIR / "tile_00.tif") as dataset:
        window = Window(TRUTH_OFFSET, TRUTH_OFFSET, size, size)
        data = dataset.read(window=window).astype(np.float64)
        transform = window_transform(window, dataset.transform)
    assert (data != 0).all(), "the truth region must be fully valid"
    return Truth(data, transform)


def corner_mask(height: int, width: int, corner: str, size: int = 25) -> np.ndarray:
    """True inside a right triangle of ``size`` px in ``corner`` ('nw', 'ne', 'sw', 'se')."""
    rows, cols = np.mgrid[0:height, 0:width]
    if "s" in corner:
        rows = height - 1 - rows
    if "e" in corner:
        cols = width - 1 - cols
    return rows + cols < size


def make_tiles(
    folder,
    truth: Truth,
    *,
    gains=GAINS,
    offsets=OFFSETS,
    windows=LAYOUT,
    noise_sd: float = 2.0,
    seed: int = 0,
    dtype: str = "uint16",
    nodata=0,
    names=None,
    cut_corners: bool = True,
    grid_offset=(0.0, 0.0),
    fields=None,
) -> TileSet:
    """Cut ``windows`` out of ``truth``, apply ``gain * truth + offset + noise`` per band.

    Integer results are rounded and clipped to the dtype; a valid pixel never holds the
    nodata value. With ``cut_corners`` each tile's outer corner (the one away from the
    centre of the layout) is a 25 px triangle of nodata, like a real scene border.
    ``grid_offset`` (x, y in CRS units) moves every tile, e.g. far away from others.
    ``fields`` (one (rows, cols) array per tile, or None) multiplies the truth first:
    ``gain * field * truth + offset + noise``, a brightness that varies inside a tile.
    """
    folder = Path(folder)
    gains = np.asarray(gains, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    rng = np.random.default_rng(seed)
    names = names or [f"tile_{i}" for i in range(len(windows))]
    centre_row = np.mean([w.row_off + w.height / 2 for w in windows])
    centre_col = np.mean([w.col_off + w.width / 2 for w in windows])
    paths = []
    for index, window in enumerate(windows):
        rows, cols = window.toslices()
        clean = truth.data[:, rows, cols]
        if fields is not None:
            clean = clean * np.asarray(fields[index], dtype=np.float64)[None]
        values = (
            gains[index][:, None, None] * clean
            + offsets[index][:, None, None]
            + rng.normal(0.0, noise_sd, size=clean.shape)
        )
        valid = np.ones(clean.shape, dtype=bool)
        if cut_corners:
            corner = ("n" if window.row_off + window.height / 2 < centre_row else "s") + (
                "w" if window.col_off + window.width / 2 < centre_col else "e"
            )
            valid &= ~corner_mask(window.height, window.width, corner)[None]
        data = cast_to_dtype(values, valid, dtype, nodata)
        transform = Affine.translation(*grid_offset) @ window_transform(window, truth.transform)
        paths.append(
            write_raster(
                folder / f"{names[index]}.tif",
                data,
                transform=transform,
                crs=truth.crs,
                nodata=nodata,
                dtype=dtype,
                descriptions=BAND_NAMES[: data.shape[0]],
            )
        )
    return TileSet(folder, paths, truth, list(windows), gains, offsets, dtype, nodata)


#: 2 x 2 layout of 125 px tiles over the 200 px truth: 50 px (40 %) overlaps between
#: neighbours, a 50 x 50 px corner shared by all four.
FIELD_LAYOUT = [
    Window(0, 0, 125, 125),
    Window(75, 0, 125, 125),
    Window(0, 75, 125, 125),
    Window(75, 75, 125, 125),
]
#: Direction (degrees, clockwise from east) of each tile's brightness gradient.
FIELD_ANGLES = (20.0, 110.0, 200.0, 290.0)


def plane(height: int, width: int, angle: float) -> np.ndarray:
    """A linear ramp over a (height, width) tile: -1 .. 1 along ``angle`` (degrees)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = np.deg2rad(angle)
    ramp = np.cos(theta) * (cols - (width - 1) / 2) + np.sin(theta) * (rows - (height - 1) / 2)
    return ramp / np.abs(ramp).max()


def smooth_fields(windows, amplitudes, angles=FIELD_ANGLES) -> list[np.ndarray]:
    """``1 + a * plane`` per tile: a multiplicative brightness gradient of +- ``a``."""
    amplitudes = np.broadcast_to(np.asarray(amplitudes, dtype=np.float64), (len(windows),))
    return [
        1.0 + amplitude * plane(window.height, window.width, angle)
        for window, amplitude, angle in zip(windows, amplitudes, angles, strict=False)
    ]


def on_truth_grid(tiles: TileSet, paths) -> list[np.ndarray]:
    """Rasters laid out like ``tiles`` (e.g. their outputs) on the truth grid, float64,
    NaN outside them and where they are not valid."""
    placed = []
    for window, path in zip(tiles.windows, paths, strict=True):
        data = read_raster(path).astype(np.float64)
        canvas = np.full(tiles.truth.data.shape, np.nan)
        rows, cols = window.toslices()
        canvas[:, rows, cols] = np.where(valid_mask(read_raster(path), tiles.nodata), data, np.nan)
        placed.append(canvas)
    return placed


def seam_error(tiles: TileSet, paths, pairs=None) -> float:
    """Mean absolute difference between overlapping rasters over their jointly valid
    pixels (all bands), over every pair of ``paths`` or the (i, j) ``pairs`` given."""
    placed = on_truth_grid(tiles, paths)
    if pairs is None:
        pairs = [(i, j) for i in range(len(placed)) for j in range(i + 1, len(placed))]
    differences = []
    for i, j in pairs:
        difference = np.abs(placed[i] - placed[j])
        differences.append(difference[np.isfinite(difference)])
    differences = np.concatenate(differences)
    assert differences.size > 0, "the rasters do not overlap"
    return float(differences.mean())


def affine_rmse(tiles: TileSet, paths) -> float:
    """RMSE to the truth after the best affine map per band common to all ``paths``
    (what no relative normalization without a reference can know is factored out)."""
    placed = on_truth_grid(tiles, paths)
    squares, count = 0.0, 0
    for band in range(tiles.truth.data.shape[0]):
        x = np.concatenate([canvas[band][np.isfinite(canvas[band])] for canvas in placed])
        y = np.concatenate([tiles.truth.data[band][np.isfinite(canvas[band])] for canvas in placed])
        design = np.stack([x, np.ones_like(x)], axis=1)
        residual = design @ np.linalg.lstsq(design, y, rcond=None)[0] - y
        squares, count = squares + float(residual @ residual), count + residual.size
    return float(np.sqrt(squares / count))


def inverse(gains: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset that undo ``gain * x + offset``."""
    return 1.0 / gains, -offsets / gains


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


# ---------------------------------------------------------------------- fixtures


def pytest_configure(config):
    # affine 2.4 deprecates ``transform * (x, y)``, which rasterio itself still uses
    config.addinivalue_line(
        "filterwarnings", "ignore:Use `@` matmul instead of `\\*` mul:PendingDeprecationWarning"
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The sample data folder (four overlapping uint16 Landsat tiles)."""
    assert all((DATA_DIR / f"{name}.tif").is_file() for name in SAMPLE_TILES)
    return DATA_DIR


@pytest.fixture(scope="session")
def truth() -> Truth:
    return load_truth()


@pytest.fixture
def raster_writer():
    """``write_raster(path, array, transform=, crs=, nodata=, dtype=, descriptions=)``."""
    return write_raster


@pytest.fixture
def tile_factory(tmp_path, truth):
    """``make_tiles`` with the truth image and a folder under ``tmp_path`` by default."""

    def factory(folder="tiles", **kwargs) -> TileSet:
        return make_tiles(tmp_path / folder, kwargs.pop("truth", truth), **kwargs)

    return factory


@pytest.fixture
def tiles(tile_factory) -> TileSet:
    """Four overlapping uint16 tiles, tile 0 undistorted (GAINS / OFFSETS, noise sd 2)."""
    return tile_factory()


@pytest.fixture
def sample_copy(tmp_path, data_dir) -> Path:
    """A private copy of the sample tiles (so tests may put files beside them)."""
    folder = tmp_path / "sample"
    folder.mkdir()
    for name in SAMPLE_TILES:
        (folder / f"{name}.tif").write_bytes((data_dir / f"{name}.tif").read_bytes())
    return folder


# ---------------------------------------------------------------------- masks and change


def paint(path, window: Window, value) -> None:
    """Overwrite ``window`` of the raster at ``path`` (every band) in place with ``value``,
    or with ``value(pixels)`` (float64, (bands, rows, cols)) when it is callable: a bright
    "cloud", a haze or any other local corruption of a real file."""
    with rasterio.open(path, "r+") as dataset:
        shape = (dataset.count, int(window.height), int(window.width))
        if callable(value):
            patch = value(dataset.read(window=window).astype(np.float64))
        else:
            patch = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
        if np.dtype(dataset.dtypes[0]).kind in "iu":
            info = np.iinfo(dataset.dtypes[0])
            patch = np.clip(np.rint(patch), info.min, info.max)
        dataset.write(patch.astype(dataset.dtypes[0]), window=window)


def write_polygons(path, geometries, crs=CRS, **columns) -> Path:
    """Write shapely ``geometries`` (with attribute ``columns``) to a vector file."""
    import geopandas

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    geopandas.GeoDataFrame(dict(columns), geometry=list(geometries), crs=crs).to_file(path)
    return path


#: Per date and band of a time series: the distortion of ``make_series`` (date 0 is the
#: undistorted reference).
SERIES_GAINS = np.array(
    [
        [1.00, 1.00, 1.00],
        [0.85, 1.15, 0.92],
        [1.18, 0.88, 1.08],
        [0.93, 1.06, 1.20],
    ]
)
SERIES_OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],
        [140.0, -170.0, 240.0],
        [-110.0, 220.0, -70.0],
        [260.0, -80.0, 50.0],
    ]
)
#: Per date: rectangles (row start, row stop, col start, col stop) of the 200 px truth
#: where the land cover changed, 5-6 % of the area each, disjoint, on a 4 px grid. The
#: first of each date becomes a bright, flat "cloud", the second another place's texture.
SERIES_CHANGES = {
    1: [(12, 52, 12, 60), (120, 168, 132, 180)],
    2: [(12, 60, 120, 168), (132, 176, 20, 68)],
    3: [(76, 116, 60, 120), (148, 196, 80, 124)],
}
#: Truth values of the bright change, per band.
BRIGHT = np.array([12500.0, 13500.0, 12000.0])


def make_series(
    folder,
    truth: Truth,
    *,
    gains=SERIES_GAINS,
    offsets=SERIES_OFFSETS,
    changes=SERIES_CHANGES,
    noise_sd: float = 2.0,
    seed: int = 0,
) -> TileSet:
    """A time series of ``len(gains)`` uint16 dates (``date_<k>.tif``, nodata 0) of one
    footprint: the truth with real change inside the ``changes`` rectangles, seen with a
    known ``gain * truth + offset + noise`` per date and band.

    ``extra["changes"]`` holds the rectangles per date, ``extra["scene"]`` each date's
    changed truth (what was on the ground), float64.
    """
    folder = Path(folder)
    gains = np.asarray(gains, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    rng = np.random.default_rng(seed)
    size = truth.data.shape[1]
    paths, scenes = [], []
    for date in range(len(gains)):
        scene = truth.data.copy()
        for number, (r0, r1, c0, c1) in enumerate(changes.get(date, ())):
            if number % 2 == 0:
                scene[:, r0:r1, c0:c1] = BRIGHT[:, None, None]
            else:  # another place's texture, turned by 90 degrees
                rows, cols = r1 - r0, c1 - c0
                source = np.rot90(truth.data[:, size - cols :, :rows], axes=(1, 2))
                scene[:, r0:r1, c0:c1] = source
        values = (
            gains[date][:, None, None] * scene
            + offsets[date][:, None, None]
            + rng.normal(0.0, noise_sd, size=scene.shape)
        )
        data = cast_to_dtype(values, np.ones(scene.shape, dtype=bool), "uint16", 0)
        paths.append(
            write_raster(
                folder / f"date_{date}.tif",
                data,
                transform=truth.transform,
                crs=truth.crs,
                nodata=0,
                dtype="uint16",
                descriptions=BAND_NAMES,
            )
        )
        scenes.append(scene)
    window = Window(0, 0, size, size)
    return TileSet(
        folder,
        paths,
        truth,
        [window] * len(gains),
        gains,
        offsets,
        "uint16",
        0,
        extra={"changes": {k: list(v) for k, v in changes.items()}, "scene": scenes},
    )


def rectangles_mask(rectangles, shape) -> np.ndarray:
    """True inside any of ``rectangles`` (row start, row stop, col start, col stop)."""
    inside = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in rectangles:
        inside[r0:r1, c0:c1] = True
    return inside


def write_four_band_masked(source, path) -> None:
    """``source`` (a 3-band raster with nodata 0) as a 4-band one (band 1 again) whose
    validity is an internal mask band, without a nodata value."""
    with rasterio.open(source) as dataset:
        values, profile = dataset.read(), dataset.profile
    profile.update(count=4, nodata=None)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as out:
        out.write(np.concatenate([values, values[:1]]))
        out.write_mask(np.where((values > 0).all(axis=0), 255, 0).astype(np.uint8))
