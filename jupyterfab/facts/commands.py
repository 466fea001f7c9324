"""How a step runs on the host: as whom, inside what (``RunAs``), and a deployer's
own shell text (``cmd.run``, ``unless``, ``onlyif``, ``check_cmd``) with its exit
code as a fact."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..initsys import for_init
from ..shell import Command, Part, Secret
from . import Fact

# What a confined step may take when its caller gives no bound of its own (seconds).
DEFAULT_BOUND = 3600
# A probe's (a fact read in the deploy's batch, whose round trip waits 120 s at most).
PROBE_BOUND = 60


@dataclass(frozen=True)
class RunAs:
    """Who a step runs as, root being the default, and inside what. For a user the
    caller (the stack) confines, ``init`` names the host's init system and
    ``properties`` the box: the step runs only inside it, through the init's adapter
    (systemd: a transient service with these properties, killed with all it started
    when the step ends). Any other user is ``runuser``'s, as in Salt. The engine knows
    no user and no box of its own: ``Context.run_as`` says which."""

    user: str
    init: str = ""                                  # "": no box (plain runuser)
    properties: tuple[tuple[str, str], ...] = ()

    def command(self, parts: Iterable[Part], seconds: float | None = None) -> Command:
        """``parts`` run as this user, in the box; ``seconds``: how long the box lets it run."""
        if not self.init:
            return Command(("runuser", "-u", self.user, "--", *parts))
        bound = int(seconds) if seconds else DEFAULT_BOUND
        return Command(for_init(self.init).confined(self.user, self.properties, bound, tuple(parts)))


def command_as(parts: Iterable[Part], *, runas: RunAs | None = None, cwd: str | None = None,
               env: Mapping[str, str | Secret] | None = None, seconds: float | None = None) -> Command:
    """``parts`` run as ``runas`` (its box, or runuser, sets HOME/USER), in ``cwd``, with
    ``env``; ``seconds`` bounds a confined run.

    Shared by cmd.run, pip and unless/onlyif probes so all three see the same
    user and directory, as in Salt.
    """
    prefix: list[Part] = []
    if cwd or env:
        prefix.append("env")
        if cwd:
            prefix += ["-C", cwd]
        for key, value in (env or {}).items():
            prefix.append(Secret(f"{key}={value.reveal()}") if isinstance(value, Secret)
                          else f"{key}={value}")
    if runas:
        return runas.command([*prefix, *parts], seconds)
    return Command(tuple(prefix) + tuple(parts))


def shell_text_command(text: str | Secret, **how) -> Command:
    """A deployer's own shell text (an sls ``cmd.run``, ``unless``, ``check_cmd``)."""
    return command_as(["sh", "-c", text], **how)



@dataclass(frozen=True)
class CommandRc(Fact):
    """Exit code of a deployer's test command (``unless`` / ``onlyif``)."""

    text: str | Secret
    runas: RunAs | None = None
    cwd: str | None = None

    def command(self) -> Command:
        return shell_text_command(self.text, runas=self.runas, cwd=self.cwd, seconds=PROBE_BOUND)

    def parse(self, stdout: str, rc: int) -> int:
        return rc

    def describe(self) -> str:
        return f"run {self.command().display}"
