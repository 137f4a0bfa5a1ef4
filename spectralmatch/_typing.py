"""Types shared across the package: bounds, path-likes, and the option values as literals."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from rasterio import Affine

#: (left, bottom, right, top) in CRS units.
Bounds = tuple[float, float, float, float]

#: A folder and a file pattern inside it: ``("data", "*.tif")``, ``("out", "$_Global.tif")``.
FolderPattern = tuple[str | os.PathLike, str]

#: A raster file, folder or glob pattern, a (folder, pattern) pair, or a list of them.
PathsLike = str | os.PathLike | FolderPattern | Iterable[str | os.PathLike | FolderPattern]

#: An output folder; a template where ``$`` (or ``*``) stands for each input's name, alone or
#: as a (folder, template) pair; one output file (one image only); or one path per image.
OutputsLike = str | os.PathLike | FolderPattern | Sequence[str | os.PathLike]

#: Image references: names or positions in the collection.
References = Sequence[str | int] | None

Correction = Literal["wallis", "offset", "gain", "gamma"]
WorkingDtype = Literal["float32", "float64"]
OutputDtype = Literal["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
MaskMode = Literal["include", "exclude"]
ResolutionName = Literal["highest", "lowest", "average"]
ResamplingName = Literal[
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "max",
    "min",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
]
SeamlineMethod = Literal["voronoi", "least-cost"]
ExecutorName = Literal["serial", "threads", "processes"]
StepName = Literal["global", "histogram", "local"]

#: The steps of the default model (``Mosaic()`` and ``spectralmatch match``), in order.
DEFAULT_STEPS: tuple[StepName, ...] = ("global", "local")


class Georeferenced(Protocol):
    """Anything placed on a north-up or rotated pixel grid: an image, for the geometry."""

    @property
    def transform(self) -> Affine: ...

    @property
    def bounds(self) -> Bounds: ...
