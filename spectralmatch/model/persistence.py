"""Model files: a JSON document (and an ``.npz`` sidecar for large arrays), checked field
by field on reading.

Steps are recorded by their importable class path (``module:QualifiedName``; the
package's own steps by their public name, ``spectralmatch:GlobalModel``), their
hyper-parameters and their learned state. Reading imports the module a step names and
accepts the class only if it is an :class:`~spectralmatch.Adjuster`: a file cannot make
the reader call anything else.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from attrs import define

from .._version import __version__
from ..errors import SpectralMatchError
from ..raster.files import atomic_path, write_atomically
from .adjuster import Adjuster

MODEL_FORMAT = "spectralmatch.Mosaic"
MODEL_VERSION = 2

#: Deepest nesting of lists and objects a model file may have (a saved model has under
#: ten; reading follows it by recursion).
MAX_NESTING = 100

#: The Mosaic hyper-parameters a model file keeps (how it runs, not what it fits).
SAVED_PARAMS = ("window_size", "threads")

#: Fields of a step's state that describe its fit without changing its correction (a
#: model saved before they were kept corrects the same).
DESCRIPTIVE_STATE = frozenset({"diagnostics"})


class ModelFileError(SpectralMatchError):
    """A model file that cannot be read: the message names the file and the field."""


class StateError(ModelFileError):
    """A field of a step's saved state that is missing or malformed."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def state_array(
    state: dict[str, Any], name: str, ndim: int, shape: tuple[int | None, ...] | None = None
) -> np.ndarray:
    """``state[name]`` as a float array of ``ndim`` dimensions (and ``shape``, where its
    entries are not None), all finite; for a step's ``set_state``.

    Raises
    ------
    StateError
        Naming the field, when it is missing or does not fit.
    """
    if name not in state:
        raise StateError(name, "missing")
    try:
        array: np.ndarray | None = np.asarray(state[name])
    except (TypeError, ValueError):  # ragged lists
        array = None
    # not booleans, complex numbers, text, or objects (such as ints too large for floats)
    if array is None or array.dtype.kind not in "iuf":
        raise StateError(name, f"expected numbers, got {state[name]!r:.60}")
    array = array.astype(np.float64)
    if array.ndim != ndim:
        raise StateError(name, f"expected {ndim} dimensions, got shape {array.shape}")
    if shape is not None and any(
        want is not None and want != have for want, have in zip(shape, array.shape, strict=True)
    ):
        expected = tuple("*" if want is None else want for want in shape)
        raise StateError(name, f"expected shape {expected}, got {array.shape}")
    if not np.isfinite(array).all():
        raise StateError(name, "holds NaN or infinite values")
    return array


def state_names(state: dict[str, Any], name: str) -> list[str]:
    """``state[name]`` as a list of strings; for a step's ``set_state``."""
    if name not in state:
        raise StateError(name, "missing")
    value = state[name]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StateError(name, f"expected a list of names, got {value!r:.60}")
    return list(value)


@define
class ModelDocument:
    """The content of a model file."""

    params: dict[str, Any]
    n_bands: int
    images: list[dict[str, Any]]
    steps: list[Adjuster]


# ---------------------------------------------------------------------- writing


def write_model(document: ModelDocument, path: str | os.PathLike) -> Path:
    """Write ``document`` as JSON to ``path`` (arrays to ``<stem>.npz``), atomically."""
    path = Path(path)
    steps = [_step_to_dict(step) for step in document.steps]
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    data = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_VERSION,
        "spectralmatch_version": __version__,
        "params": document.params,
        "n_bands": document.n_bands,
        "images": document.images,
        "steps": _extract_arrays(steps, "steps", arrays),
    }
    sidecar = path.with_suffix(".npz")
    if arrays:
        data["arrays"] = sidecar.name
        with atomic_path(sidecar, suffix=".npz") as temporary:
            np.savez_compressed(temporary, **arrays)
    write_atomically(path, json.dumps(data, indent=1).encode())
    return path


def class_path(cls: type) -> str:
    """``module:QualifiedName`` by which ``cls`` can be imported again.

    Raises
    ------
    SpectralMatchError
        For a class defined in ``__main__`` (a script or notebook) or inside a function.
    """
    import spectralmatch

    if getattr(spectralmatch, cls.__name__, None) is cls:
        return f"spectralmatch:{cls.__name__}"
    if cls.__module__ == "__main__":
        raise SpectralMatchError(
            f"{cls.__qualname__} is defined in the script being run (__main__), so a saved "
            "model could not find it again; move the class into a module (a .py file on "
            "the Python path, e.g. my_steps.py) and import it from there"
        )
    if "<locals>" in cls.__qualname__:
        raise SpectralMatchError(
            f"{cls.__qualname__} is defined inside a function, so a saved model could not "
            "find it again; define it at the top level of a module"
        )
    return f"{cls.__module__}:{cls.__qualname__}"


