"""The estimator contract shared by the model, its steps and its options (scikit-learn's).

- ``__init__`` takes keyword-only hyper-parameters and stores them unchanged; nothing is
  read, computed or validated there. A subclass whose ``__init__`` takes ``*args`` or
  ``**kwargs`` is refused when it is defined.
- ``get_params(deep=True)`` / ``set_params(steps__1__correction="offset")`` read and write
  them, nested estimators (and lists of them) included; :func:`clone` copies them into a
  new, unfitted estimator; ``repr`` shows those that differ from their defaults.
- What ``fit`` learns lives in attributes ending in ``_``; their presence is the fitted
  flag (:func:`check_is_fitted`).
- ``_validate_params()``, called by ``fit`` and ``transform``, checks every parameter
  against ``_parameter_constraints`` and raises a clear error naming the estimator.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from attrs import frozen

from ..errors import NotFittedError, SpectralMatchError


class Constraint:
    """One rule a parameter value must follow."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@frozen
class Interval(Constraint):
    """A real (or, with ``integer``, an integral) number within bounds."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # which ends belong to the interval: both, left, right, neither
    integer: bool = False

    def accepts(self, value: Any) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or math.isnan(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}")
        return f"{kind} {' and '.join(parts)}".rstrip()


@frozen
class Options(Constraint):
    """One of a few values (``None`` among them where it is allowed)."""

    values: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return any(
            value is option or (option is not None and value == option) for option in self.values
        )

    def describe(self) -> str:
        return "one of " + ", ".join(repr(option) for option in self.values)


@frozen
class InstanceOf(Constraint):
    """An instance of one of ``types``, described in words."""

    types: tuple[type, ...]
    description: str

    def accepts(self, value: Any) -> bool:
        if bool not in self.types and isinstance(value, bool):
            return False
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.description


@frozen
class AnyOf(Constraint):
    """Any of ``constraints``."""

    constraints: tuple[Constraint, ...]

    def accepts(self, value: Any) -> bool:
        return any(constraint.accepts(value) for constraint in self.constraints)

    def describe(self) -> str:
        return " or ".join(constraint.describe() for constraint in self.constraints)


@frozen
class References(Constraint):
    """Reference images: None, a name or position, or a list of them."""

    def accepts(self, value: Any) -> bool:
        if value is None or _is_key(value):
            return True
        return isinstance(value, Sequence) and all(_is_key(item) for item in value)

    def describe(self) -> str:
        return "None, an image name or position, or a list of them"


def _is_key(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


BOOLEAN = InstanceOf((bool,), "True or False")
NONE = Options((None,))
PATH = InstanceOf((str, os.PathLike), "a path")
POSITIVE = Interval(0, None, "neither")
NON_NEGATIVE = Interval(0, None)
POSITIVE_INTEGER = Interval(1, None, integer=True)


class Estimator:
    """Base class of everything with hyper-parameters: the model, its steps, detectors.

    Subclasses declare ``__init__(self, *, name=default, ...)`` storing each argument
    as an attribute of the same name, and ``_parameter_constraints``.
    """

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__init__ is object.__init__:
            return
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                stars = "*" if parameter.kind is parameter.VAR_POSITIONAL else "**"
                raise TypeError(
                    f"{cls.__name__}.__init__ takes {stars}{parameter.name}; an estimator "
                    "names every hyper-parameter in its signature (keyword-only), so that "
                    "get_params, clone and saving work"
                )

    @classmethod
    def _param_names(cls) -> list[str]:
        if cls.__init__ is object.__init__:
            return []
        parameters = inspect.signature(cls.__init__).parameters.values()
        return [parameter.name for parameter in parameters if parameter.name != "self"]

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        if cls.__init__ is object.__init__:
            return {}
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not p.empty}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters by name; with ``deep``, also those of nested estimators as
        ``<parameter>__<name>`` (and ``steps__<index>__<name>`` in a list of them)."""
        params: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            params[name] = value
            if not deep:
                continue
            for key, nested in _nested_estimators(value):
                params[f"{name}__{key}"] = nested
                for sub, sub_value in nested.get_params(deep=True).items():
                    params[f"{name}__{key}__{sub}"] = sub_value
            if isinstance(value, Estimator):
                for sub, sub_value in value.get_params(deep=True).items():
                    params[f"{name}__{sub}"] = sub_value
        return params

    def set_params(self, **params: Any) -> Estimator:
        """Change hyper-parameters, nested ones as ``step__name`` or
        ``steps__1__name``; returns ``self``."""
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, rest = key.partition("__")
            if name not in valid:
                raise SpectralMatchError(
                    f"{type(self).__name__} has no parameter {name!r} "
                    f"(parameters: {', '.join(valid)})"
                )
            if rest:
                nested.setdefault(name, {})[rest] = value
            else:
                setattr(self, name, value)
        for name, values in nested.items():
            _set_nested(self, name, getattr(self, name), values)
        return self

    def _validate_params(self) -> None:
        """Raise :class:`SpectralMatchError` unless every parameter follows its constraint."""
        for name, constraint in self._parameter_constraints.items():
            value = getattr(self, name)
            if not constraint.accepts(value):
                raise SpectralMatchError(
                    f"{type(self).__name__}: {name} must be {constraint.describe()}, got {value!r}"
                )

    def __repr__(self) -> str:
        defaults = self._defaults()
        shown = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            if not _same_value(value, default):
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _same_value(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if isinstance(value, Estimator) or isinstance(default, Estimator):
        return False
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):
        return False


