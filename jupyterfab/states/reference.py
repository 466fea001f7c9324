"""The states' reference page, generated from their docstrings (Salt style: each
argument's name on a line of its own, what it means indented below it) and their
``Arg`` specs (what each argument takes, its default).

``undocumented()`` lists every state argument without a description (a unit test keeps
it empty); ``markdown()`` is the page, docs/reference/states.md (written with the
site's other reference pages by ``python -m jupyterfab.docs_reference``).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable

from . import REGISTRY
from .base import GLOBAL_ARGS, REQUISITE_KINDS, Arg, StateFunction

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


# What the checks in base accept, in a few words; other checks say it in their
# docstring's first line or in their name.
_CHECK_WORDS = {
    "text": "text (may be a secret)", "string": "text", "boolean": "true/false",
    "integer": "number", "abs_path": "absolute path", "mode": "octal mode (\"0644\")",
    "requirement": "pip requirement", "env_map": "mapping NAME: value", "mapping": "mapping",
}


def _check_names(registry: dict[str, StateFunction]) -> dict[int, str]:
    """Every function the state modules name at module level, by identity."""
    names: dict[int, str] = {}
    modules = sorted({spec.apply.__module__ for spec in registry.values()}) + [f"{__package__}.base"]
    for module_name in modules:
        for key, value in vars(sys.modules[module_name]).items():
            if callable(value):
                names.setdefault(id(value), key)
    return names


def describe_check(check: Callable, names: dict[int, str]) -> str:
    """What an argument's check accepts, in a few words."""
    name = names.get(id(check), check.__name__)
    if name in _CHECK_WORDS:
        return _CHECK_WORDS[name]
    qualname = getattr(check, "__qualname__", "")
    closure = inspect.getclosurevars(check).nonlocals if hasattr(check, "__code__") else {}
    if qualname.startswith("list_of.") and "check" in closure:
        return f"list of {describe_check(closure['check'], names)}"
    if qualname.startswith("one_or_many.") and "check" in closure:
        return f"{describe_check(closure['check'], names)}, or a list"
    if "what" in closure:                       # base._matching: a named pattern
        return str(closure["what"])
    doc = inspect.getdoc(check)
    if doc:
        return doc.split("\n", 1)[0].rstrip(".")
    return name.strip("_").replace("_", " ")


def _default(arg: Arg) -> str:
    if arg.required:
        return "required"
    if arg.default is None or arg.default in ({}, [], ()):
        return ""
    if isinstance(arg.default, bool):
        return f"default `{str(arg.default).lower()}`"
    if isinstance(arg.default, int) and arg.check.__name__ == "mode":
        return f'default `"{arg.default:04o}"`'
    return f"default `{arg.default}`"


def _markdown_text(text: str) -> str:
    """Docstring prose safe in Markdown: no stray emphasis or HTML, one line."""
    return " ".join(text.replace("*", "\\*").replace("<", "&lt;").split())


def markdown(registry: dict[str, StateFunction] = REGISTRY) -> str:
    names = _check_names(registry)

    def item(arg: str, check: Callable, default: str, described: str) -> str:
        kind = "; ".join(filter(None, [describe_check(check, names), default]))
        return f"- `{arg}` ({kind}): {_markdown_text(described) or '(undocumented)'}"

    out = ["# States", "",
           "Every state function a state file (`states/*.sls`) can use, generated from the "
           "state functions' docstrings and argument specs. A state is written as in Salt:", "",
           "```yaml", "ID:", "  module.function:", "    - name: ...      # default: the ID",
           "    - argument: value", "    - require:", "      - module: OTHER_ID", "```", "",
           "A wrong argument name, a value of the wrong kind or a missing required argument "
           "stops the deploy before anything changes, with the sls file and line.", "",
           "## Arguments every state takes", "",
           "Requisites: " + ", ".join(f"`{k}`" for k in REQUISITE_KINDS) +
           " (lists of `module: ID`), and:", ""]
    out += [item(arg, spec.check, "", GLOBAL_DOC[arg]) for arg, spec in GLOBAL_ARGS.items()]
    for ref, spec in sorted(registry.items()):
        summary, described = parse(spec.apply.__doc__ or "")
        out += ["", f"## {ref}", "", _markdown_text(summary), ""]
        out.append(item("name", spec.name_check, "default: the state's ID", described.get("name", "")))
        out += [item(arg, given.check, _default(given), described.get(arg, ""))
                for arg, given in spec.args.items()]
    return "\n".join(out) + "\n"
