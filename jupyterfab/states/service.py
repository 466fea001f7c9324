"""service.running, service.enabled, service.dead: systemd units via systemctl."""

from __future__ import annotations

from ..facts import SystemdUnit, UnitState
from ..shell import Command, chain, cmd
from .base import Arg, Call, Probe, Run, boolean, state, unit_name

_UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")


def _facts(name, args, ctx) -> dict:
    return {"unit": SystemdUnit(name)}


def systemctl(*args: str) -> Command:
    return cmd("systemctl", *args)


def unit_file_changed(call: Call) -> bool:
    """A required/watched file state rewrote a unit file or a drop-in."""
    return any(r.function == "file.managed" and r.changed
               and (r.name.endswith(_UNIT_SUFFIXES) or "/systemd/" in r.name)
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


@state("service.running", name=unit_name, facts=_facts, args={
    "enable": Arg(boolean),
    "reload": Arg(boolean, default=False),
})
def running(call: Call):
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
    elif call.watch_changed:
        # Only a unit that was already running is restarted: one started just now
        # already runs the new configuration.
        verb = "reload" if call.args["reload"] else "restart"
        changes[f"{verb}ed"] = sorted({f"{r.function.split('.')[0]}: {r.state_id}"
                                       for r in call.watch_changed})
        steps.append(systemctl(verb, "--", call.name))
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
    unit: UnitState = call.facts["unit"]
    if not unit.exists:
        return call.done(f"{call.name} does not exist")
    changes: dict = {}
    steps = _enable_steps(call, unit, changes)
    if unit.active_state not in ("inactive", "failed"):
        changes["stopped"] = {"old": unit.active_state, "new": "inactive"}
        steps.append(systemctl("stop", "--", call.name))
    if not steps:
        return call.done(f"{call.name} is stopped")
    if call.test:
        return call.would(_said(changes, True, call.name), changes)
    yield Run(chain(*steps))
    return call.done(_said(changes, False, call.name), changes)
