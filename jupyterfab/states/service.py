"""service.running, service.enabled, service.dead: systemd units via systemctl,
or, on an Upstart host (``Context.init == "upstart"``), Upstart jobs via initctl
and the SysV scripts Upstart still runs via service/update-rc.d.

Which one is the host's, not the state file's, business (like Salt picking its
service module from the grains): the deploy probes the init system once and the
same ``service.running`` works on both. No systemctl ever reaches an Upstart host.
"""

from __future__ import annotations

import posixpath

from ..facts.files import PathExists
from ..initsys import ADAPTERS, for_init
from ..initsys.systemd import UNIT_SUFFIXES, SystemdUnit, UnitState, systemctl
from ..initsys.upstart import (
    ADD_MANUAL,
    MANUAL_LINE,
    UpstartJob,
    UpstartJobState,
    control_verb,
    initctl,
    job_path,
    log_path,
    override_path,
    sysv_service,
)
from ..shell import Command, chain, cmd
from .base import Arg, Call, Probe, Run, boolean, state, unit_name

# One empty file per service whose watched states changed but which has not yet
# reloaded/restarted since: made by the engine in the command that makes a watched
# change live, removed by service.running after its reload/restart (or start) succeeded.
PENDING_DIR = "/var/lib/jupyterfab/pending"


def pending_marker(name: str) -> str:
    return posixpath.join(PENDING_DIR, name)


def _facts(name, args, ctx) -> dict:
    if ctx.init not in ADAPTERS:
        # fails this state before anything is sent (the deploy refuses such hosts earlier)
        raise ValueError(f"services need systemd or Upstart; {ctx.host} runs {ctx.init}")
    return {"unit": for_init(ctx.init).unit_fact(name)}


def _running_facts(name, args, ctx) -> dict:
    return {**_facts(name, args, ctx), "pending": PathExists(pending_marker(name))}


def _pending(call: Call) -> bool:
    return bool(call.facts.get("pending"))


def _reasons(call: Call) -> list[str]:
    """Why a running service reloads/restarts: the watched states that changed, or
    else the pending marker an earlier, interrupted run left."""
    return (sorted({f"{r.function.split('.')[0]}: {r.state_id}" for r in call.watch_changed})
            or [f"pending: {pending_marker(call.name)}"])


def _clear_pending(call: Call) -> list[Command]:
    return [cmd("rm", "-f", "--", pending_marker(call.name))] if _pending(call) else []


def unit_file_changed(call: Call) -> bool:
    """A required/watched file state rewrote a unit file or a drop-in."""
    return any(r.function == "file.managed" and r.changed
               and (r.name.endswith(UNIT_SUFFIXES) or "/systemd/" in r.name)
               for r in call.requisite_results)


def daemon_reload_needed(call: Call, unit: UnitState) -> bool:
    # systemd only learns of a unit file written after boot through a reload
    return unit.need_daemon_reload or not unit.exists or unit_file_changed(call)


def _enable_steps(call: Call, unit: UnitState, changes: dict) -> list[Command]:
    enable = call.args.get("enable")
    if enable is True and not unit.enabled:
        changes["enabled"] = {"old": unit.unit_file_state or "unknown", "new": "enabled"}
        return [systemctl("enable", "--", call.name)]
    if enable is False and unit.unit_file_state == "enabled":
        changes["enabled"] = {"old": "enabled", "new": "disabled"}
        return [systemctl("disable", "--", call.name)]
    return []


_VERBS = {"daemon-reload": ("reload systemd units", "reloaded systemd units"),
          "reload-configuration": ("reload Upstart's job configuration",
                                   "reloaded Upstart's job configuration"),
          "enabled": ("change enablement", "changed enablement"),
          "running": ("start", "started"), "restarted": ("restart", "restarted"),
          "reloaded": ("reload", "reloaded"), "stopped": ("stop", "stopped")}


def _said(changes: dict, test: bool, name: str) -> str:
    verbs = [_VERBS[k][0 if test else 1] for k in changes]
    if "enabled" in changes:
        new = changes["enabled"]["new"]
        verbs[list(changes).index("enabled")] = (new[:-1] if test else new)
    return ("would " if test else "") + ", ".join(verbs) + f" {name}"


def _journal(name: str) -> Command:
    return cmd("journalctl", "--no-pager", "-n", "20", "-u", name)


@state("service.running", name=unit_name, facts=_running_facts, pending_marker=pending_marker,
       args={
           "enable": Arg(boolean),
           "reload": Arg(boolean, default=False),
       })
