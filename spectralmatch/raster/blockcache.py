"""GDAL's block cache, bounded so that memory follows the window size, not the image.

GDAL keeps decoded and not-yet-written blocks in a cache shared by the whole process,
by default 5 % of the machine's memory. Every pass reads and writes window by window,
so the cache only has to hold the tiles one window straddles; left at its default it
fills with the tiles of whole images (900 MB for four 6000 x 6000 images on a 24 GiB
machine) and memory grows with image size. Each task therefore bounds it to
:data:`BLOCK_CACHE_BYTES`, unless the user set ``GDAL_CACHEMAX`` in the environment.
"""

from __future__ import annotations

import os

from rasterio.env import get_gdal_config, set_gdal_config

#: The cache size set for the passes: a few rows of 256 x 256 tiles of several images.
BLOCK_CACHE_BYTES = 64 << 20


def limit_block_cache() -> None:
    """Bound GDAL's block cache in this process to :data:`BLOCK_CACHE_BYTES` (never
    raise it), unless ``GDAL_CACHEMAX`` is set in the environment."""
    if "GDAL_CACHEMAX" in os.environ:
        return
    current = get_gdal_config("GDAL_CACHEMAX")
    if not isinstance(current, int) or current > BLOCK_CACHE_BYTES:
        set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_BYTES)
