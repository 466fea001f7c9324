"""The states' reference page, generated from their docstrings (Salt style: each
argument's name on a line of its own, what it means indented below it).

``undocumented()`` lists every state argument without a description (a unit test keeps
it empty); ``markdown()`` is the page (``./run states-reference`` writes docs/states.md).
"""

from __future__ import annotations

import inspect
import re

from . import REGISTRY
from .base import GLOBAL_ARGS, StateFunction

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


def undocumented(registry: dict[str, StateFunction] = REGISTRY) -> list[str]:
    missing = []
    for ref, spec in sorted(registry.items()):
        _, described = parse(spec.apply.__doc__ or "")
        missing += [f"{ref}: {arg}" for arg in ["name", *spec.args] if not described.get(arg)]
    return missing


def markdown(registry: dict[str, StateFunction] = REGISTRY) -> str:
    out = ["# State reference", "",
           "Generated from the state functions' docstrings (`./run states-reference`).", "",
           "Every state also takes:", ""]
    out += [f"- `{arg}`: {GLOBAL_DOC[arg]}" for arg in GLOBAL_ARGS]
    for ref, spec in sorted(registry.items()):
        summary, described = parse(spec.apply.__doc__ or "")
        out += ["", f"## {ref}", "", summary, ""]
        for arg in ["name", *spec.args]:
            given = spec.args.get(arg)
            note = (" (required)" if given and given.required else
                    f" (default: `{given.default!r}`)" if given and given.default is not None else "")
            out.append(f"- `{arg}`{note}: {described.get(arg, '(undocumented)')}")
    return "\n".join(out) + "\n"