def _nested_estimators(value: Any) -> list[tuple[str, Estimator]]:
    """``(index, estimator)`` for a list or tuple of estimators, else nothing."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Estimator) for v in value):
        return [(str(index), item) for index, item in enumerate(value)]
    return []


def _set_nested(owner: Estimator, name: str, value: Any, params: dict[str, Any]) -> None:
    """Apply ``params`` (keys without the ``name__`` prefix) to the estimator(s) in ``value``."""
    where = f"{type(owner).__name__}.{name}"
    if isinstance(value, Estimator):
        value.set_params(**params)
        return
    if not _nested_estimators(value):
        raise SpectralMatchError(f"{where} holds no estimator to set {', '.join(params)} on")
    grouped: dict[int, dict[str, Any]] = {}
    for key, item in params.items():
        index, _, rest = key.partition("__")
        if not index.isdigit() or int(index) >= len(value) or not rest:
            raise SpectralMatchError(
                f"{where}: {name}__{key} must name a position 0..{len(value) - 1} and a "
                "parameter, e.g. steps__1__correction"
            )
        grouped.setdefault(int(index), {})[rest] = item
    for index, values in grouped.items():
        value[index].set_params(**values)


def clone(estimator: Any) -> Any:
    """A new, unfitted estimator with the same hyper-parameters (deep: nested estimators
    are cloned too); lists and tuples are cloned element by element, anything else is
    deep-copied.

    Examples
    --------
    >>> from spectralmatch import GlobalModel
    >>> clone(GlobalModel(robust=True))
    GlobalModel(robust=True)
    """
    if isinstance(estimator, (list, tuple)):
        return type(estimator)(clone(item) for item in estimator)
    if not isinstance(estimator, Estimator):
        return copy.deepcopy(estimator)
    params = {name: clone(value) for name, value in estimator.get_params(deep=False).items()}
    return type(estimator)(**params)


def is_fitted(estimator: Estimator) -> bool:
    """Whether ``fit`` has run: some attribute ends in ``_`` (learned state)."""
    return any(name.endswith("_") and not name.startswith("__") for name in vars(estimator))


def check_is_fitted(estimator: Estimator, attributes: str | Sequence[str] | None = None) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` is fitted.

    Parameters
    ----------
    estimator : Estimator
    attributes : str or list of str, optional
        Learned attributes that must exist; by default, any attribute ending in ``_``.
    """
    if attributes is None:
        fitted = is_fitted(estimator)
    else:
        names = [attributes] if isinstance(attributes, str) else list(attributes)
        fitted = all(getattr(estimator, name, None) is not None for name in names)
    if not fitted:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call fit() with a collection first"
        )


def reference_indices(reference: Any, names: list[str]) -> set[int]:
    """Positions of the reference images given by name or position (None: none)."""
    if reference is None:
        return set()
    keys = [reference] if isinstance(reference, (str, int)) else reference
    indices = set()
    for key in keys:
        if isinstance(key, int) and -len(names) <= key < len(names):
            indices.add(key % len(names))
        elif key in names:
            indices.add(names.index(key))
        else:
            raise SpectralMatchError(
                f"reference image {key!r} is not among the images ({', '.join(names)})"
            )
    return indices
