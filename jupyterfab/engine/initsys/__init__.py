"""The init systems jupyterfab runs Jupyter under, behind one interface (``InitSystem``):
probe and parse, start, stop, restart, status, log command, the upgrade watcher's
reading, unit path. The service state, the day-2 tasks, ``upgrade`` and ``invoke
verify`` ask ``for_init(name)``; adding OpenRC would be one module here.
"""

from __future__ import annotations

from dataclasses import dataclass

from jupyterfab.engine.facts import key_values
from jupyterfab.engine.initsys.base import (
    DETECT,
    PROBE,
    InitSystem,
    ServiceStatus,
    Unsupported,
    refusal,
    sections,
)
from jupyterfab.engine.initsys.systemd import SYSTEMD
from jupyterfab.engine.initsys.upstart import UPSTART, InitctlStatus, parse_initctl_status
from jupyterfab.engine.shell import Command, cmd

ADAPTERS: dict[str, InitSystem] = {a.name: a for a in (SYSTEMD, UPSTART)}

__all__ = ["ADAPTERS", "DETECT", "PROBE", "Found", "InitSystem", "ServiceStatus", "Unsupported",
           "for_init", "parse", "parse_initctl_status", "probe_command", "refusal", "sections", "supported"]


@dataclass(frozen=True)
class Found:
    """What the init probe said: the init system, PID 1, and (Upstart) the job's status."""

    init: str                               # "systemd", "upstart", "none" ("": not known)
    pid1: str = ""
    job: InitctlStatus | None = None        # upstart: the job's status (None: not loaded)

    @property
    def system(self) -> InitSystem:
        return ADAPTERS[self.init]


def for_init(name: str) -> InitSystem:
    """The adapter for ``systemd`` or ``upstart``; KeyError for any other."""
    return ADAPTERS[name]


def probe_command(service: str) -> Command:
    return cmd("sh", "-c", PROBE, "sh", service)


def parse(stdout: str, service: str = "") -> Found:
    """What ``DETECT`` (or ``PROBE``) printed (pure): the one parser of the init probe."""
    values = key_values(stdout)
    init = values.get("init", "")          # "": the probe did not run (sudo, shell)
    job = parse_initctl_status(values.get("status", ""), service) if init == "upstart" else None
    return Found(init, values.get("pid1", ""), job)


def supported(name: str, found: Found, outcome: str, said: str = "") -> Found:
    """``found``, or Unsupported in the deploy's words for a host it would refuse
    (``said``: the probe's stderr, for when it could not even ask)."""
    if not found.init:
        raise Unsupported(f"{name}: could not tell which init system runs it "
                          f"({said.strip() or 'the probe printed nothing'}), so {outcome}")
    if found.init not in ADAPTERS:
        raise Unsupported(refusal(name, found.pid1, outcome))
    return found
