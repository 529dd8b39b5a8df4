"""The generated parts of the documentation: written by ``make docs``, checked by the tests.

A generated part sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in a
Markdown file; everything around it is prose. Tables of facts (the variables, measured figures)
are never pasted by hand, so they cannot drift from their source.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from config.env import reference_table
from harness.project import ROOT

# (file, part) -> what writes it.
GENERATORS: dict[tuple[str, str], Callable[[], str]] = {
    ("docs/configuration.md", "variables"): reference_table,
}


def splice(text: str, part: str, content: str) -> str:
    """``text`` with the generated ``part`` replaced by ``content``; ``ValueError`` without its markers."""
    pattern = re.compile(rf"(<!-- generated: {re.escape(part)} -->\n).*?(<!-- end: {re.escape(part)} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no generated part {part!r}")
    return pattern.sub(lambda match: match.group(1) + content + match.group(2), text, count=1)


def regenerated(path: str) -> str:
    """The file at ``path`` with each of its generated parts written anew."""
    text = (ROOT / path).read_text()
    for (file, part), generate in GENERATORS.items():
        if file == path:
            text = splice(text, part, generate())
    return text


def main() -> int:
    """``python -m harness.docs``: rewrite every generated part in place."""
    for path in sorted({file for file, _ in GENERATORS}):
        target = ROOT / path
        text = regenerated(path)
        if text != target.read_text():
            target.write_text(text)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