def running(call: Call):
    """A service runs (and is enabled), on systemd or Upstart alike (``initsys``);
    restarted (or reloaded) when a state it watches changed.

    A change to a watched state is not lost when the run stops before the restart
    (a cut connection, a failed state in between): the command that makes a watched
    state's change live (after its check, if it has one) first creates the marker
    ``/var/lib/jupyterfab/pending/<name>`` on the host; a change its check refuses
    never went live and leaves no marker. While the marker exists the
    service is reloaded/restarted as if a watched state had changed, also on a later
    run that finds every watched file current, and the marker is removed in the same
    command, after the reload/restart (or a start of a stopped service) succeeded. A
    dry run predicts that reload/restart and writes no marker.

    name
        The service (unit or Upstart job; a SysV script on Upstart hosts).
    enable
        Also enabled at boot (true), disabled (false), or left as it is (unset).
    reload
        Reload instead of restart when a watched state changed.
    """
    if call.ctx.init == "upstart":
        return (yield from upstart_running(call))
    unit: UnitState = call.facts["unit"]
    changes: dict = {}
    steps: list[Command] = []
    if daemon_reload_needed(call, unit):
        changes["daemon-reload"] = True
        steps.append(systemctl("daemon-reload"))
    steps += _enable_steps(call, unit, changes)
    if not unit.running:
        changes["running"] = {"old": unit.active_state or "unknown", "new": "active"}
        steps.append(systemctl("start", "--", call.name))
    elif call.watch_changed or _pending(call):
        # Only a unit that was already running is restarted: one started just now
        # already runs the new configuration.
        verb = "reload" if call.args["reload"] else "restart"
        changes[f"{verb}ed"] = _reasons(call)
        steps.append(systemctl(verb, "--", call.name))
    if steps:
        steps += _clear_pending(call)
    if not steps:
        return call.done(f"{call.name} is running" + (" and enabled" if call.args["enable"] else ""))
    if call.test:
        return call.would(_said(changes, True, call.name), changes)
    call.changes.update(changes)
    yield Run(chain(*steps))
    if "running" in changes:
        now = yield Probe(SystemdUnit(call.name))
        if not now.running:
            log = yield Run(_journal(call.name), check=False)
            return call.fail(f"{call.name} was started but is {now.active_state} ({now.sub_state})",
                             stderr=log.stdout.strip())
    return call.done(_said(changes, False, call.name))


@state("service.enabled", name=unit_name, facts=_facts)
def enabled(call: Call):
    """A service starts at boot.

    name
        The service (unit or Upstart job; a SysV script on Upstart hosts).
    """
    if call.ctx.init == "upstart":
        return (yield from upstart_enabled(call))
    unit: UnitState = call.facts["unit"]
    if unit.enabled:
        return call.done(f"{call.name} is enabled ({unit.unit_file_state})")
    changes = {"enabled": {"old": unit.unit_file_state or "unknown", "new": "enabled"}}
    steps = ([systemctl("daemon-reload")] if daemon_reload_needed(call, unit) else []) + \
        [systemctl("enable", "--", call.name)]
    if call.test:
        return call.would(f"would enable {call.name}", changes)
    yield Run(chain(*steps))
    return call.done(f"enabled {call.name}", changes)


@state("service.dead", name=unit_name, facts=_facts, args={"enable": Arg(boolean)})
def dead(call: Call):
    """A service is stopped.

    name
        The service (unit or Upstart job; a SysV script on Upstart hosts).
    enable
        Also enabled (true) or disabled (false) at boot; unset leaves it as it is.
    """
    if call.ctx.init == "upstart":
        return (yield from upstart_dead(call))
    unit: UnitState = call.facts["unit"]
    if not unit.exists:
        return call.done(f"{call.name} does not exist")
    changes: dict = {}
    steps = _enable_steps(call, unit, changes)
    if unit.active_state not in ("inactive", "failed"):
        changes["stopped"] = {"old": unit.active_state, "new": "inactive"}
        steps.append(systemctl("stop", "--", call.name))
    return (yield from _stop_steps(call, steps, changes))


def _stop_steps(call: Call, steps: list, changes: dict):
    """service.dead's ending for either init: nothing to do, a prediction, or the steps."""
    if not steps:
        return call.done(f"{call.name} is stopped")
    if call.test:
        return call.would(_said(changes, True, call.name), changes)
    yield Run(chain(*steps))
    return call.done(_said(changes, False, call.name), changes)


# --- Upstart -----------------------------------------------------------------------

def job_file_changed(call: Call) -> bool:
    """A required/watched file state rewrote an Upstart job or override file."""
    return any(r.function == "file.managed" and r.changed and r.name.startswith("/etc/init/")
               and r.name.endswith((".conf", ".override")) for r in call.requisite_results)


