"""A synthetic opaque cloud and its shadow, pasted into a copy of a real tile: what the
cloud tests and the masks figure are checked against (the sample has no clouds)."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass

import numpy as np
import rasterio

#: The pasted scene: the cloud's centre (row, col) and radius in tile_01, its soft edge,
#: the sun (from the west, 45 degrees up) and the cloud's height in metres.
CENTER, RADIUS, SOFT_EDGE = (85, 90), 50, 10
SUN_AZIMUTH, SUN_ELEVATION, HEIGHT = 270.0, 45.0, 1500.0
#: How much of the lit ground's signal (above the darkest ground) a shadow leaves.
SHADOW_FACTOR = 0.25
#: The cloud's brightness above the darkest ground, in multiples of the median ground's.
CLOUD_LEVEL = 6.0


@dataclass
class Pasted:
    path: str
    cloud: np.ndarray  # where the cloud makes at least a quarter of the pixel
    shadow: np.ndarray  # where the ground is shadowed and not under that cloud


def _distance(shape, center):
    rows, cols = np.indices(shape)
    return np.hypot(rows - center[0], cols - center[1])


def paste_cloud(source, target) -> Pasted:
    """Copy ``source`` to ``target`` with a white cloud and, displaced away from the sun
    by its height, the cloud's shadow."""
    shutil.copy(source, target)
    with rasterio.open(target, "r+") as dataset:
        values = dataset.read().astype(np.float64)
        valid = (values != dataset.nodata).all(axis=0)
        dark = np.percentile(values[:, valid], 1, axis=1)[:, None, None]
        median = np.median(values[:, valid], axis=1)[:, None, None]
        shift = HEIGHT / math.tan(math.radians(SUN_ELEVATION)) / dataset.res[0]
        azimuth = math.radians(SUN_AZIMUTH)
        shadow_center = (
            CENTER[0] + math.cos(azimuth) * shift,
            CENTER[1] - math.sin(azimuth) * shift,
        )
        # opaque inside RADIUS, fading linearly to nothing across SOFT_EDGE pixels
        edge = (RADIUS + SOFT_EDGE / 2 - _distance(valid.shape, CENTER)) / SOFT_EDGE
        opacity = np.clip(edge, 0, 1)
        cloud = opacity >= 0.25
        shadow = (_distance(valid.shape, shadow_center) <= RADIUS) & ~cloud & valid
        values[:, shadow] = dark[:, :, 0] + (values[:, shadow] - dark[:, :, 0]) * SHADOW_FACTOR
        white = dark + CLOUD_LEVEL * (median - dark).mean()
        values = values * (1 - opacity) + white * opacity
        values[:, ~valid] = dataset.nodata
        dataset.write(np.rint(values).astype(np.uint16))
    return Pasted(str(target), cloud & valid, shadow)
