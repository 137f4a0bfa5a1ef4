"""The Python blocks of the documentation pages run as written, in order."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["extending.md", "masks.md"]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("name", PAGES)
def test_page_runs(name, monkeypatch):
    blocks = python_blocks(ROOT / "docs" / name)
    assert blocks, f"docs/{name} has no python block"
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a page may add examples/ to it
    namespace: dict = {"__name__": f"docs_{Path(name).stem}"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/{name} block {number}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - report which block failed
            pytest.fail(f"docs/{name}, block {number}: {type(error).__name__}: {error}")