def _upstart_enable_steps(call: Call, job: UpstartJobState, changes: dict, enable: bool | None
                          ) -> list[Command] | str:
    """The commands for `enable` (True, False, or None: leave as it is), or why
    they cannot be given."""
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
            return f"{name} cannot be enabled: {job_path(name)} has no `start on` stanza"
        if job.manual_in_job:
            return f"{name} cannot be enabled: {job_path(name)} itself says `manual`"
        changes["enabled"] = {"old": "manual", "new": "enabled"}
        return [cmd("sed", "-i", "-E", f"/{MANUAL_LINE}/d", "--", override_path(name))]
    if enable is False and job.enabled:
        changes["enabled"] = {"old": "enabled", "new": "disabled"}
        return [cmd("sh", "-c", ADD_MANUAL, "sh", override_path(name))]
    return []


def _missing(call: Call, what: str):
    """No job and no script: in a dry run an earlier state may still write the job file."""
    if call.test:
        return call.would(f"would {what} {call.name} (its job file is not there yet)",
                          {"running": {"old": "missing", "new": "start/running"}}
                          if what == "start" else {})
    return call.fail(f"{call.name} is neither an Upstart job ({job_path(call.name)}) "
                     f"nor a SysV script (/etc/init.d/{call.name})")


def upstart_running(call: Call):
    job: UpstartJobState = call.facts["unit"]
    name = call.name
    if not job.exists:
        return _missing(call, "start")
    changes: dict = {}
    steps: list[Command] = []
    sysv = job.kind == "sysv"
    if not sysv and (not job.known or job_file_changed(call)):
        # Upstart watches /etc/init with inotify, but only an explicit reload makes
        # sure the job file written a moment ago is the one `start` uses.
        changes["reload-configuration"] = True
        steps.append(initctl("reload-configuration"))
    enable = _upstart_enable_steps(call, job, changes, call.args["enable"])
    if isinstance(enable, str):
        return call.fail(enable)
    steps += enable
    if not job.running:
        changes["running"] = {"old": job.status_text, "new": "running" if sysv else "start/running"}
        steps.append(sysv_service("start", name) if sysv else initctl("start", name))
    elif call.watch_changed or _pending(call):
        reasons = _reasons(call)
        # a marker alone does not say whether the job file was among the changes
        job_file_maybe = job_file_changed(call) or (
            _pending(call) and not call.watch_changed and not call.args["reload"])
        if not sysv and job_file_maybe:
            # `initctl restart` keeps the job definition the instance was started
            # with; only stop + start runs the new job file.
            changes["restarted"] = reasons
            steps += [initctl("stop", name), initctl("start", name)]
        else:
            verb = "reload" if call.args["reload"] else "restart"
            changes[f"{verb}ed"] = reasons
            steps.append(control_verb(verb, name, sysv))
    if steps:
        steps += _clear_pending(call)
    if not steps:
        return call.done(f"{name} is running" + (" and enabled" if call.args["enable"] else ""))
    if call.test:
        return call.would(_said(changes, True, name), changes)
    call.changes.update(changes)
    yield Run(chain(*steps))
    if "running" in changes:
        now: UpstartJobState = yield Probe(UpstartJob(name))
        if not now.running:
            log = yield Run(cmd("tail", "-n", "20", log_path(name)) if not sysv
                            else sysv_service("status", name), check=False)
            return call.fail(f"{name} was started but is {now.status_text}",
                             stderr=(log.stdout or log.stderr).strip())
    return call.done(_said(changes, False, name))


def upstart_enabled(call: Call):
    job: UpstartJobState = call.facts["unit"]
    if not job.exists:
        return _missing(call, "enable")
    changes: dict = {}
    steps = _upstart_enable_steps(call, job, changes, True)
    if isinstance(steps, str):
        return call.fail(steps)
    if not steps:
        return call.done(f"{call.name} is enabled")
    if call.test:
        return call.would(f"would enable {call.name}", changes)
    yield Run(chain(*steps))
    return call.done(f"enabled {call.name}", changes)


def upstart_dead(call: Call):
    job: UpstartJobState = call.facts["unit"]
    if not job.exists:
        return call.done(f"{call.name} does not exist")
    changes: dict = {}
    steps = _upstart_enable_steps(call, job, changes, call.args["enable"])
    if isinstance(steps, str):
        return call.fail(steps)
    if job.running:
        changes["stopped"] = {"old": job.status_text, "new": "stopped"}
        steps.append(sysv_service("stop", call.name) if job.kind == "sysv" else initctl("stop", call.name))
    return (yield from _stop_steps(call, steps, changes))
