"""Read-only probes of a host, and gathering many of them in one round trip.

A fact is a command plus a pure ``parse(stdout, rc)``: states decide from parsed
facts and never run probes themselves. ``gather`` joins every probe a deploy
needs into one generated shell script, so a no-op deploy costs one SSH round
trip however many states it has. Facts are frozen dataclasses, so two states
asking the same question share one probe.

This module is the engine (``Fact``, ``gather``, ``probe``); the definitions live one
area a module beside it, as in pyinfra: ``files``, ``packages`` (Debian's and a
Python environment's), ``users``, ``commands`` (a deployer's own shell text),
``host`` (the deploy's first look at a host) and ``jupyter`` (the installed
JupyterLab and Jupyter Server). The init system's facts live with their adapters
in ``jupyterfab.engine.initsys``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jupyterfab.engine.errors import HostError
from jupyterfab.engine.runner import Runner
from jupyterfab.engine.shell import Command, cmd


class FactError(HostError):
    """A probe gave an answer its parser cannot read (or no answer at all)."""


class Fact:
    """Base class: subclasses are frozen dataclasses, so equal facts dedupe."""

    def command(self) -> Command:
        raise NotImplementedError

    def group(self) -> FactGroup | None:
        """The group whose one command can answer this fact with others of its kind
        (None: this fact's own command only)."""
        return None

    def parse(self, stdout: str, rc: int) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return self.command().display



class FactGroup:
    """Many facts of one kind answered by one command (one ``stat`` for every path
    rather than a process set per path): ``split`` gives each member the exact
    (stdout, rc) its own ``command`` would have, so its ``parse`` stays as it is."""

    def command(self, facts: list[Fact]) -> Command:
        raise NotImplementedError

    def split(self, facts: list[Fact], stdout: str, rc: int) -> list[tuple[str, int]]:
        raise NotImplementedError


def key_values(stdout: str) -> dict[str, str]:
    """A probe's ``key=value`` lines, the first of each key (pure): the one reading of
    that answer shape, for the host, init and version probes and upgrade's."""
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in values:
            values[key] = value.strip()
    return values


def need_rc(fact: Fact, rc: int, allowed: tuple[int, ...], stdout: str) -> None:
    if rc not in allowed:
        raise FactError(f"probe `{fact.describe()}` exited {rc}: {stdout.strip()[:200]}")



def batch_script(probes: list[Command], marker: str) -> str:
    """One sh script running every probe in its own subshell, stdin closed,
    its stdout framed by markers and followed by its exit code."""
    lines = ["# jupyterfab facts"]
    for i, probe_command in enumerate(probes):
        lines.append(f"echo '{marker} {i} begin'")
        lines.append(f"( {probe_text(probe_command)}\n) </dev/null 2>/dev/null")
        lines.append(f"printf '\\n{marker} {i} rc %s\\n' \"$?\"")
    return "\n".join(lines) + "\n"


def probe_text(probe_command: Command) -> str:
    """A probe as the batch script runs it. The engine's own scripts (``sh -c SCRIPT
    sh ARGS``, SCRIPT a constant of jupyterfab) run in the probe's subshell itself,
    their arguments set by ``set --``: no second sh is started for each. A
    deployer's text (no ``sh`` name) keeps its own sh, so its syntax is never the batch's."""
    parts = probe_command.parts
    if (len(parts) >= 4 and parts[:2] == ("sh", "-c") and parts[3] == "sh"
            and type(parts[2]) is str):
        return f"{cmd('set', '--', *parts[4:]).text}\n{parts[2]}"
    return probe_command.text


def split_batch_output(stdout: str, marker: str, count: int) -> dict[int, tuple[str, int]]:
    """Inverse of ``batch_script``: probe index -> (stdout, rc); a probe whose
    frame is incomplete (the script was killed) is left out."""
    m = re.escape(marker)
    frame = re.compile(rf"{m} (\d+) begin\n(.*?)\n{m} \1 rc (\d+)(?:\n|$)", re.S)
    return {int(f[1]): (f[2], int(f[3])) for f in frame.finditer(stdout) if int(f[1]) < count}


# sh -c takes the script as one argument, and Linux caps one argument at 128 KiB
_MAX_INLINE_SCRIPT = 100_000


@dataclass(frozen=True)
class Failed:
    """A fact whose probe could not be read; the states needing it fail."""

    error: str


def gather(runner: Runner, facts: Iterable[Fact], *, timeout: float | None = None
           ) -> dict[Fact, Any]:
    """Probe all ``facts`` in ONE round trip; a fact that cannot be read maps to ``Failed``."""
    unique = list(dict.fromkeys(facts))
    if not unique:
        return {}
    probes = grouped(unique)
    marker = "JFAB-" + secrets.token_hex(8)
    script = batch_script([group.command(members) if group else members[0].command()
                           for group, members in probes], marker)
    if len(script) < _MAX_INLINE_SCRIPT:
        result = runner.run(cmd("sh", "-c", script), timeout=timeout)
    else:
        result = runner.run(cmd("sh", "-s"), stdin=script.encode(), timeout=timeout)
    answers = split_batch_output(result.stdout, marker, len(probes))
    values: dict[Fact, Any] = {}
    for i, (group, members) in enumerate(probes):
        if i not in answers:
            detail = result.stderr.strip()[:300] or f"probe script exited {result.rc}"
            for fact in members:
                values[fact] = Failed(f"no answer to `{fact.describe()}`: {detail}")
            continue
        out, rc = answers[i]
        for fact, (fact_out, fact_rc) in zip(members, group.split(members, out, rc)
                                             if group else [(out, rc)], strict=True):
            try:
                values[fact] = fact.parse(fact_out, fact_rc)
            except FactError as exc:
                values[fact] = Failed(str(exc))
    return values


def grouped(facts: list[Fact]) -> list[tuple[FactGroup | None, list[Fact]]]:
    """The batch's probes, in the order facts were asked: a group of two or more
    facts is one probe; a fact alone keeps its own command."""
    probes: list[tuple[FactGroup | None, list[Fact]]] = []
    members: dict[FactGroup, list[Fact]] = {}
    for fact in facts:
        group = fact.group()
        if group is None:
            probes.append((None, [fact]))
        elif group in members:
            members[group].append(fact)
        else:
            members[group] = [fact]
            probes.append((group, members[group]))
    return [(group if len(asked) > 1 else None, asked) for group, asked in probes]


def probe(runner: Runner, fact: Fact, *, timeout: float | None = None) -> Any:
    """One fact, one round trip; raises FactError when it cannot be read."""
    value = gather(runner, [fact], timeout=timeout)[fact]
    if isinstance(value, Failed):
        raise FactError(value.error)
    return value

