"""Upstart 1.4+ (Ubuntu 14.04): jobs via initctl, logs in /var/log/upstart, and the
SysV scripts Upstart still runs (NGINX there) via service and update-rc.d."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..facts import Fact, FactError, key_values, need_rc
from ..runner import Runner
from ..shell import Command, Part, chain, cmd
from .base import CannotEnable, InitSystem, ServiceStatus, sections, with_sections

# A confined command's PATH: the system's, as a systemd service gets it.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def initctl(*args: str) -> Command:
    return cmd("initctl", *args)


def sysv_service(verb: str, name: str) -> Command:
    return cmd("service", name, verb)


def job_path(name: str) -> str:
    return f"/etc/init/{name}.conf"


def override_path(name: str) -> str:
    return f"/etc/init/{name}.override"


def log_path(name: str) -> str:
    return f"/var/log/upstart/{name}.log"


# `manual` in the override file disables a job without touching its job file
# (what `echo manual > /etc/init/NAME.override` does by hand); the fact's grep
# recognizes the same lines.
MANUAL_LINE = r"^[[:space:]]*manual[[:space:]]*(#.*)?$"
ADD_MANUAL = 'echo manual >> "$1"'

# $1 log file, $2 its size when the failed attempt began, $3 when it ended. What
# the failed server wrote (from the start when the file was rotated in between).
LOG_WINDOW = r"""
size=$(stat -c %s "$1" 2>/dev/null || echo 0)
if [ "$2" -le "$3" ] && [ "$3" -le "$size" ]; then head -c "$3" "$1" | tail -c "+$(($2 + 1))"
else tail -n 200 "$1"; fi
"""


# One probe answers everything service.running needs on an Upstart host. A job
# is /etc/init/NAME.conf (plus NAME.override, whose stanzas win); a name without
# a job may be a SysV script in /etc/init.d, as NGINX is on Ubuntu 14.04.
UPSTART_SCRIPT = r"""
job=/etc/init/$1.conf override=/etc/init/$1.override
if [ -f "$job" ]; then
  echo kind=upstart
  grep -Eqs '^[[:space:]]*start[[:space:]]+on([[:space:]]|$)' "$job" "$override" && echo start_on=yes
  grep -Eqs 'MANUAL' "$job" && echo manual=job
  grep -Eqs 'MANUAL' "$override" && echo manual=override
  echo "status=$(initctl status "$1" 2>&1 | head -n 1)"
elif [ -x "/etc/init.d/$1" ]; then
  echo kind=sysv
  for link in /etc/rc[2345].d/S[0-9][0-9]"$1"; do [ -e "$link" ] && echo links=yes && break; done
  service "$1" status >/dev/null 2>&1
  echo "status_rc=$?"
else
  echo kind=missing
