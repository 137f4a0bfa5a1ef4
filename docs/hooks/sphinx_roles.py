"""Build hook: Sphinx cross-reference roles in docstrings shown as code, as Sphinx shows them.

The docstrings write ``:class:`~spectralmatch.Image``` and the like (numpydoc style);
mkdocstrings renders the role as text before the code. This hook drops the role and,
for a target written with ``~``, keeps only its last component, as Sphinx displays it.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):<code>(~?)([^<]*)</code>")


def plain(match: re.Match[str]) -> str:
    """The code of one role, shortened to its last component after a ``~``."""
    target = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Every role of the page's HTML as plain code."""
    return ROLE.sub(plain, html)
