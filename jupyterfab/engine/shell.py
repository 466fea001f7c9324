"""Building remote shell commands from quoted parts, with secrets masked in logs.

Every command the project sends to a host is built here: each part is passed
through ``shlex.quote`` so an inventory value can never inject shell, and a
``Secret`` renders as ``***`` whenever a command is shown to a person.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from jupyterfab.engine import nofollow as _nofollow_program


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


class Program(str):
    """A program's whole text as one argument (``python3 -c TEXT``): quoted like any
    other part when it runs, shown as ``<name>``."""

    name: str

    def __new__(cls, text: str, name: str) -> Program:
        self = super().__new__(cls, text)
        self.name = name
        return self


Part = str | int | Secret | Raw


def _quoted(part: Part, reveal: bool) -> str:
    if isinstance(part, Raw):
        return str(part)
    if isinstance(part, Program) and not reveal:
        return f"<{part.name}>"
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
        return " ".join(_quoted(p, reveal=False) for p in self.parts)

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


def as_root(command: str) -> str:
    """``command`` as the user types it again in their own shell: with ``sudo`` in front
    only when that shell is not root's (they came through sudo, or are not root)."""
    return f"sudo {command}" if os.environ.get("SUDO_USER") or os.geteuid() != 0 else command


NOFOLLOW = Program(Path(_nofollow_program.__file__).read_text(), "nofollow")


def nofollow(*ops: Part, verb: str = "") -> Command:
    """Changes of paths made on the host by ``jupyterfab/engine/nofollow.py`` (its operations
    and their arguments, in order), never through a link someone else could have
    planted; ``verb`` words its refusal ("reading": "...; not reading it")."""
    return cmd("python3", "-I", "-S", "-c", NOFOLLOW, *(("-v", verb) if verb else ()), *ops)


def nofollow_run(directory: str, how: str, command: Command) -> tuple[Part, ...]:
    """nofollow's ``run`` operation: ``command`` (one program and its words, no shell
    operators) run in ``directory``, reached without following such a link; ``how``:
    "need", "make" or "skip" (see nofollow.py)."""
    if any(isinstance(p, Raw) for p in command.parts):
        raise ValueError(f"nofollow runs one program, not {command.display}")
    return ("run", directory, how, len(command.parts), *command.parts)
