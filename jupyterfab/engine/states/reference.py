"""The states' reference page, generated from their docstrings (Salt style: each
argument's name on a line of its own, what it means indented below it); the page
itself is ``jupyterfab.dev.docs_reference``'s (docs/reference/states.md).
"""

from __future__ import annotations

import inspect
import re

# What every state takes (Salt's requisites and conditions), documented once.
GLOBAL_DOC = {
    "unless": "a shell command (or a list): the state is skipped when it succeeds",
    "onlyif": "a shell command (or a list): the state runs only when it succeeds",
    "creates": "a path (or a list): the state is skipped when it exists",
}


def parse(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {argument: description}) from a docstring (pure)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary, described, current = [], {}, None
    for line in lines:
        if re.fullmatch(r"[a-z_][a-z0-9_]*", line):
            current = line
            described[current] = ""
        elif current and line.startswith((" ", "\t")):
            described[current] = f"{described[current]} {line.strip()}".strip()
        elif current is None:
            summary.append(line)
        else:
            current = None
    return "\n".join(summary).strip(), described

