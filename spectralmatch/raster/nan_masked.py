"""An image as float64 values with NaN wherever it is not valid, read lazily by GDAL.

GDAL's warper then averages an image onto another grid straight from its file, window
by window, as it would a float64 copy of the whole image with its invalid values set to
NaN (:meth:`Image.valid_mask <spectralmatch.Image.valid_mask>`: nodata, masked, not
finite), but without holding that copy: 216 MB for 3000 x 3000 x 3, 3.5 GB for 12 000 px.
"""

from __future__ import annotations

import math
from xml.etree import ElementTree

from .files import gdal_path
from .image import Image


def nan_masked_vrt(image: Image) -> str:
    """A GDAL VRT (XML, to open as a path) of ``image`` in float64, NaN where invalid.

    Each band takes the file's band with the image's nodata value (the file's or the one
    it was given) left out, or its mask band where validity comes from one. A floating
    point band is the sum ``x - x + x`` of three such sources: exactly ``x`` where ``x``
    is finite (``x - x`` is 0), NaN where it is infinite (``inf - inf``).
    """
    root = ElementTree.Element(
        "VRTDataset", rasterXSize=str(image.width), rasterYSize=str(image.height)
    )
    if image.crs is not None:
        ElementTree.SubElement(root, "SRS").text = image.crs.to_wkt()
    geotransform = ", ".join(repr(float(value)) for value in image.transform.to_gdal())
    ElementTree.SubElement(root, "GeoTransform").text = geotransform
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
