"""GDAL VRTs of an image that carry its validity to GDAL's own reads.

GDAL leaves a file's own nodata out of what it averages (a read at another resolution,
the warper); the validity an :class:`~spectralmatch.Image` adds to its file (a nodata
value given instead of the file's, a mask band, infinite values) it cannot know. These
VRTs declare it, and are read as paths, window by window, without a copy of the image:

- :func:`nodata_vrt`: the file with the image's nodata value declared, in its own type
  (:func:`open_for_resampling` opens it where the value was given);
- :func:`nan_masked_vrt`: float64 values with NaN wherever the image is not valid, for
  the warper (a float64 copy would take 216 MB for 3000 x 3000 x 3, 3.5 GB for 12 000 px).
"""

from __future__ import annotations

import math
from xml.etree import ElementTree

import rasterio
from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.io import DatasetReader

from .files import gdal_path
from .image import Image


def open_for_resampling(image: Image) -> DatasetReader:
    """Open ``image`` for reads at another resolution (``out_shape`` with an averaging
    resampling): a nodata value it was given instead of its file's own is declared to
    GDAL (:func:`nodata_vrt`), which then leaves it out of its averages as it would the
    file's own (use as a context manager)."""
    if image.nodata_given:
        return rasterio.open(nodata_vrt(image))
    return image.open()


def nodata_vrt(image: Image) -> str:
    """A GDAL VRT (XML, to open as a path) of ``image``'s file in its own data type, with
    the image's nodata value (given instead of the file's) declared on every band, so
    that GDAL's resampled reads leave it out of their averages as they leave out a
    file's own."""
    if image.nodata is None:
        raise ValueError(f"{image.path}: no nodata value to declare")
    root = _dataset(image)
    data_type = typename_fwd[dtype_rev[image.dtype]]
    for band in range(1, image.count + 1):
        element = ElementTree.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(band))
        ElementTree.SubElement(element, "NoDataValue").text = repr(float(image.nodata))
        _add_source(element, image, band)
    return ElementTree.tostring(root, encoding="unicode")


def nan_masked_vrt(image: Image) -> str:
    """A GDAL VRT (XML, to open as a path) of ``image`` in float64, NaN where invalid.

    Each band takes the file's band with the image's nodata value (the file's or the one
    it was given) left out, or its mask band where validity comes from one. A floating
    point band is the sum ``x - x + x`` of three such sources: exactly ``x`` where ``x``
    is finite (``x - x`` is 0), NaN where it is infinite (``inf - inf``).
    """
    root = _dataset(image)
    floating = image.dtype.startswith("float")
    for band in range(1, image.count + 1):
        element = ElementTree.SubElement(root, "VRTRasterBand", dataType="Float64", band=str(band))
        ElementTree.SubElement(element, "NoDataValue").text = "nan"
        _add_source(element, image, band)
        if floating:
            element.set("subClass", "VRTDerivedRasterBand")
            ElementTree.SubElement(element, "PixelFunctionType").text = "sum"
            ElementTree.SubElement(element, "SourceTransferType").text = "Float64"
            negated = _add_source(element, image, band)
            ElementTree.SubElement(negated, "ScaleOffset").text = "0"
            ElementTree.SubElement(negated, "ScaleRatio").text = "-1"
            _add_source(element, image, band)
    return ElementTree.tostring(root, encoding="unicode")


def _dataset(image: Image) -> ElementTree.Element:
    """The VRT's dataset element: ``image``'s size, CRS and geotransform."""
    root = ElementTree.Element(
        "VRTDataset", rasterXSize=str(image.width), rasterYSize=str(image.height)
    )
    if image.crs is not None:
        ElementTree.SubElement(root, "SRS").text = image.crs.to_wkt()
    geotransform = ", ".join(repr(float(value)) for value in image.transform.to_gdal())
    ElementTree.SubElement(root, "GeoTransform").text = geotransform
    return root


def _add_source(element: ElementTree.Element, image: Image, band: int) -> ElementTree.Element:
    """Band ``band`` of ``image``'s file as a source of ``element``, less what is invalid."""
    source = ElementTree.SubElement(element, "ComplexSource")
    ElementTree.SubElement(source, "SourceFilename", relativeToVRT="0").text = gdal_path(image.path)
    ElementTree.SubElement(source, "SourceBand").text = str(band)
    size = {"xSize": str(image.width), "ySize": str(image.height)}
    ElementTree.SubElement(source, "SrcRect", {"xOff": "0", "yOff": "0", **size})
    ElementTree.SubElement(source, "DstRect", {"xOff": "0", "yOff": "0", **size})
    nodata = image.nodata
    if nodata is not None and not math.isnan(nodata):
        ElementTree.SubElement(source, "NODATA").text = repr(float(nodata))
    elif image.uses_mask_band:
        ElementTree.SubElement(source, "UseMaskBand").text = "true"
    return source
