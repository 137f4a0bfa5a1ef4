"""What a fitted model does, as short text tables: per image its gains and offsets (their
range over the blocks for the local step), per overlap how far apart the images were
before and after the fit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import SpectralMatchError
from ..model.block_map import BlockMap
from ..model.global_model import FitDiagnostics, GlobalModel
from ..model.pipeline import Mosaic

#: Decimals printed for gains, and for offsets and differences (in the images' units).
GAIN_DECIMALS, VALUE_DECIMALS = 4, 2


def fit_summary(model: Mosaic) -> str:
    """Text tables of a fitted model, one part per step.

    A :class:`~spectralmatch.GlobalModel` gives each image's gain and offset per band,
    and for each overlap the absolute difference of the two images' means per band
    before and after its fit (from ``diagnostics_``; a model saved without them says
    so). A :class:`~spectralmatch.BlockMap` gives the range of each image's gains and
    offsets over its blocks. Other steps are named only.

    Examples
    --------
    >>> from spectralmatch import GlobalModel, Mosaic
    >>> print(fit_summary(Mosaic(steps=[GlobalModel()]).fit("data/")).splitlines()[0])
    GlobalModel: gain and offset per image (band 1 / 2 / 3)
    """
    parts = []
    for step in model.steps_:
        if isinstance(step, GlobalModel):
            parts += [_global_table(step), _overlap_table(step.diagnostics_)]
        elif isinstance(step, BlockMap):
            parts.append(_block_table(step))
        else:
            parts.append(f"{type(step).__name__}: no summary for this step")
    return "\n\n".join(parts)


def _bands(n_bands: int) -> str:
    return "band " + " / ".join(str(band) for band in range(1, n_bands + 1))


def _values(values: Iterable[float], decimals: int) -> str:
    return " / ".join(f"{value:.{decimals}f}" for value in values)


def _ranges(values: np.ndarray, decimals: int) -> str:
    """Per band (first axis), ``low..high`` over the rest."""
    flat = values.reshape(len(values), -1)
    return " / ".join(
        f"{low:.{decimals}f}..{high:.{decimals}f}"
        for low, high in zip(flat.min(axis=1), flat.max(axis=1), strict=True)
    )


def _table(title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = [title, "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _global_table(step: GlobalModel) -> str:
    rows = [
        (name, _values(gains, GAIN_DECIMALS), _values(offsets, VALUE_DECIMALS))
        for name, gains, offsets in zip(step.images_, step.gains_, step.offsets_, strict=True)
    ]
    title = f"GlobalModel: gain and offset per image ({_bands(step.gains_.shape[1])})"
    return _table(title, ("image", "gain", "offset"), rows)


def _overlap_table(diagnostics: FitDiagnostics | None) -> str:
    if diagnostics is None:
        return (
            "GlobalModel: overlap diagnostics are not available (the model was saved without them)"
        )
    rows = [
        (
            f"{first} - {second}",
            str(int(count.min())),
            _values(np.abs(before), VALUE_DECIMALS),
            _values(np.abs(after), VALUE_DECIMALS),
        )
        for (first, second), count, before, after in zip(
            diagnostics.pairs,
            diagnostics.count,
            diagnostics.mean_difference_before,
            diagnostics.mean_difference_after,
            strict=True,
        )
    ]
    title = (
        "GlobalModel: per overlap, |mean difference| of the two images "
        f"({_bands(diagnostics.count.shape[1])})"
    )
    return _table(title, ("overlap", "pixels", "before", "after"), rows)


def _block_table(step: BlockMap) -> str:
    try:
        fields = [step.block_gains_offsets(name, near=True) for name in step.images_]
    except SpectralMatchError as error:
        return f"BlockMap: {error}"
    rows = [
        (name, _ranges(gains, GAIN_DECIMALS), _ranges(offsets, VALUE_DECIMALS))
        for name, (gains, offsets) in zip(step.images_, fields, strict=True)
    ]
    title = (
        "BlockMap: range of gain and offset over the blocks near each image "
        f"({_bands(len(fields[0][0]))})"
    )
    return _table(title, ("image", "gain", "offset"), rows)
