"""Build hook: the command-line reference (docs/cli.md) from the click commands' own help.

mkdocs runs ``on_page_markdown`` on every page; on ``cli.md`` it replaces the marker line
with the help of ``spectralmatch`` and of every command and sub-command, as
``spectralmatch COMMAND --help`` prints it, so the page cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

import click

from spectralmatch.cli.functions import function_commands
from spectralmatch.cli.main import main

MARKER = "<!-- the commands' help, generated at build time -->"
PAGE = "cli.md"
WIDTH = 88


def help_text(command: click.Command, parent: click.Context | None = None) -> str:
    """What ``--help`` prints for ``command`` (at a fixed width)."""
    name = command.name if parent else "spectralmatch"
    context = click.Context(
        command,
        info_name=name,
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        **command.context_settings,
    )
    return command.get_help(context)


def section(command: click.Command, parent: click.Context, level: int) -> list[str]:
    """A heading and the help of ``command``, then of its sub-commands, if a group."""
    context = click.Context(command, info_name=command.name, parent=parent)
    lines = [f"{'#' * level} {context.command_path}", "", "```text", help_text(command, parent)]
    lines += ["```", ""]
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            lines += section(command.commands[name], context, level + 1)
    return lines


def reference() -> str:
    """The Markdown of every command: the package's own, then the function API's."""
    root = click.Context(main, info_name="spectralmatch", **main.context_settings)
    published = {command.name for command in function_commands()}
    own = [command for command in main.commands.values() if command.name not in published]
    lines = ["## spectralmatch", "", "```text", help_text(main), "```", ""]
    lines += ["## Commands", ""]
    for command in own:
        lines += section(command, root, 3)
    lines += ["## Function API commands", ""]
    lines += [
        "The published functions, called as the published command line calls them"
        " (arguments, then `--keyword=value`); each function's keywords are in the"
        " [Python API reference](api/published.md).",
        "",
    ]
    for name in sorted(published):
        lines += section(main.commands[name], root, 3)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Put the reference in place of the marker on the CLI page."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE} has lost its marker line: {MARKER}")
    return markdown.replace(MARKER, reference())
