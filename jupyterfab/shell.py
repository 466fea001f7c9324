"""Building remote shell commands from quoted parts, with secrets masked in logs.

Every command the project sends to a host is built here: each part is passed
through ``shlex.quote`` so an inventory value can never inject shell, and a
``Secret`` renders as ``***`` whenever a command is shown to a person.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


class Secret:
    """A value that must never be printed: ``str()`` and ``repr()`` give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Raw(str):
    """A trusted fragment (an operator such as ``&&`` or ``|``) that is not quoted.

    Only code in this package builds ``Raw`` values; inventory data never does.
    """


class Folded(str):
    """A part a person is shown as ``...`` (a run of them as one ``...``): the many
    settings of a confinement, which would bury the command itself in every line
    that names it. It runs as a quoted part, like a plain string."""


Part = str | int | Secret | Raw


def _quoted(part: Part, reveal: bool) -> str:
    if isinstance(part, Raw):
        return str(part)
    if isinstance(part, Secret):
        return shlex.quote(part.reveal()) if reveal else "***"
    return shlex.quote(str(part))


@dataclass(frozen=True)
class Command:
    """A command line as a tuple of parts; ``text`` runs, ``display`` is logged."""

    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return " ".join(_quoted(p, reveal=True) for p in self.parts)

    @property
    def display(self) -> str:
        shown: list[str] = []
        for i, p in enumerate(self.parts):
            if not isinstance(p, Folded):
                shown.append(_quoted(p, reveal=False))
            elif not (i and isinstance(self.parts[i - 1], Folded)):
                shown.append("...")
        return " ".join(shown)

    def __str__(self) -> str:
        return self.display


def cmd(*parts: Part) -> Command:
    """``cmd("useradd", "--system", name)`` -> a Command whose parts are quoted."""
    return Command(tuple(parts))


def chain(*commands: Command, op: str = "&&") -> Command:
    """Join commands with a shell operator (``&&``, ``||``, ``;``, ``|``)."""
    parts: list[Part] = []
    for i, c in enumerate(commands):
        if i:
            parts.append(Raw(op))
        parts.extend(c.parts)
    return Command(tuple(parts))


def as_command(value: Command | str) -> Command:
    """A Command stays as it is; a plain string (a state file's own shell text,
    written by the deployer, like Salt's ``cmd.run``) runs as one ``sh -c``."""
    if isinstance(value, Command):
        return value
    return cmd("sh", "-c", value)