def _step_to_dict(step: Adjuster) -> dict[str, Any]:
    return {
        "class": class_path(type(step)),
        "params": step.get_params(deep=False),
        "state": step.get_state(),
    }


def steps_digest(steps: list[Adjuster]) -> str:
    """SHA-256 of fitted steps: their classes, hyper-parameters and learned state (arrays
    by their bytes; not ``DESCRIPTIVE_STATE``), so two models that correct alike have the
    same digest."""
    arrays: dict[str, np.ndarray] = {}
    described = [
        {
            "class": f"{type(step).__module__}:{type(step).__qualname__}",
            "params": step.get_params(deep=False),
            "state": {
                name: value
                for name, value in step.get_state().items()
                if name not in DESCRIPTIVE_STATE
            },
        }
        for step in steps
    ]
    data = _extract_arrays(described, "steps", arrays)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _extract_arrays(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with every ndarray replaced by ``{"array": key}``, collected in ``arrays``."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": key}
    if isinstance(value, dict):
        return {k: _extract_arrays(v, f"{key}.{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_extract_arrays(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    return value


# ---------------------------------------------------------------------- reading


def read_model(path: str | os.PathLike) -> ModelDocument:
    """Read and check a model file written by :func:`write_model`.

    Raises
    ------
    ModelFileError
        Naming the file and the field, for anything missing, mistyped or not allowed.
    """
    path = Path(path)
    data = _read_json(path)
    fields = Fields(path, data, "")
    fields.require_dict()
    if data.get("format") != MODEL_FORMAT:
        raise ModelFileError(
            f"{path}: not a spectralmatch model file (format is not {MODEL_FORMAT!r})"
        )
    version = fields.integer("format_version")
    if version > MODEL_VERSION:
        raise ModelFileError(
            f"{path}: format_version {version} is newer than this spectralmatch reads "
            f"({MODEL_VERSION}); upgrade spectralmatch"
        )
    if "arrays" in data:
        data = _restore_arrays(data, _read_sidecar(path, fields.string("arrays")), path)
        fields = Fields(path, data, "")
    params = fields.mapping("params")
    for name, value in params.items():
        if name not in SAVED_PARAMS:
            raise ModelFileError(f"{path}: params.{name}: not a saved Mosaic parameter")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ModelFileError(f"{path}: params.{name}: expected an integer, got {value!r}")
    n_bands = fields.integer("n_bands", minimum=1)
    images = []
    for position, entry in enumerate(fields.sequence("images")):
        image = Fields(path, entry, f"images[{position}]")
        image.require_dict()
        recorded: dict[str, Any] = {"name": image.string("name"), "path": image.string("path")}
        if "nodata" in entry:
            recorded["nodata"] = image.number("nodata")
        if "masked" in entry:
            recorded["masked"] = image.boolean("masked")
        images.append(recorded)
    steps = [
        _step_from_dict(Fields(path, entry, f"steps[{position}]"))
        for position, entry in enumerate(fields.sequence("steps"))
    ]
    if not steps:
        raise ModelFileError(f"{path}: steps: the model has no step")
    return ModelDocument(params, n_bands, images, steps)


def _read_json(path: Path) -> Any:
    """The content of the JSON file ``path``, nested at most ``MAX_NESTING`` deep."""
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read model ({error.strerror or error})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: cannot read model (invalid JSON: {error})") from None
    except RecursionError:  # nested deeper than the parser follows
        pass
    else:
        if _nesting(data) <= MAX_NESTING:
            return data
    raise ModelFileError(
        f"{path}: cannot read model (lists or objects nested more than {MAX_NESTING} deep)"
    )


def _nesting(data: Any) -> int:
    """How deep lists and objects nest in ``data`` (without recursion)."""
    deepest, level = 0, [(data, 0)]
    while level:
        value, depth = level.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            level += [(item, depth + 1) for item in value.values()]
        elif isinstance(value, list):
            level += [(item, depth + 1) for item in value]
    return deepest


def _read_sidecar(path: Path, name: str) -> dict[str, np.ndarray]:
    if not name or Path(name).name != name or name in (".", ".."):
        raise ModelFileError(f"{path}: arrays: must name a file beside the model, got {name!r}")
    sidecar = path.with_name(name)
    try:
        # opened here, so that it is closed however np.load fails
        with sidecar.open("rb") as file:
            stored = np.load(file, allow_pickle=False)
            if isinstance(stored, np.lib.npyio.NpzFile):
                with stored:
                    return dict(stored)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: arrays: the sidecar {sidecar} is missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ModelFileError(f"{sidecar}: not a readable array file ({error})") from None
    raise ModelFileError(f"{sidecar}: not a readable array file (one array, not an .npz archive)")


def _restore_arrays(value: Any, arrays: dict[str, np.ndarray], path: Path) -> Any:
    """Inverse of :func:`_extract_arrays`."""
    if isinstance(value, dict):
        if set(value) == {"array"}:
            key = value["array"]
            if not isinstance(key, str) or key not in arrays:
                raise ModelFileError(f"{path}: array {key!r} is missing from the sidecar file")
            return arrays[key]
        return {k: _restore_arrays(v, arrays, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_arrays(v, arrays, path) for v in value]
    return value


def _step_from_dict(fields: Fields) -> Adjuster:
    fields.require_dict()
    cls = _step_class(fields, fields.string("class"))
    params = fields.mapping("params")
    try:
        step = cls(**params)
        step._validate_params()
    except TypeError as error:
        raise fields.error("params", f"not the parameters of {cls.__name__} ({error})") from None
    except SpectralMatchError as error:
        raise fields.error("params", str(error)) from None
    state = fields.mapping("state")
    try:
        step.set_state(state)
    except StateError as error:
        raise fields.error(f"state.{error.field}", error.problem) from None
    except (
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
        NotImplementedError,
    ) as error:
        detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise fields.error("state", f"{cls.__name__}: {detail}") from None
    return step


def _step_class(fields: Fields, text: str) -> type[Adjuster]:
    """The Adjuster subclass named ``module:QualifiedName`` (nothing else is accepted)."""
    module_name, colon, qualname = text.partition(":")
    if not colon or not module_name or not qualname:
        raise fields.error("class", f"expected 'module:ClassName', got {text!r}")
    if module_name.partition(".")[0] in sys.stdlib_module_names:
        raise fields.error("class", f"{text!r} is not a spectralmatch Adjuster; refused")
    try:
        found = _import(module_name, qualname)
    except (ImportError, AttributeError) as error:
        if not module_name.startswith("spectralmatch."):
            raise fields.error(
                "class",
                f"cannot import {text!r} ({error}); the module defining the step must be "
                "importable (installed or on the Python path)",
            ) from None
        # a step of this package saved under a module path that has since moved
        found = getattr(importlib.import_module("spectralmatch"), qualname, None)
    if not (isinstance(found, type) and issubclass(found, Adjuster)) or found is Adjuster:
        raise fields.error("class", f"{text!r} is not a spectralmatch Adjuster; refused")
    return found


def _import(module_name: str, qualname: str) -> Any:
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


@define
class Fields:
    """Typed access to the fields of one part of a model file, with errors that name the
    file and the field (``steps[1].state.gains``). Steps use it in ``set_state``."""

    path: Path
    data: Any
    where: str

    def error(self, name: str, problem: str) -> ModelFileError:
        location = f"{self.where}.{name}" if self.where else name
        return ModelFileError(f"{self.path}: {location}: {problem}")

    def require_dict(self) -> None:
        if not isinstance(self.data, dict):
            where = self.where or "the document"
            raise ModelFileError(f"{self.path}: {where}: expected an object, got {self.data!r:.60}")

    def get(self, name: str) -> Any:
        if name not in self.data:
            raise self.error(name, "missing")
        return self.data[name]

    def string(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {value!r:.60}")
        return value

    def boolean(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r:.60}")
        return value

    def number(self, name: str) -> float:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {value!r:.60}")
        return float(value)

    def integer(self, name: str, minimum: int | None = None) -> int:
        value = self.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, f"expected an integer, got {value!r:.60}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value}")
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.get(name)
        if not isinstance(value, dict):
            raise self.error(name, f"expected an object, got {value!r:.60}")
        return value

    def sequence(self, name: str) -> list[Any]:
        value = self.get(name)
        if not isinstance(value, list):
            raise self.error(name, f"expected a list, got {value!r:.60}")
        return value
