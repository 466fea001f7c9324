"""What every init adapter offers (``InitSystem``) and the one probe that tells which
init runs a host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import HostError
from ..runner import CmdResult, Runner
from ..shell import Command, Part, chain, cmd

# Sets $init for what follows it in a script and says it: systemd when it runs the
# host (/run/systemd/system exists), else Upstart when its initctl answers as
# Upstart, else none of the two. The deploy's host probe embeds it; so do the
# day-2 tasks (with the job's status) and `invoke verify`.
DETECT = r"""if [ -d /run/systemd/system ]; then init=systemd
elif command -v initctl >/dev/null 2>&1 && initctl version 2>/dev/null | grep -q upstart; then init=upstart
else init=none; fi
echo "init=$init"
{ read -r pid1 </proc/1/comm; } 2>/dev/null || pid1=
echo "pid1=$pid1"
"""

# $1 the service. DETECT and, on Upstart, the job's status: every day-2 task's first look.
PROBE = DETECT + r"""[ "$init" = upstart ] && echo "status=$(initctl status "$1" 2>&1 | head -n 1)"
true
"""


class Unsupported(HostError):
    """The host runs neither systemd nor Upstart: nothing was done there."""


class CannotEnable(HostError):
    """The service's own definition keeps it from being enabled (an Upstart job with no
    ``start on``, or ``manual`` in the job file itself)."""


def refusal(name: str, pid1: str, outcome: str = "it changed nothing on this host") -> str:
    """Why a host with neither systemd nor Upstart is refused; ``outcome``: what was (not) done."""
    said = f"PID 1 is {pid1!r}" if pid1 else "PID 1 could not be read"
    return (f"{name} runs neither systemd nor Upstart ({said}; no /run/systemd/system, "
            "and no initctl that answers as Upstart): jupyterfab runs Jupyter as a systemd "
            f"service or an Upstart job (Ubuntu 14.04), so {outcome}")


@dataclass(frozen=True)
class ServiceStatus:
    """One service's state in the same terms on every init (``fab status``)."""

    running: bool
    state: str                  # "active (running)", "start/running (Upstart job)"
    pid: str
    restarts: str               # "unknown" where the init keeps no count
    uptime_seconds: float | None
    since: str


class InitSystem:
    """One init system's way of doing each thing jupyterfab asks of a service.

    Subclasses: ``systemd.Systemd`` and ``upstart.Upstart``. Commands are built here,
    run by the caller (a state, a day-2 task, ``upgrade``), so one round trip can
    carry several.
    """

    name = ""

    def unit_path(self, service: str) -> str:
        raise NotImplementedError

    def restart_policy(self, user: str) -> tuple[str, ...]:
        """Lines (regular expressions) the deployed unit must have: restart on failure."""
        raise NotImplementedError

    def control(self, action: str, service: str, job: Any = None) -> Command:
        """start, stop or restart, then report the state (``control_verdict`` reads it)."""
        raise NotImplementedError

    def control_verdict(self, action: str, service: str, done: CmdResult) -> tuple[bool, str]:
        raise NotImplementedError

    def restart(self, service: str, job: Any = None) -> Command:
        """Restart (or start when stopped); returns once the service answers."""
        raise NotImplementedError

    def status(self, runner: Runner, service: str, job: Any, extra: list[Command]
               ) -> tuple[ServiceStatus, list[str]]:
        """The service's status and, in the same round trip, ``extra``'s outputs."""
        raise NotImplementedError

    def log(self, service: str, lines: int, follow: bool = False) -> Command:
        raise NotImplementedError

    # `fab upgrade`'s pieces: shell for its stop-switch-start script (with $unit set),
    # the watcher's reading of the service (Python source defining props()), and
    # what the failed server logged.
    state_shell = ""            # prints the service's state word
    stop_shell = ""             # stops it, quietly (stopped already is fine)
    start_no_wait_shell = ""    # starts it without waiting for it to answer
    mark_shell = ""             # prints log_size= (Upstart) or nothing
    watch_props = ""

    def failed_attempt_log(self, runner: Runner, service: str, said: dict, said_back: dict) -> list[str]:
        raise NotImplementedError

    # The service states' decisions (states/service.py: service.running, .enabled and
    # .dead ask these, and stay the same on every init). ``unit`` is ``unit_fact``'s
    # value: it says exists, running, enabled, needs_stop, status_text, running_word,
    # stopped_word, described and enabled_note in the same terms on every init.
    # ``call`` is the state's Call; ``changes`` gets what each command changes.
    definition = ""             # what defines a service: "unit file", "job file"
    # reload_definitions' change key: what a dry run and a run say of it
    reload_verbs: dict[str, tuple[str, str]] = {}
    template_suffix = ""        # files/<service>/<service><suffix>: its template
    # its files as an error names them ("a systemd unit"), and what a new line starts
    # there ("setting"): template values are single words there (template_values)
    file_format = file_line = ""

    def unit_fact(self, service: str):
        """The fact service.running/enabled/dead decide from (one probe)."""
        raise NotImplementedError

    def unit_file(self, service: str) -> dict[str, str]:
        """The sls's file.managed for the service's definition: name, source, check_cmd."""
        return {"name": self.unit_path(service), "source": f"{service}/{service}{self.template_suffix}",
                "check_cmd": self.unit_check(service)}

    def unit_check(self, service: str) -> str:
        """The check_cmd a candidate definition ({tmp}) must pass."""
        raise NotImplementedError

    def missing(self, name: str, unit: Any) -> str:
        """Why the states cannot act on a service the init does not know ("": they can)."""
        raise NotImplementedError

    def reload_definitions(self, call: Any, unit: Any, changes: dict, starting: bool = True) -> list[Command]:
        """Commands that make the init read definitions written since it last did
        (``starting``: before a start or restart; else before enabling)."""
        raise NotImplementedError

    def enable(self, call: Any, unit: Any, enable: bool | None, changes: dict) -> list[Command]:
        """Commands for ``enable`` (True, False, None: as it is); CannotEnable when it cannot be."""
        raise NotImplementedError

    def start(self, name: str, unit: Any) -> Command:
        raise NotImplementedError

    def stop(self, name: str, unit: Any) -> Command:
        raise NotImplementedError

    def apply_watched(self, call: Any, unit: Any, reasons: list[str], changes: dict) -> list[Command]:
        """A running service whose watched states changed: reload or restart (``reload`` arg)."""
        raise NotImplementedError

    def start_failure_log(self, name: str, unit: Any) -> Command:
        """What to show when a service was started but does not run."""
        raise NotImplementedError

    def memory_command(self, service: str) -> Command | None:
        """The service's memory use and limit (``fab status``); None where the init keeps none."""
        return None

    def confined(self, user: str, properties: tuple[tuple[str, str], ...], seconds: int,
                 command: tuple[Part, ...]) -> tuple[Part, ...]:
        """``command`` run as ``user`` inside the box the init can give it (``properties``:
        a systemd service's, as the caller asks), for at most ``seconds``; its output,
        input and exit code stay the command's."""
        raise NotImplementedError


def sections(stdout: str) -> dict[str, list[str]]:
    """``==name==`` marker lines split one command's output into sections (pure)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("==") and line.endswith("==") and len(line) > 4:
            current = found.setdefault(line.strip("="), [])
        elif current is not None:
            current.append(line)
    return found


def with_sections(*parts: tuple[str, Command]) -> Command:
    """Commands whose outputs ``sections`` tells apart: one round trip."""
    return chain(*[c for name, command in parts for c in (cmd("echo", f"=={name}=="), command)], op=";")
