"""systemd: units via systemctl, logs in the journal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..facts import Fact, FactError, FactGroup, need_rc
from ..runner import Runner
from ..shell import Command, Folded, Part, Secret, chain, cmd
from .base import InitSystem, ServiceStatus, sections, with_sections

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")


def exec_word(part: Part) -> Part:
    """A command's word as systemd passes it on unchanged: systemd expands $NAME and
    ${NAME} in a service's command line (systemd-run has no way to turn that off before
    v254), and reads $$ as one $."""
    if isinstance(part, Secret):
        return Secret(part.reveal().replace("$", "$$"))
    return str(part).replace("$", "$$")


def systemctl(*args: str) -> Command:
    return cmd("systemctl", *args)


@dataclass(frozen=True)
class UnitState:
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str
    need_daemon_reload: bool

    @property
    def exists(self) -> bool:
        return self.load_state not in ("not-found", "")

    @property
    def running(self) -> bool:
        return self.active_state in ("active", "reloading")

    @property
    def enabled(self) -> bool:
        # static/generated/indirect units cannot be enabled; treat them as fine
        return self.unit_file_state in ("enabled", "enabled-runtime", "static", "alias",
                                        "generated", "indirect", "linked", "linked-runtime")

    @property
    def needs_stop(self) -> bool:
        return self.active_state not in ("inactive", "failed")

    @property
    def status_text(self) -> str:
        return self.active_state or "unknown"

    @property
    def described(self) -> str:
        return f"{self.active_state} ({self.sub_state})"

    @property
    def enabled_note(self) -> str:
        return f" ({self.unit_file_state})"

    running_word = "active"
    stopped_word = "inactive"


PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "NeedDaemonReload")


def show(*names: str) -> Command:
    return cmd("systemctl", "show", *[part for p in PROPERTIES for part in ("-p", p)], "--", *names)


class UnitGroup(FactGroup):
    """Every unit's ``SystemdUnit`` from one ``systemctl show``, which prints the
    units in the order named, a blank line between two."""

    def command(self, facts: list[Fact]) -> Command:
        return show(*(fact.name for fact in facts))

    def split(self, facts: list[Fact], stdout: str, rc: int) -> list[tuple[str, int]]:
        blocks = stdout.rstrip("\n").split("\n\n")
        if rc != 0 or len(blocks) != len(facts):
            return [(stdout[-200:], rc or 1)] * len(facts)
        return [(block + "\n", 0) for block in blocks]


_UNIT_GROUP = UnitGroup()
# a plain unit name: no glob systemctl could expand, no option, one block of answer
_PLAIN_UNIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9:_.@-]*")


@dataclass(frozen=True)
class SystemdUnit(Fact):
    name: str

    def command(self) -> Command:
        return show(self.name)

    def group(self) -> FactGroup | None:
        return _UNIT_GROUP if _PLAIN_UNIT.fullmatch(self.name) else None

    def parse(self, stdout: str, rc: int) -> UnitState:
        need_rc(self, rc, (0,), stdout)
        values = dict(line.partition("=")[::2] for line in stdout.splitlines() if "=" in line)
        if "ActiveState" not in values:
            raise FactError(f"systemctl show {self.name}: cannot read {stdout!r}")
        return UnitState(values.get("LoadState", ""), values["ActiveState"],
                         values.get("SubState", ""), values.get("UnitFileState", ""),
                         values.get("NeedDaemonReload") == "yes")

    def describe(self) -> str:
        return f"systemd unit {self.name}"



def unit_file_changed(call) -> bool:
    """A required/watched file state rewrote a unit file or a drop-in."""
    return any(r.function == "file.managed" and r.changed
               and (r.name.endswith(UNIT_SUFFIXES) or "/systemd/" in r.name)
               for r in call.requisite_results)


class Systemd(InitSystem):
    name = "systemd"
    file_format, file_line = "a systemd unit", "setting"
    definition = "unit file"
    reload_verbs = {"daemon-reload": ("reload systemd units", "reloaded systemd units")}
    template_suffix = ".service.j2"

    def unit_check(self, service: str) -> str:
        # systemd's own check, on the candidate under its unit name (it goes by the name);
        # it only warns about a key or section it does not know: those fail here too
        return (f'd=$(mktemp -d) && cp {{tmp}} "$d/{service}.service" && out=$(systemd-analyze verify '
                f'"$d/{service}.service" 2>&1); rc=$?; rm -rf "$d"; printf "%s\\n" "$out"; [ $rc -eq 0 ] '
                '&& ! printf "%s\\n" "$out" | grep -E "Unknown (key|section)|Failed to parse|Missing .=."')

    def missing(self, name: str, unit: UnitState) -> str:
        return ""       # a unit written a moment ago is found after the daemon-reload

    def reload_definitions(self, call, unit: UnitState, changes: dict, starting: bool = True) -> list[Command]:
        # systemd only learns of a unit file written after boot through a reload
        if not (unit.need_daemon_reload or not unit.exists or unit_file_changed(call)):
            return []
        changes["daemon-reload"] = True
        return [systemctl("daemon-reload")]

    def enable(self, call, unit: UnitState, enable: bool | None, changes: dict) -> list[Command]:
        if enable is True and not unit.enabled:
            changes["enabled"] = {"old": unit.unit_file_state or "unknown", "new": "enabled"}
            return [systemctl("enable", "--", call.name)]
        if enable is False and unit.unit_file_state == "enabled":
            changes["enabled"] = {"old": "enabled", "new": "disabled"}
            return [systemctl("disable", "--", call.name)]
        return []

    def start(self, name: str, unit: UnitState) -> Command:
        return systemctl("start", "--", name)

    def stop(self, name: str, unit: UnitState) -> Command:
        return systemctl("stop", "--", name)

    def apply_watched(self, call, unit: UnitState, reasons: list[str], changes: dict) -> list[Command]:
        verb = "reload" if call.args["reload"] else "restart"
        changes[f"{verb}ed"] = reasons
        return [systemctl(verb, "--", call.name)]

    def start_failure_log(self, name: str, unit: UnitState) -> Command:
        return cmd("journalctl", "--no-pager", "-n", "20", "-u", name)

    def memory_command(self, service: str) -> Command:
        return systemctl("show", "-p", "MemoryCurrent", "-p", "MemoryMax", "--", service)

    def unit_path(self, service: str) -> str:
        return f"/etc/systemd/system/{service}.service"

    def confined(self, user: str, properties: tuple[tuple[str, str], ...], seconds: int,
                 command: tuple[Part, ...]) -> tuple[Part, ...]:
        # A transient service (not a scope, which would stay in the caller's cgroup): the
        # command and everything it starts live in a cgroup of their own, killed when the
        # command ends (KillMode) or after `seconds`, and the unit is gone after (--collect).
        # Only User= is shown in a command's display; the many other settings fold to "...".
        settings = [("User", user), ("RuntimeMaxSec", str(seconds)), ("KillMode", "control-group"),
                    *[(key, value) for key, value in properties if key != "User"]]
        return ("systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec",
                f"--description=jupyterfab: a step as {user}, confined",
                *[part for key, value in settings
                  for part in (("-p", f"{key}={value}") if key == "User"
                               else (Folded("-p"), Folded(f"{key}={value}")))],
                "--", *[exec_word(part) for part in command])

    def restart_policy(self, user: str) -> tuple[str, ...]:
        return ("^Restart=on-failure", "^StartLimitBurst=10")

    def unit_fact(self, service: str) -> SystemdUnit:
        return SystemdUnit(service)

    def control(self, action: str, service: str, job=None) -> Command:
        return chain(systemctl(action, "--", service), systemctl("is-active", "--", service), op=";")

    def control_verdict(self, action, service, done):
        state = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "unknown"
        ok = state == ("inactive" if action == "stop" else "active")
        return ok, f"{action}: {service} is {state}" + ("" if ok else f"\n{done.stderr.strip()}")

    def restart(self, service: str, job=None) -> Command:
        return systemctl("restart", "--", service)

    def status(self, runner: Runner, service: str, job, extra):
        r = runner.run(with_sections(
            ("props", systemctl("show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
                                "-p", "ActiveEnterTimestamp", "-p", "ActiveEnterTimestampMonotonic",
                                "-p", "NRestarts", "--", service)),
            ("uptime", cmd("cat", "/proc/uptime")), *extra), timeout=60)
        found = sections(r.stdout)
        props = dict(line.split("=", 1) for line in found.get("props", []) if "=" in line)
        active = props.get("ActiveState") == "active"
        uptime = None
        if active and found.get("uptime"):
            uptime = (float(found["uptime"][0].split()[0])
                      - int(props["ActiveEnterTimestampMonotonic"]) / 1e6)
        return ServiceStatus(active, f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})",
                             props.get("MainPID", "?"), props.get("NRestarts", "?"), uptime,
                             props.get("ActiveEnterTimestamp") or "-"), found

    def log(self, service: str, lines: int, follow: bool = False) -> Command:
        # -f or not, the same timestamps (short-iso)
        return cmd("journalctl", "-u", service, "-n", lines, *(["-f"] if follow else []),
                   "--no-pager", "-o", "short-iso")

    state_shell = 'systemctl is-active "$unit" 2>/dev/null'
    stop_shell = 'systemctl stop -- "$unit" || true\n'
    start_no_wait_shell = ('systemctl reset-failed -- "$unit" 2>/dev/null || true\n'
                           'systemctl start --no-block -- "$unit"\n')
    mark_shell = ""
    # The watcher's view (upgrade.watch_script): active, failed (gave up, or is
    # restarting), the main pid, restarts so far.
    watch_props = r'''
def props():
    out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
                          "-p", "NRestarts", "-p", "Result", "-p", "ExecMainStatus", "--", unit],
                         capture_output=True, text=True).stdout
    p = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state, sub = p.get("ActiveState"), p.get("SubState")
    return {"active": state == "active", "failed": state == "failed" or sub == "auto-restart",
            "pid": p.get("MainPID"), "restarts": p.get("NRestarts"), "where": f"{state}/{sub}",
            "detail": f"{state}/{sub}, result {p.get('Result')}, exit status {p.get('ExecMainStatus')}"}
'''

    def failed_attempt_log(self, runner, service, said, said_back):
        window = [*(["--since", f"@{said['at']}"] if said.get("at", "").isdigit() else []),
                  # whole seconds: one more, so the crash just before the rollback is in
                  *(["--until", f"@{int(said_back['at']) + 1}"] if said_back.get("at", "").isdigit() else [])]
        # (no -n: with --since, journalctl's -n counts from the start of the window)
        journal = runner.run(cmd("journalctl", "-u", service, "--no-pager", "-o", "short-iso", *window),
                             timeout=60)
        return journal.stdout.strip().splitlines()[-20:]


SYSTEMD = Systemd()
