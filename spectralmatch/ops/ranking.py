"""Weighted seamlines: footprints ranked by an arithmetic ``rank_function`` over their
attributes, the best-ranked painted last."""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Callable
from typing import Any

from attrs import define

from ..errors import SpectralMatchError, SpectralMatchWarning
from ..geo.regions import as_region, union


def ranked_footprints(layer, field: str, score: RankFunction, descending: bool):
    """(name, footprint, attributes with ``weighted_score``) of each image, best-ranked
    first."""
    scored = []
    for name, features in layer.groupby(field, sort=False):
        values = features.iloc[0].drop(labels=[features.geometry.name]).to_dict()
        value = score(values, f"image {name}")
        attributes = {**values, "weighted_score": value}
        key = (-value if descending else value, str(name))
        scored.append((key, str(name), union(features.geometry), attributes))
    return [(name, footprint, values) for _, name, footprint, values in sorted(scored)]


def painted(ranked: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each footprint less the ones ranked above it; wholly hidden images dropped (with
    a warning)."""
    from shapely.geometry import Polygon

    regions: dict[str, Any] = {}
    covered = Polygon()
    hidden = []
    for name, footprint in ranked:
        region = as_region(footprint.difference(covered))
        if region.is_empty:
            hidden.append(name)
            continue
        regions[name] = region
        covered = covered.union(footprint)
    if hidden:
        warnings.warn(
            f"Seamline.weighted: {', '.join(hidden)} are wholly covered by better-ranked "
            "images and get no seamline polygon",
            SpectralMatchWarning,
            stacklevel=4,
        )
    return regions


_RANK_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
}


_RANK_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@define
class RankFunction:
    """A parsed ``rank_function``: arithmetic over ``{field}`` placeholders, evaluated
    on a feature's values without ``eval``."""

    text: str
    tree: ast.expr
    fields: dict[str, str]  # variable name in the tree -> field name

    @classmethod
    def parse(cls, text: Any) -> RankFunction:
        if not isinstance(text, str) or not _PLACEHOLDER.search(text):
            raise SpectralMatchError(
                "Seamline.weighted: rank_function must be an expression of fields in "
                f"braces, e.g. '{{cloud_cover}}', got {text!r}"
            )
        names: dict[str, str] = {}
        for match in _PLACEHOLDER.finditer(text):
            names.setdefault(match.group(1), f"field_{len(names)}")
        rewritten = _PLACEHOLDER.sub(lambda match: names[match.group(1)], text)
        try:
            tree = ast.parse(rewritten, mode="eval").body
        except SyntaxError as error:
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {text!r} is not an expression ({error.msg})"
            ) from None
        return cls(text, tree, {variable: field for field, variable in names.items()})

    def __call__(self, values: dict[str, Any], what: str) -> float:
        """The score of a feature with ``values`` (``what`` names it in errors)."""
        missing = [field for field in self.fields.values() if field not in values]
        if missing:
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {self.text!r} uses {missing[0]!r}, "
                "which is not a field of input_polygons"
            )
        try:
            score = float(self._evaluate(self.tree, values))
        except (ArithmeticError, TypeError, ValueError) as error:
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {self.text!r} fails for {what} ({error})"
            ) from None
        if not math.isfinite(score):
            raise SpectralMatchError(
                f"Seamline.weighted: rank_function {self.text!r} gives {score} for {what}"
            )
        return score

    def _evaluate(self, node: ast.expr, values: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.fields:
            return values[self.fields[node.id]]
        if isinstance(node, ast.BinOp) and type(node.op) in _RANK_OPERATORS:
            left, right = self._evaluate(node.left, values), self._evaluate(node.right, values)
            return _RANK_OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _RANK_OPERATORS:
            return _RANK_OPERATORS[type(node.op)](self._evaluate(node.operand, values))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _RANK_FUNCTIONS
            and not node.keywords
        ):
            arguments = [self._evaluate(argument, values) for argument in node.args]
            return _RANK_FUNCTIONS[node.func.id](*arguments)
        raise ValueError(f"{ast.unparse(node)!r} is not allowed")
