"""The code blocks of the documentation run as written, in the order of each page.

Every page under docs/ is read. Its ```python blocks run in one namespace, and the
``spectralmatch`` commands of its ```bash blocks run through the command line (other
commands of a bash block, such as ``pip install``, are the reader's set-up and are not
run), in a tmp folder holding copies of data/ and examples/, so a page writes only there.
A block that cannot run here is fenced ```py (Python) or ```shell (commands) instead and
starts with the line ``# not run: <why>``. The command-line reference, generated at build
time from the commands, is checked to cover every command.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from spectralmatch.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.S | re.M)
NOT_RUN = {"py", "shell"}
NOT_RUN_LINE = "# not run: "


def blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of ``page``, in order."""
    return FENCE.findall(page.read_text())


def runs_something(language: str, code: str) -> bool:
    return language == "python" or (language == "bash" and bool(commands(code)))


def pages_where(condition) -> list[str]:
    """The pages (relative to docs/) with a block that meets ``condition(language, code)``."""
    return sorted(
        str(page.relative_to(DOCS))
        for page in DOCS.rglob("*.md")
        if any(condition(language, code) for language, code in blocks(page))
    )


def commands(script: str) -> list[list[str]]:
    """The ``spectralmatch`` commands of a shell script, as argument lists."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            if words[0] == "spectralmatch":
                found.append(words[1:end])
            words = words[end + 1 :]
    return found


@pytest.fixture
def sample_folder(tmp_path, monkeypatch):
    """A tmp folder with copies of data/ and examples/, made the current folder."""
    for name in ("data", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a page may add examples/ to it
    return tmp_path


@pytest.mark.parametrize("name", pages_where(runs_something))
def test_page_runs(name, sample_folder):
    namespace: dict = {"__name__": f"docs_{Path(name).stem}"}
    for number, (language, code) in enumerate(blocks(DOCS / name), start=1):
        where = f"docs/{name}, block {number}"
        if language == "python":
            try:
                exec(compile(code, where, "exec"), namespace)
            except Exception as error:  # noqa: BLE001 - report which block failed
                pytest.fail(f"{where}: {type(error).__name__}: {error}")
        elif language == "bash":
            for arguments in commands(code):
                result = CliRunner().invoke(main, arguments, prog_name="spectralmatch")
                assert result.exit_code == 0, f"{where}: {shlex.join(arguments)}\n{result.output}"


@pytest.mark.parametrize("name", pages_where(lambda language, _: language in NOT_RUN))
def test_a_block_not_run_says_why(name):
    for language, code in blocks(DOCS / name):
        if language in NOT_RUN:
            assert code.startswith(NOT_RUN_LINE), f"docs/{name}: a ```{language} block: {code}"


def test_every_spectralmatch_command_in_a_bash_block_is_found():
    script = (
        "spectralmatch a x && spectralmatch b \\\n  -o y  # c\npip install . && spectralmatch c"
    )
    script += "\n# spectralmatch d\npython -m pytest"
    assert commands(script) == [["a", "x"], ["b", "-o", "y"], ["c"]]


def build_hook(name: str):
    """The module of docs/hooks/NAME.py (mkdocs.yml runs it while building the site)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_of_docstrings_show_as_code():
    hook = build_hook("sphinx_roles")
    html = "a :class:<code>~spectralmatch.masks.Mask</code>, :func:<code>sm.f</code> <code>x</code>"
    assert hook.on_page_content(html) == "a <code>Mask</code>, <code>sm.f</code> <code>x</code>"


def test_the_cli_reference_has_every_command_as_its_help_says():
    hook = build_hook("cli_reference")
    reference = hook.reference()
    for name in main.commands:
        assert f"### spectralmatch {name}\n" in reference, name
        usage = CliRunner().invoke(main, [name, "--help"], prog_name="spectralmatch").output
        assert usage.splitlines()[0] in reference, name
    assert hook.MARKER in (DOCS / hook.PAGE).read_text()
