"""systemd: units via systemctl, logs in the journal."""

from __future__ import annotations

from dataclasses import dataclass

from ..facts import Fact, FactError, need_rc
from ..runner import Runner
from ..shell import Command, chain, cmd
from .base import InitSystem, ServiceStatus, sections, with_sections

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")


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


@dataclass(frozen=True)
class SystemdUnit(Fact):
    name: str

    PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "NeedDaemonReload")

    def command(self) -> Command:
        props = [part for p in self.PROPERTIES for part in ("-p", p)]
        return cmd("systemctl", "show", *props, "--", self.name)

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



class Systemd(InitSystem):
    name = "systemd"

    def unit_path(self, service: str) -> str:
        return f"/etc/systemd/system/{service}.service"

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