fi
""".replace("MANUAL", MANUAL_LINE)

# "jupyter start/running, process 1234", "jupyter stop/waiting",
# "jupyter start/post-start, (post-start) process 1240"
_INITCTL_STATUS = re.compile(r"(?P<job>\S+) (?P<goal>start|stop)/(?P<state>[a-z-]+)(?:,.*?process (?P<pid>\d+))?")


@dataclass(frozen=True)
class InitctlStatus:
    goal: str                    # "start" or "stop"
    state: str                   # "running", "waiting", "post-start", ...
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.goal == "start" and self.state == "running"

    def __str__(self) -> str:
        return f"{self.goal}/{self.state}"


def parse_initctl_status(line: str, name: str) -> InitctlStatus | None:
    """The first line of ``initctl status NAME`` (pure); None when Upstart does not
    know the job ("initctl: Unknown job: NAME") or the line is something else."""
    m = _INITCTL_STATUS.match(line.strip())
    if not m or m.group("job") != name:
        return None
    return InitctlStatus(m.group("goal"), m.group("state"),
                         int(m.group("pid")) if m.group("pid") else None)


@dataclass(frozen=True)
class UpstartJobState:
    kind: str                    # "upstart", "sysv" (an /etc/init.d script) or "missing"
    known: bool = False          # upstart: initctl knows the job (its file has been loaded)
    goal: str = ""               # upstart: "start" or "stop"
    state: str = ""              # upstart: "running", "waiting", "post-start", ...
    pid: int | None = None
    start_on: bool = False       # upstart: the job (or its override) has a start on stanza
    manual_in_job: bool = False  # upstart: `manual` in the job file itself
    manual_in_override: bool = False
    sysv_links: bool = False     # sysv: started in some runlevel 2-5
    sysv_status: int | None = None   # sysv: `service NAME status` exit code (LSB: 0 running)

    @property
    def exists(self) -> bool:
        return self.kind != "missing"

    @property
    def running(self) -> bool:
        if self.kind == "sysv":
            return self.sysv_status == 0
        return self.goal == "start" and self.state == "running"

    @property
    def enabled(self) -> bool:
        if self.kind == "sysv":
            return self.sysv_links
        return self.start_on and not (self.manual_in_job or self.manual_in_override)

    @property
    def running_word(self) -> str:
        return "running" if self.kind == "sysv" else "start/running"

    stopped_word = "stopped"
    enabled_note = ""

    @property
    def status_text(self) -> str:
        if self.kind == "sysv":
            return "running" if self.running else f"not running (status {self.sysv_status})"
        if self.kind == "missing":
            return "missing"
        return f"{self.goal}/{self.state}" if self.known else "not loaded by Upstart"

    needs_stop = running
    described = status_text


@dataclass(frozen=True)
class UpstartJob(Fact):
    name: str

    def command(self) -> Command:
        return cmd("sh", "-c", UPSTART_SCRIPT, "sh", self.name)

    def parse(self, stdout: str, rc: int) -> UpstartJobState:
        need_rc(self, rc, (0,), stdout)
        values, lines = key_values(stdout), stdout.splitlines()
        kind = values.get("kind", "")
        if kind == "missing":
            return UpstartJobState("missing")
        if kind == "sysv":
            status = values.get("status_rc", "")
            if not status.isdigit():
                raise FactError(f"service {self.name} status: cannot read {stdout!r}")
            return UpstartJobState("sysv", sysv_links=values.get("links") == "yes", sysv_status=int(status))
        if kind != "upstart":
            raise FactError(f"Upstart job {self.name}: cannot read {stdout!r}")
        common = dict(start_on=values.get("start_on") == "yes",
                      manual_in_job="manual=job" in lines, manual_in_override="manual=override" in lines)
        # "initctl: Unknown job: NAME" when the file was never loaded (or is invalid)
        status = parse_initctl_status(values.get("status", ""), self.name)
        if status is None:
            return UpstartJobState("upstart", **common)
        return UpstartJobState("upstart", known=True, goal=status.goal, state=status.state,
                               pid=status.pid, **common)

    def describe(self) -> str:
        return f"Upstart job {self.name}"



def job_file_changed(call) -> bool:
    """A required/watched file state rewrote an Upstart job or override file."""
    return any(r.function == "file.managed" and r.changed and r.name.startswith("/etc/init/")
               and r.name.endswith((".conf", ".override")) for r in call.requisite_results)


def sysv_or_job(verb: str, name: str, job: UpstartJobState) -> Command:
    return sysv_service(verb, name) if job.kind == "sysv" else initctl(verb, name)


# Reloads jupyterfab installs that return only once the new configuration serves
# (states/nginx/init.sls; on systemd they are the unit's ExecReload, through a
# drop-in). A SysV script's reload only signals: `service nginx reload` is
# `nginx -s reload`, after which old workers still answer for a while.
WAITING_RELOADS = {"nginx": "/usr/local/sbin/jupyterfab-nginx-reload"}

# $1 the waiting reload, then the plain reload's words: the first where the deploy
# installed it, else the second.
RELOAD_VIA = 'if [ -x "$1" ]; then exec "$1"; fi; shift; exec "$@"'


def reload_or_restart(verb: str, name: str, job: UpstartJobState) -> Command:
    """``restart`` or ``reload`` a running SysV script (``service``) or Upstart job
    (``initctl``); a reload goes through the service's waiting reload when there is one,
    so it returns once the new configuration serves, as on systemd."""
    plain = sysv_or_job(verb, name, job)
    waiter = WAITING_RELOADS.get(name) if verb == "reload" else None
    if waiter is None:
        return plain
    return cmd("sh", "-c", RELOAD_VIA, "sh", waiter, *plain.parts)


class Upstart(InitSystem):
    name = "upstart"
    file_format, file_line = "an Upstart job", "stanza"
    definition = "job file"
    reload_verbs = {"reload-configuration": ("reload Upstart's job configuration",
                                             "reloaded Upstart's job configuration")}
    template_suffix = ".upstart.j2"

    def unit_check(self, service: str) -> str:
        # every line a stanza of this job's (Upstart's init-checkconf needs a session bus)
        return ('! grep -Evn "^(#.*|description .*|author .*|start on .*|stop on .*|respawn|'
                'respawn limit [0-9]+ [0-9]+|normal exit .*|setuid [a-z_][a-z0-9_-]*|setgid [a-z_][a-z0-9_-]*|'
                'chdir /.*|env [A-Z_]+=.*|console log|exec /.*|post-start exec .*|kill timeout [0-9]+|'
                'umask [0-7]{3,4}|limit [a-z]+ [0-9a-z]+ [0-9a-z]+|oom score -?[0-9]+|)$" {tmp}')

    def missing(self, name: str, job: UpstartJobState) -> str:
        return "" if job.exists else (f"{name} is neither an Upstart job ({job_path(name)}) "
                                      f"nor a SysV script (/etc/init.d/{name})")

    def reload_definitions(self, call, job: UpstartJobState, changes: dict, starting: bool = True) -> list[Command]:
        if not starting or job.kind == "sysv" or (job.known and not job_file_changed(call)):
            return []
        # Upstart watches /etc/init with inotify, but only an explicit reload makes
        # sure the job file written a moment ago is the one `start` uses.
        changes["reload-configuration"] = True
        return [initctl("reload-configuration")]

    def enable(self, call, job: UpstartJobState, enable: bool | None, changes: dict) -> list[Command]:
        name = call.name
        if job.kind == "sysv":
            if enable is True and not job.sysv_links:
                changes["enabled"] = {"old": "disabled", "new": "enabled"}
                # `defaults` makes the links if there are none, `enable` turns K links into S links
                return [cmd("update-rc.d", name, "defaults"), cmd("update-rc.d", name, "enable")]
            if enable is False and job.sysv_links:
                changes["enabled"] = {"old": "enabled", "new": "disabled"}
                return [cmd("update-rc.d", name, "disable")]
            return []
        if enable is True and not job.enabled:
            if not job.start_on:
                raise CannotEnable(f"{name} cannot be enabled: {job_path(name)} has no `start on` stanza")
            if job.manual_in_job:
                raise CannotEnable(f"{name} cannot be enabled: {job_path(name)} itself says `manual`")
            changes["enabled"] = {"old": "manual", "new": "enabled"}
            return [cmd("sed", "-i", "-E", f"/{MANUAL_LINE}/d", "--", override_path(name))]
        if enable is False and job.enabled:
            changes["enabled"] = {"old": "enabled", "new": "disabled"}
            return [cmd("sh", "-c", ADD_MANUAL, "sh", override_path(name))]
        return []

    def start(self, name: str, job: UpstartJobState) -> Command:
        return sysv_or_job("start", name, job)

    def stop(self, name: str, job: UpstartJobState) -> Command:
        return sysv_or_job("stop", name, job)

    def apply_watched(self, call, job: UpstartJobState, reasons: list[str], changes: dict) -> list[Command]:
        # a pending marker alone (no watched change) does not say whether the job file was among the changes
        job_file_maybe = job_file_changed(call) or (not call.watch_changed and not call.args["reload"])
        if job.kind != "sysv" and job_file_maybe:
            # `initctl restart` keeps the job definition the instance was started
            # with; only stop + start runs the new job file.
            changes["restarted"] = reasons
            return [initctl("stop", call.name), initctl("start", call.name)]
        verb = "reload" if call.args["reload"] else "restart"
        changes[f"{verb}ed"] = reasons
        return [reload_or_restart(verb, call.name, job)]

    def start_failure_log(self, name: str, job: UpstartJobState) -> Command:
        return sysv_service("status", name) if job.kind == "sysv" else cmd("tail", "-n", "20", log_path(name))

    def unit_path(self, service: str) -> str:
        return job_path(service)

    def confined(self, user: str, properties: tuple[tuple[str, str], ...], seconds: int,
                 command: tuple[Part, ...]) -> tuple[Part, ...]:
        # Upstart has no transient jobs and no counterpart to a systemd unit's sandbox (the
        # Jupyter job has none either): the command gets what the job's processes get, the
        # user's own permissions, with none of root's environment, for at most `seconds`
        # (timeout kills its process group then). A process that leaves that group (setsid)
        # can outlive it, as one started from a kernel can on such a host.
        return ("timeout", "-k", "10", str(seconds), "env", "-i", f"PATH={SAFE_PATH}",
                "runuser", "-u", user, "--", *command)

    def restart_policy(self, user: str) -> tuple[str, ...]:
        return ("^respawn$", "^respawn limit 10 90$", f"^setuid {user}$")

    def unit_fact(self, service: str) -> UpstartJob:
        return UpstartJob(service)

    def control(self, action: str, service: str, job: InitctlStatus | None = None) -> Command:
        do = self.restart(service, job) if action == "restart" else initctl(action, service)
        # stop: up to the job's kill timeout (30 s); start: its post-start (90 s)
        return chain(do, cmd("echo", "==status=="), initctl("status", service), op=";")

    def control_verdict(self, action, service, done):
        line = (sections(done.stdout).get("status") or [""])[0]
        now = parse_initctl_status(line, service)
        ok = now is not None and (now.goal == "stop" if action == "stop" else now.running)
        said = f"{now}" + (f", pid {now.pid}" if now and now.pid else "") if now else "not known to Upstart"
        return ok, (f"{action}: {service} is {said}"
                    + ("" if ok else f"\n{(done.stderr.strip() + chr(10) + line).strip()}"))

    def restart(self, service: str, job: InitctlStatus | None = None) -> Command:
        # as systemctl restart does, a stopped job is started (initctl restart would refuse it)
        running = job is not None and job.goal == "start"
        return initctl("restart" if running else "start", service)

    def status(self, runner: Runner, service: str, job: InitctlStatus | None, extra):
        """State and pid from ``initctl status`` (the init probe's), uptime from the pid."""
        pid = job.pid if job and job.running else None
        r = runner.run(with_sections(*([("uptime", cmd("ps", "-o", "etimes=,lstart=", "-p", pid))] if pid else []),
                                     *extra), timeout=60)
        found = sections(r.stdout)
        elapsed, _, started = ((found.get("uptime") or [""])[0]).strip().partition(" ")
        uptime, since = (int(elapsed), " ".join(started.split()) or "-") if elapsed.isdigit() else (None, "-")
        # Upstart keeps no count of respawns (its log, or syslog, shows them)
        state = f"{job}" if job else "not loaded by Upstart"
        return ServiceStatus(bool(job and job.running), f"{state} (Upstart job)", str(pid or "-"),
                             "unknown", uptime, since), found

    def log(self, service: str, lines: int, follow: bool = False) -> Command:
        # -F: keeps following across logrotate's rename
        return cmd("tail", "-n", lines, *(["-F"] if follow else []), log_path(service))

    state_shell = ("initctl status \"$unit\" 2>/dev/null"
                   " | sed -n '1s/^[^ ]* \\([a-z]*\\/[a-z-]*\\).*/\\1/p'")
    stop_shell = 'initctl stop "$unit" >/dev/null 2>&1 || true       # "Unknown instance": it was stopped\n'
    start_no_wait_shell = 'initctl start --no-wait "$unit" >/dev/null\n'
    # how long the job's log was before the stop, so one attempt's lines can be told from the next
    mark_shell = 'echo "log_size=$(stat -c %s "/var/log/upstart/$unit.log" 2>/dev/null || echo 0)"\n'
    # Upstart counts no respawns: every new main pid is one. Goal stop: it exited for
    # good, or hit its respawn limit.
    watch_props = r'''
pids = []

def props():
    out = subprocess.run(["initctl", "status", unit], capture_output=True, text=True)
    line = (out.stdout.splitlines() or out.stderr.splitlines() or ["initctl status said nothing"])[0]
    # the main process's pid only ("..., process N"), never "(post-start) process N"
    m = re.match(r"(\S+) (start|stop)/([a-z-]+)(?:, process (\d+))?", line)
    if not m or m.group(1) != unit:     # not a job Upstart knows: it cannot run
        return {"active": False, "failed": True, "pid": None, "restarts": len(pids),
                "where": line, "detail": line}
    goal, state, pid = m.group(2), m.group(3), m.group(4)
    if pid and pid not in pids:
        pids.append(pid)
    respawned = max(len(pids) - 1, 0)
    return {"active": goal == "start" and state == "running", "failed": goal == "stop",
            "pid": pid, "restarts": respawned, "where": f"{goal}/{state}",
            "detail": f"{goal}/{state}" + (f", {respawned} respawn{'s' if respawned > 1 else ''}"
                                           if respawned else "")
                      + f"; see /var/log/upstart/{unit}.log"}
'''

    def failed_attempt_log(self, runner, service, said, said_back):
        start, end = said.get("log_size", ""), said_back.get("log_size", "")
        if start.isdigit() and end.isdigit():
            r = runner.run(cmd("sh", "-c", LOG_WINDOW, "sh", log_path(service), start, end), timeout=60)
        else:
            r = runner.run(cmd("tail", "-n", 20, log_path(service)), timeout=60)
        return r.stdout.strip().splitlines()[-20:]


UPSTART = Upstart()
