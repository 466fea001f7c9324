"""A deployer's own shell text (``cmd.run``, ``unless``, ``onlyif``,
``check_cmd``): how it is run, and its exit code as a fact."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jupyterfab.engine.facts import Fact
from jupyterfab.engine.shell import Command, Part, Secret


def command_as(parts: Iterable[Part], *, runas: str | None = None, cwd: str | None = None,
               env: Mapping[str, str | Secret] | None = None) -> Command:
    """``parts`` run as ``runas`` (runuser sets HOME/USER), in ``cwd``, with ``env``.

    Shared by cmd.run, pip and unless/onlyif probes so all three see the same
    user and directory, as in Salt.
    """
    prefix: list[Part] = []
    if runas:
        prefix += ["runuser", "-u", runas, "--"]
    if cwd or env:
        prefix.append("env")
        if cwd:
            prefix += ["-C", cwd]
        for key, value in (env or {}).items():
            prefix.append(Secret(f"{key}={value.reveal()}") if isinstance(value, Secret)
                          else f"{key}={value}")
    return Command(tuple(prefix) + tuple(parts))


def shell_text_command(text: str | Secret, **how) -> Command:
    """A deployer's own shell text (an sls ``cmd.run``, ``unless``, ``check_cmd``)."""
    return command_as(["sh", "-c", text], **how)



@dataclass(frozen=True)
class CommandRc(Fact):
    """Exit code of a deployer's test command (``unless`` / ``onlyif``)."""

    text: str | Secret
    runas: str | None = None
    cwd: str | None = None

    def command(self) -> Command:
        return shell_text_command(self.text, runas=self.runas, cwd=self.cwd)

    def parse(self, stdout: str, rc: int) -> int:
        return rc

    def describe(self) -> str:
        return f"run {self.command().display}"
