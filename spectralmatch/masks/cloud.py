"""Clouds and their shadows found from the pixels: a spectral test for any sensor with
visible bands, offline (no model, no download).

The tests work on *reflectance-like* values ``x``. Reflectance is used as it is
(``reflectance=True``); any other unit (DN of any sensor, radiance) is mapped per image
by robust statistics: for each band its 1st percentile (the darkest ground, standing for
zero reflectance) is subtracted, and all bands are divided by one common divisor that puts
the median ground at :data:`GROUND_LEVEL` (0.1, a typical land reflectance in the visible).
One divisor for all bands keeps white things white where the bands share roughly one gain,
as the DN of one sensor do.

A pixel is cloud where every test that its bands allow passes:

- brightness: the mean of the visible ``x`` is above ``brightness``;
- whiteness: the sum of the absolute deviations of the visible ``x`` from their mean,
  relative to that mean, is below ``whiteness`` (clouds are flat across the visible; 0.7
  as in Fmask);
- haze-optimized transform: ``HOT = blue - (slope * red + intercept)`` is above ``hot``.
  In reflectance the clear-sky line is ``blue = 0.5 * red + 0.08`` (Zhang et al. 2002,
  as Fmask uses it). In other units it is fitted (least squares of blue on red) on the
  clear pixels, those darker than the median brightness, and raised by
  :data:`FITTED_HOT_MARGIN` so that, as in reflectance, clear ground stays below zero;
- with a NIR band: NDVI ``(nir - red) / (nir + red)`` below ``ndvi`` (clouds are not green);
- with a SWIR band: ``x`` of the SWIR above ``swir`` and NDSI
  ``(green - swir) / (green + swir)`` below ``ndsi`` (not snow).

Clouds of fewer than ``min_cloud_pixels`` pixels are dropped, the others grown by
``buffer`` pixels. Shadows are dark pixels (NIR, or without one the visible brightness,
below ``shadow_darkness``) where clouds can cast them: with the
sun's azimuth and elevation, the cloud mask projected away from the sun for cloud heights
from ``cloud_heights[0]`` to ``cloud_heights[1]`` (in the units of the CRS, metres for a
projected one); without them, within ``shadow_distance`` pixels of a cloud. Bright
spots a shadow encloses are shadow too (lit ground darkened by a shadow can still be
brighter than ``shadow_darkness``), and shadows are grown by ``buffer`` pixels as well.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any, cast

import numpy as np
from attrs import define, field, frozen

from ..errors import SpectralMatchError
from ..geo.grid import PixelGrid
from .base import Mask, MaskTarget

#: Most pixels a side of the decimated read that scales an image's values.
SCALE_READ_SIZE = 1024
#: Where the median ground is put by the scaling of non-reflectance values.
GROUND_LEVEL = 0.1
#: How far above the fitted clear-sky line the HOT of non-reflectance values is zero.
FITTED_HOT_MARGIN = 0.04
#: The clear-sky line in reflectance: blue = slope * red + intercept.
REFLECTANCE_HOT_LINE = (0.5, 0.08)
#: The values of a classified pixel.
CLEAR, CLOUD, SHADOW = 0, 1, 2
ROLES = ("blue", "green", "red", "nir", "swir")


@frozen
class BandRoles:
    """Which band (1-based) holds which part of the spectrum; None where there is none."""

    blue: int
    green: int
    red: int
    nir: int | None = None
    swir: int | None = None

    @classmethod
    def resolve(
        cls, given: dict[str, int | None], descriptions: tuple[str | None, ...], name: str
    ) -> BandRoles:
        """The roles ``given`` (band numbers by role), the missing ones read from the band
        ``descriptions`` of the image ``name``; an error unless blue, green and red are
        known and every band number exists."""
        roles = dict(given)
        for role in ROLES:
            if roles.get(role) is None:
                roles[role] = band_named(role, descriptions)
        missing = [role for role in ROLES[:3] if roles[role] is None]
        if missing:
            raise SpectralMatchError(
                f"{name}: the cloud test needs the {', '.join(missing)} band(s); give their "
                f"numbers ({', '.join(role + '_band' for role in missing)}, 1-based) or band "
                f"descriptions naming them (descriptions: {descriptions})"
            )
        for role in ROLES:
            band = roles[role]
            if band is not None and not _is_band(band, len(descriptions)):
                raise SpectralMatchError(
                    f"{name}: {role}_band={band!r} but the image has bands 1 to {len(descriptions)}"
                )
        return cls(**cast(dict[str, Any], roles))  # blue, green and red are known

    @property
    def visible(self) -> list[int]:
        """0-based array indices of the blue, green and red bands."""
        return [self.blue - 1, self.green - 1, self.red - 1]

    def index(self, role: str) -> int | None:
        """0-based array index of ``role``'s band, None without one."""
        band = getattr(self, role)
        return None if band is None else band - 1


