"""The estimator contract shared by the model and its steps (scikit-learn style)."""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import NotFittedError, SpectralMatchError


class Estimator:
    """Hyper-parameters are the constructor's arguments, stored unchanged.

    ``get_params`` / ``set_params`` read and write them; learned state lives in
    attributes with a trailing underscore.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [
            name
            for name, parameter in signature.parameters.items()
            if name != "self" and parameter.kind in kinds
        ]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Estimator:
        """Change hyper-parameters; returns ``self``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise SpectralMatchError(
                    f"{type(self).__name__} has no parameter {name!r} "
                    f"(parameters: {', '.join(valid)})"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({params})"


def check_is_fitted(estimator: Estimator, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has the learned ``attribute``."""
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet; call fit() with a collection first"
        )


def reference_indices(reference, names: list[str]) -> set[int]:
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
