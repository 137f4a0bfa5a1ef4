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
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from .._validation import Constraint, check
from ..errors import NotFittedError, SpectralMatchError

E = TypeVar("E", bound="Estimator")


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

    def set_params(self: E, **params: Any) -> E:
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
            check(type(self).__name__, name, getattr(self, name), constraint)

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
    for position, values in grouped.items():
        value[position].set_params(**values)


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
