"""Output paths: one per input image, never an input itself."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .._typing import OutputsLike
from ..errors import SpectralMatchError
from .collection import ImageCollection


def output_arguments(collection: ImageCollection, output_images: OutputsLike) -> dict:
    """``out_dir`` or ``outputs`` for :func:`resolve_outputs` (and ``Mosaic.transform``).

    A folder keeps the input file names; a pattern with ``*`` (``"out/*_matched.tif"``)
    puts each input's stem in place of the ``*``; a list gives one path per image.
    """
    if isinstance(output_images, (str, os.PathLike)):
        text = os.fspath(output_images)
        if "*" in text:
            return {"outputs": [text.replace("*", image.name) for image in collection]}
        return {"out_dir": Path(text)}
    return {"outputs": list(output_images)}


def resolve_outputs(
    collection: ImageCollection,
    out_dir: str | os.PathLike | None = None,
    outputs: Sequence[str | os.PathLike] | None = None,
) -> list[Path]:
    """Output paths: given one per image, or the input file names in ``out_dir``.

    Creates the output folder; refuses paths that are inputs.
    """
    if (out_dir is None) == (outputs is None):
        raise SpectralMatchError("give either out_dir or outputs")
    if outputs is not None:
        paths = [Path(p) for p in outputs]
        if len(paths) != len(collection):
            raise SpectralMatchError(f"{len(paths)} output paths for {len(collection)} images")
    else:
        assert out_dir is not None
        paths = [Path(out_dir) / image.path.with_suffix(".tif").name for image in collection]
    if len(set(paths)) != len(paths):
        raise SpectralMatchError("two images would be written to the same output path")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_not_input(path, [image.path for image in collection])
    return paths


def check_not_input(output: Path, inputs: list[Path]) -> None:
    """Refuse to write over one of the inputs."""
    for path in inputs:
        if output.exists() and os.path.samefile(output, path):
            raise SpectralMatchError(
                f"{output}: is an input image; refusing to overwrite it "
                "(choose another output folder)"
            )
