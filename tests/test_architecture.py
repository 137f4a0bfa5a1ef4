"""The package's imports point one way: down the layers of docs/architecture.md, no cycles.

Every import statement of every module counts, at module level and inside functions
alike (a hidden import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spectralmatch"

#: Bottom to top: a module may import from its own layer and the layers below it.
LAYERS = [
    ["_ahead", "_interrupt", "_threads", "_typing", "_validation", "_version", "errors"],
    ["geo"],
    ["stats"],
    ["masks"],
    ["raster"],
    ["engine"],
    ["ops"],
    ["model"],
    ["report"],
    ["workflow", "pif"],
    ["chain"],
    ["cli", "__main__", "qgis"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports (resolved to the most specific module)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                module = node.module or ""
                if node.level:
                    module = f"{base}.{module}" if module else base
                candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in known:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name and not name.startswith(candidate + "."):
                    targets.add(candidate)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int | None:
    """Position of ``module`` in LAYERS (None: the package itself, which re-exports)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for position, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return position
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, in any way."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles():
    cycles = [group for group in strongly_connected(package_imports()) if len(group) > 1]
    assert cycles == []


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in package_imports().items():
        own = layer_of(module)
        for target in targets:
            theirs = layer_of(target)
            if own is not None and (theirs is None or theirs > own):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_walker_sees_function_level_imports_and_cycles():
    graph = package_imports()
    # a lazy import inside a function is seen (the CLI imports the model on use)
    assert "spectralmatch.model.pipeline" in graph["spectralmatch.cli.transform"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"],
        ["d"],
    ]


@pytest.mark.parametrize("layer", [name for layer in LAYERS for name in layer])
def test_every_layer_exists(layer):
    assert (PACKAGE / layer).is_dir() or (PACKAGE / f"{layer}.py").is_file()


def test_importing_the_package_leaves_the_slow_modules_for_later():
    """scipy's ndimage, sparse solvers and spatial trees take most of a second to import,
    Dask more; the modules that use them import them where they are used, so that the
    command line starts fast (and the core install needs no Dask)."""
    import subprocess
    import sys

    code = (
        "import sys, spectralmatch, spectralmatch.cli.main; "
        "print(sorted(m for m in sys.modules if m in "
        "('scipy.ndimage', 'scipy.sparse.linalg', 'scipy.spatial', 'scipy.stats', "
        "'dask', 'distributed')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
