"""service.running, service.enabled, service.dead: the same states on every init.

Which init runs the host is the host's business, not the state file's (like Salt
picking its service module from the grains): the deploy probes the init system once,
and these states ask its adapter (``jupyterfab.initsys``: systemd units via
systemctl; Upstart jobs via initctl and the SysV scripts Upstart still runs via
service/update-rc.d) for each command, as pyinfra's ``handle_service_control`` does.
What is decided here (the pending marker, restart only what already ran, dry runs,
checking a start) is the same for every init. No systemctl ever reaches an Upstart host.
"""

from __future__ import annotations

import posixpath

from ..facts.files import PathExists
from ..initsys import ADAPTERS, for_init
from ..initsys.base import CannotEnable, InitSystem
from ..shell import chain, cmd
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


_VERBS = {"enabled": ("change enablement", "changed enablement"),
          "running": ("start", "started"), "restarted": ("restart", "restarted"),
          "reloaded": ("reload", "reloaded"), "stopped": ("stop", "stopped")}


def _said(changes: dict, test: bool, name: str, system: InitSystem) -> str:
    verbs = [{**_VERBS, **system.reload_verbs}[k][0 if test else 1] for k in changes]
    if "enabled" in changes:
        new = changes["enabled"]["new"]
        verbs[list(changes).index("enabled")] = (new[:-1] if test else new)
    return ("would " if test else "") + ", ".join(verbs) + f" {name}"


@state("service.running", name=unit_name, facts=_running_facts, pending_marker=pending_marker,
       args={
           "enable": Arg(boolean),
           "reload": Arg(boolean, default=False),
           "start": Arg(boolean, default=True),
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
    start
        Start it when it is stopped (false: a stopped service is left stopped, and
        only a running one is reloaded or restarted).
    """
    system, unit = for_init(call.ctx.init), call.facts["unit"]
    if system.missing(call.name, unit):
        if not call.args["start"]:
            return call.done(f"{call.name} is not there: left as it is")
        return _missing(call, system, "start")
    changes: dict = {}
    try:
        steps = system.reload_definitions(call, unit, changes)
        steps += system.enable(call, unit, call.args["enable"], changes)
    except CannotEnable as exc:
        return call.fail(str(exc))
    if not unit.running:
        # start: false leaves it stopped; it reads the watched change when it starts
        if call.args["start"]:
            changes["running"] = {"old": unit.status_text, "new": unit.running_word}
            steps.append(system.start(call.name, unit))
    elif call.watch_changed or _pending(call):
        # Only a service that was already running is restarted: one started just now
        # already runs the new configuration.
        steps += system.apply_watched(call, unit, _reasons(call), changes)
    if steps and _pending(call):
        steps.append(cmd("rm", "-f", "--", pending_marker(call.name)))
    if not steps:
        return call.done(f"{call.name} is {'running' if unit.running else 'stopped, left so'}"
                         + (" and enabled" if call.args["enable"] else ""))
    if call.test:
        return call.would(_said(changes, True, call.name, system), changes)
    call.changes.update(changes)
    yield Run(chain(*steps))
    if "running" in changes:
        now = yield Probe(system.unit_fact(call.name))
        if not now.running:
            log = yield Run(system.start_failure_log(call.name, unit), check=False)
            return call.fail(f"{call.name} was started but is {now.described}",
                             stderr=(log.stdout or log.stderr).strip())
    return call.done(_said(changes, False, call.name, system))


@state("service.enabled", name=unit_name, facts=_facts)
def enabled(call: Call):
    """A service starts at boot.

    name
        The service (unit or Upstart job; a SysV script on Upstart hosts).
    """
    system, unit = for_init(call.ctx.init), call.facts["unit"]
    if system.missing(call.name, unit):
        return _missing(call, system, "enable")
    changes: dict = {}
    try:
        steps = system.enable(call, unit, True, changes)
    except CannotEnable as exc:
        return call.fail(str(exc))
    if not steps:
        return call.done(f"{call.name} is enabled{unit.enabled_note}")
    if call.test:
        return call.would(f"would enable {call.name}", changes)
    yield Run(chain(*system.reload_definitions(call, unit, {}, starting=False), *steps))
    return call.done(f"enabled {call.name}", changes)


@state("service.dead", name=unit_name, facts=_facts, args={"enable": Arg(boolean)})
def dead(call: Call):
    """A service is stopped.

    name
        The service (unit or Upstart job; a SysV script on Upstart hosts).
    enable
        Also enabled (true) or disabled (false) at boot; unset leaves it as it is.
    """
    system, unit = for_init(call.ctx.init), call.facts["unit"]
    if not unit.exists:
        return call.done(f"{call.name} does not exist")
    changes: dict = {}
    try:
        steps = system.enable(call, unit, call.args["enable"], changes)
    except CannotEnable as exc:
        return call.fail(str(exc))
    if unit.needs_stop:
        changes["stopped"] = {"old": unit.status_text, "new": unit.stopped_word}
        steps.append(system.stop(call.name, unit))
    if not steps:
        return call.done(f"{call.name} is stopped")
    if call.test:
        return call.would(_said(changes, True, call.name, system), changes)
    yield Run(chain(*steps))
    return call.done(_said(changes, False, call.name, system), changes)


def _missing(call: Call, system: InitSystem, what: str):
    """Nothing defines the service: in a dry run an earlier state may still write it."""
    if call.test:
        return call.would(f"would {what} {call.name} (its {system.definition} is not there yet)",
                          {"running": {"old": "missing", "new": "start/running"}}
                          if what == "start" else {})
    return call.fail(system.missing(call.name, call.facts["unit"]))