def _is_band(band: object, count: int) -> bool:
    return isinstance(band, int) and not isinstance(band, bool) and 1 <= band <= count


def band_named(role: str, descriptions: tuple[str | None, ...]) -> int | None:
    """The first band whose description names ``role`` ("B4 red", "NIR", "SWIR1")."""
    for band, description in enumerate(descriptions, start=1):
        words = re.findall(r"[a-z]+", (description or "").lower())
        infrared = "infrared" in words
        found = {
            "blue": "blue" in words,
            "green": "green" in words,
            "red": "red" in words and not infrared,
            "nir": "nir" in words or (infrared and "near" in words),
            "swir": "swir" in words or (infrared and ("shortwave" in words or "short" in words)),
        }
        if found[role]:
            return band
    return None


@frozen
class CloudScale:
    """How one image's values become reflectance-like: ``(value - offsets[band]) /
    divisor``, and its clear-sky line ``blue = hot_slope * red + hot_intercept`` (in
    reflectance-like units)."""

    offsets: tuple[float, ...]
    divisor: float
    hot_slope: float
    hot_intercept: float

    @classmethod
    def estimate(
        cls, values: np.ndarray, valid: np.ndarray, roles: BandRoles, reflectance: bool
    ) -> CloudScale:
        """The scale of ``values`` (bands, rows, cols) from its ``valid`` pixels (rows,
        cols): none for ``reflectance``, else robust statistics (see the module notes)."""
        count = values.shape[0]
        if reflectance:
            return cls((0.0,) * count, 1.0, *REFLECTANCE_HOT_LINE)
        pixels = values[:, valid].astype(np.float64)
        if pixels.shape[1] < 2:
            return cls((0.0,) * count, 1.0, *REFLECTANCE_HOT_LINE)
        offsets = np.percentile(pixels, 1, axis=1)
        visible = roles.visible
        spread = float(np.mean(np.median(pixels[visible], axis=1) - offsets[visible]))
        divisor = spread / GROUND_LEVEL if spread > 0 else 1.0
        x = (pixels - offsets[:, None]) / divisor
        blue, _, red = roles.visible
        slope, intercept = _clear_line(x[blue], x[red], x[visible])
        return cls(tuple(float(v) for v in offsets), divisor, slope, intercept + FITTED_HOT_MARGIN)

    def apply(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Reflectance-like float values, NaN where not ``valid``."""
        x = (values.astype(np.float64) - np.asarray(self.offsets)[:, None, None]) / self.divisor
        x[:, ~valid] = np.nan
        return x


def _clear_line(blue: np.ndarray, red: np.ndarray, visible: np.ndarray) -> tuple[float, float]:
    """Least-squares line of blue on red over the pixels darker than the median brightness."""
    brightness = visible.mean(axis=0)
    clear = brightness <= np.median(brightness)
    if np.ptp(red[clear]) == 0:
        return REFLECTANCE_HOT_LINE
    slope, intercept = np.polyfit(red[clear], blue[clear], 1)
    return float(slope), float(intercept)


@define
class CloudMask(Mask):
    """Clouds and cloud shadows found by a spectral test (see :mod:`spectralmatch.masks.cloud`
    for the tests and how values in any unit are scaled).

    Parameters
    ----------
    blue_band, green_band, red_band, nir_band, swir_band : int, optional
        Band numbers (1-based); the ones not given are read from the band descriptions
        ("B2 blue", "NIR", "SWIR1"...). Blue, green and red are needed.
    reflectance : bool, default False
        The values are reflectance (0 to 1); otherwise they are scaled by robust statistics.
    brightness : float, default 0.35
        Least mean visible reflectance(-like value) of a cloud.
    whiteness : float, default 0.7
        Largest relative spread of a cloud's visible values.
    hot : float, default 0.0
        Least haze-optimized transform of a cloud.
    ndvi : float, default 0.8
        Largest NDVI of a cloud (with a NIR band).
    swir : float, default 0.03
        Least SWIR reflectance(-like value) of a cloud (with a SWIR band).
    ndsi : float, default 0.8
        Largest NDSI of a cloud, to tell snow apart (with a SWIR band).
    min_cloud_pixels : int, default 16
        Clouds of fewer pixels (8-connected) are dropped: bright white specks are roofs,
        sand and sun glint far more often than clouds.
    buffer : int, default 2
        Pixels by which clouds and shadows are grown.
    shadows : bool, default True
        Find cloud shadows too.
    sun_azimuth, sun_elevation : float, optional
        The sun's position in degrees (azimuth clockwise from north), to look for shadows
        only where clouds cast them.
    cloud_heights : (float, float), default (200, 3000)
        The range of cloud heights, in CRS units, shadows are projected for.
    shadow_darkness : float, default 0.05
        Largest reflectance(-like value) of a shadow (NIR, else the visible brightness).
    shadow_distance : int, default 30
        Without the sun's position: how many pixels from a cloud a shadow may lie.
    scale : CloudScale, optional
        The scaling of the values; default: estimated once per image from a decimated
        read of all of it (:meth:`image_scale`).

    Notes
    -----
    Band descriptions and the nodata value are taken from the image judged when it has
    them (an :class:`~spectralmatch.Image` does); pixels nodata in any band are not judged.

    As a mask of an image (``Image(path, mask=CloudMask())``) each window the fit reads is
    judged on its own, scaled by the whole image's values: a cloud or a shadow across a
    window's edge is found on each side by its own pixels, without the buffer and shadow
    search reaching over the edge. Masks written by
    :func:`~spectralmatch.create_cloud_mask` have no such seams (each window is read with
    a margin of :meth:`margin` pixels).
    """

    blue_band: int | None = None
    green_band: int | None = None
    red_band: int | None = None
    nir_band: int | None = None
    swir_band: int | None = None
    reflectance: bool = False
    brightness: float = 0.35
    whiteness: float = 0.7
    hot: float = 0.0
    ndvi: float = 0.8
    swir: float = 0.03
    ndsi: float = 0.8
    min_cloud_pixels: int = 16
    buffer: int = 2
    shadows: bool = True
    sun_azimuth: float | None = None
    sun_elevation: float | None = None
    cloud_heights: tuple[float, float] = field(default=(200.0, 3000.0), converter=tuple)
    shadow_darkness: float = 0.05
    shadow_distance: int = 30
    scale: CloudScale | None = None
    _scales: dict[str, CloudScale] = field(factory=dict, init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        for name in ("min_cloud_pixels", "buffer", "shadow_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpectralMatchError(f"CloudMask: {name} must be an int >= 0, got {value!r}")
        if (self.sun_azimuth is None) != (self.sun_elevation is None):
            raise SpectralMatchError(
                "CloudMask: give both sun_azimuth and sun_elevation, or neither"
            )
        if self.sun_elevation is not None and not 0 < self.sun_elevation <= 90:
            raise SpectralMatchError(
                f"CloudMask: sun_elevation must be in (0, 90] degrees, got {self.sun_elevation!r}"
            )
        low, high = self.cloud_heights
        if not 0 <= low <= high:
            raise SpectralMatchError(
                f"CloudMask: cloud_heights must be (low, high) with 0 <= low <= high, "
                f"got {self.cloud_heights!r}"
            )

    def roles(self, target: MaskTarget, count: int) -> BandRoles:
        """The band roles for ``target`` (given, else from its band descriptions)."""
        descriptions = tuple(getattr(target, "descriptions", ())) or (None,) * count
        given = {role: getattr(self, f"{role}_band") for role in ROLES}
        return BandRoles.resolve(given, descriptions, target.name)

    def margin(self, pixel_size: tuple[float, float]) -> int:
        """Pixels around a window that its buffer and shadow search can reach."""
        if not self.shadows:
            return self.buffer
        if self.sun_elevation is None:
            return self.shadow_distance + 2 * self.buffer
        longest = self.cloud_heights[1] / math.tan(math.radians(self.sun_elevation))
        return math.ceil(longest / min(pixel_size)) + 2 * self.buffer

    def excluded(self, target: MaskTarget, values: np.ndarray, grid: PixelGrid) -> np.ndarray:
        nodata = getattr(target, "nodata", None)
        valid = _valid(values, nodata)
        roles = self.roles(target, values.shape[0])
        if hasattr(target, "read_on_grid"):  # an image: scaled by all of its values
            scale = self.image_scale(target)
        else:
            scale = self.scale or CloudScale.estimate(values, valid, roles, self.reflectance)
        return self.classify(values, valid, roles, scale, grid.pixel_size) != CLEAR

    def image_scale(self, image: Any, dataset: Any = None) -> CloudScale:
        """The scale of ``image``'s values (an :class:`~spectralmatch.Image`): ``scale``
        if given, else estimated once per image from a decimated read of all of it (at
        most :data:`SCALE_READ_SIZE` pixels a side), so that a window full of cloud is
        not scaled by the cloud."""
        if self.scale is not None:
            return self.scale
        key = str(image.path)
        if key not in self._scales:
            factor = max(1.0, max(image.shape) / SCALE_READ_SIZE)
            shape = (max(1, round(image.height / factor)), max(1, round(image.width / factor)))
            with contextlib.ExitStack() as stack:
                opened = dataset if dataset is not None else stack.enter_context(image.open())
                values, valid = image.read_on_grid(image.grid.resampled(shape), opened)
            roles = self.roles(image, image.count)
            self._scales[key] = CloudScale.estimate(
                values, np.all(valid, axis=0), roles, self.reflectance
            )
        return self._scales[key]

    def classify(
        self,
        values: np.ndarray,
        valid: np.ndarray,
        roles: BandRoles,
        scale: CloudScale,
        pixel_size: tuple[float, float],
    ) -> np.ndarray:
        """uint8 array (rows, cols): :data:`CLEAR`, :data:`CLOUD` or :data:`SHADOW`, for
        ``values`` (bands, rows, cols) whose ``valid`` pixels (rows, cols) are judged."""
        from scipy import ndimage

        x = scale.apply(values, valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            core = self._cloud_tests(x, roles, scale)
            dark = self._dark(x, roles)
        core = _without_small(core, self.min_cloud_pixels)
        cloud = _grow(core, self.buffer)
        labels = np.where(cloud, CLOUD, CLEAR).astype(np.uint8)
        if self.shadows and core.any():
            found = ndimage.binary_fill_holes(dark & self._shadow_zone(core, pixel_size))
            shadow = _grow(found, self.buffer)
            labels[shadow & ~cloud] = SHADOW
        return labels

    def _cloud_tests(self, x: np.ndarray, roles: BandRoles, scale: CloudScale) -> np.ndarray:
        blue, green, red = (x[index] for index in roles.visible)
        mean = (blue + green + red) / 3
        spread = abs(blue - mean) + abs(green - mean) + abs(red - mean)
        hot = blue - (scale.hot_slope * red + scale.hot_intercept)
        cloud = (mean > self.brightness) & (spread < self.whiteness * mean) & (hot > self.hot)
        nir_index, swir_index = roles.index("nir"), roles.index("swir")
        if nir_index is not None:
            nir = x[nir_index]
            cloud &= (nir - red) / (nir + red) < self.ndvi
        if swir_index is not None:
            swir = x[swir_index]
            cloud &= (swir > self.swir) & ((green - swir) / (green + swir) < self.ndsi)
        return cloud

    def _dark(self, x: np.ndarray, roles: BandRoles) -> np.ndarray:
        nir_index = roles.index("nir")
        if nir_index is not None:
            return x[nir_index] < self.shadow_darkness
        return x[roles.visible].mean(axis=0) < self.shadow_darkness

    def _shadow_zone(self, cloud: np.ndarray, pixel_size: tuple[float, float]) -> np.ndarray:
        """Where the clouds can cast a shadow."""
        if self.sun_azimuth is None or self.sun_elevation is None:
            return _grow(cloud, self.shadow_distance)
        azimuth = math.radians(self.sun_azimuth)
        per_height = 1 / math.tan(math.radians(self.sun_elevation))
        near, far = (height * per_height for height in self.cloud_heights)
        steps = max(2, math.ceil((far - near) / min(pixel_size)) + 1)
        zone = np.zeros_like(cloud)
        for distance in np.linspace(near, far, steps):
            # away from the sun: east -sin(azimuth), north -cos(azimuth); rows run south
            columns = round(-math.sin(azimuth) * distance / pixel_size[0])
            rows = round(math.cos(azimuth) * distance / pixel_size[1])
            zone |= _shifted(cloud, rows, columns)
        return zone


def _valid(values: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels whose every band holds data."""
    valid = np.ones(values.shape[1:], dtype=bool)
    if values.dtype.kind == "f":
        valid &= np.isfinite(values).all(axis=0)
    if nodata is not None and not math.isnan(nodata):
        valid &= (values != np.array(nodata).astype(values.dtype)).all(axis=0)
    return valid


def _without_small(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` less its connected parts (8-connected) of fewer than ``pixels`` pixels."""
    from scipy import ndimage

    if pixels <= 1 or not mask.any():
        return mask
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())
    return (sizes >= pixels)[labels] & mask


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` (a disk)."""
    from scipy import ndimage

    if pixels == 0 or not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask) <= pixels


def _shifted(mask: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """``mask`` moved by ``rows`` down and ``columns`` right, False where it came from
    outside."""
    result = np.zeros_like(mask)
    height, width = mask.shape
    if abs(rows) >= height or abs(columns) >= width:
        return result
    source = mask[max(-rows, 0) : height - max(rows, 0), max(-columns, 0) : width - max(columns, 0)]
    result[max(rows, 0) : height - max(-rows, 0), max(columns, 0) : width - max(-columns, 0)] = (
        source
    )
    return result
