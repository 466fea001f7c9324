"""Applying checked declarations to one host, and reporting what happened.

    ctx = Context(host="jupyter1", vars=host_vars, files_dir=Path("files"))
    decls = sls.load_states("states", ctx)
    results = apply(decls, runner, test=False, context=ctx)
    print(summary(ctx.host, results))

Facts are probed in batches: every state's facts go into one round trip before
the first state decides. Only when a state has actually run something on the
host are the remaining states' facts probed again (one more round trip) before
the next state decides. A run where nothing needs doing therefore costs one
round trip in all.

A state that a ``service.running`` watches leaves a pending marker for that
service on the host (``/var/lib/jupyterfab/pending/<service>``) in the command
that makes its change live, just before that change (same round trip); the
service reloads or restarts while the marker exists and removes it once that
succeeded. A run cut between the change and the reload (a lost connection, a
failed state in between) so still reloads on the next run, although the file is
current by then and no watched state changes again. Commands that only stage
(``Run.stages_only``, ``Run.staged_by``: a temporary file, its check) carry no
marker, so a change its check rejects never went live and owes no reload.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import facts as factlib
from .facts import Fact, FactError, Failed
from .facts.commands import CommandRc
from .facts.files import PathExists
from .result import NOT_APPLIED, REQUISITE_FAILED, Result
from .runner import HostUnreachable, Runner
from .shell import Command, Secret, chain, cmd
from .sls import Declaration
from .states import REGISTRY
from .states.base import Call, Context, Probe, Put, Run, StateFunction

__all__ = ["Context", "apply", "preflight"]


@dataclass
class _Entry:
    decl: Declaration
    spec: StateFunction
    prepared: Any = None
    error: str | None = None                       # from prepare: the state fails, untouched
    facts: dict[str, Fact] = field(default_factory=dict)
    conditions: dict[str, list[Fact]] = field(default_factory=dict)
    # markers of the services watching this state, made before its first command
    pending: tuple[str, ...] = ()

    def all_facts(self) -> list[Fact]:
        return list(self.facts.values()) + [f for fs in self.conditions.values() for f in fs]


def _condition_facts(decl: Declaration, context: Context) -> dict[str, list[Fact]]:
    """unless/onlyif/creates, valid on every state; for cmd.run the test
    commands run as the same user (in the same box) and in the same directory as
    the command."""
    runas, cwd = decl.args.get("runas"), decl.args.get("cwd")
    if decl.fun != "cmd.run":
        runas = cwd = None
    return {key: [CommandRc(c, context.run_as(runas), cwd) for c in decl.args[key]] if key != "creates"
            else [PathExists(p) for p in decl.args[key]]
            for key in ("onlyif", "unless", "creates") if decl.args.get(key)}


def _entries(decls: Iterable[Declaration], context: Context) -> list[_Entry]:
    entries = []
    for decl in decls:
        entry = _Entry(decl, REGISTRY[decl.fun])
        try:
            if entry.spec.prepare:
                entry.prepared = entry.spec.prepare(decl.name, decl.args, context)
            if entry.spec.facts:
                entry.facts = entry.spec.facts(decl.name, decl.args, context)
            entry.conditions = _condition_facts(decl, context)
        except Exception as exc:  # a template or local file problem: fail this state only
            entry.error = str(exc) or type(exc).__name__
        entries.append(entry)
    watchers: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        if entry.spec.pending_marker is None:
            continue
        marker = entry.spec.pending_marker(str(entry.decl.name))
        for req in entry.decl.requisites:
            if req.kind == "watch":
                for key in req.targets:
                    watchers.setdefault(key, []).append(marker)
    for entry in entries:
        entry.pending = tuple(dict.fromkeys(watchers.get(entry.decl.key, ())))
    return entries


def _with_pending(markers: tuple[str, ...], command: Command) -> Command:
    """``command`` run only once the markers exist. States join their steps with
    ``&&`` (``|`` binds tighter), so the prefix gates the whole chain."""
    dirs = sorted({posixpath.dirname(m) for m in markers})
    return chain(cmd("mkdir", "-p", "--", *dirs), cmd("touch", "--", *markers), command)


def _result(decl: Declaration, ok: bool | None, comment: str, **kw) -> Result:
    return Result(name=str(decl.name), ok=ok, comment=comment, state_id=decl.id,
                  function=decl.fun, **kw)


def preflight(decls: Iterable[Declaration], context: Context) -> list[Result]:
    """Local checks only (templates render, source trees exist): the failures,
    so a caller can stop before connecting to the host."""
    return [_result(e.decl, False, e.error) for e in _entries(decls, context) if e.error]


def _drive(entry: _Entry, call: Call, runner: Runner, context: Context) -> tuple[Result, bool]:
    """Run a state's generator against the runner; returns (result, whether it
    ran anything that may have changed the host).

    The first Run that may make something live carries the pending markers of the
    services watching this state (no extra round trip), after its staging part
    (``staged_by``) passed. A Put, or a Run that ``stages_only``, changes nothing a
    service reads until such a Run moves it into place."""
    touched = marked = False
    outcome = entry.spec.apply(call)
    if isinstance(outcome, Result):
        return outcome, False
    answer: Any = None
    try:
        while True:
            op = outcome.send(answer)
            if isinstance(op, Probe):
                answer = factlib.probe(runner, op.fact, timeout=context.fact_timeout)
            elif call.test:
                outcome.close()
                return call.fail(f"internal error: {call.function} tried to change the host "
                                 f"in a dry run ({op!r:.80})"), False
            elif isinstance(op, Run):
                command = op.command
                if entry.pending and not marked and not op.stages_only:
                    command = _with_pending(entry.pending, command)
                    marked = True
                shown = op.command
                if op.staged_by is not None:
                    command, shown = chain(op.staged_by, command), chain(op.staged_by, shown)
                touched = True
                answer = runner.run(command, stdin=op.stdin,
                                    timeout=op.timeout or context.command_timeout)
                if op.check and not answer.ok:
                    outcome.close()
                    return call.command_failed(shown, answer), touched
            elif isinstance(op, Put):
                touched = True
                runner.put(op.data, op.path)
                answer = None
            else:
                raise TypeError(f"a state yielded {op!r}; expected Run, Put or Probe")
    except StopIteration as stop:
        return stop.value, touched
    except HostUnreachable:
        raise
    except FactError as exc:
        return call.fail(f"cannot probe the host: {exc}"), touched
    except Exception as exc:
        return call.fail(f"{type(exc).__name__}: {exc}"), touched


def _conditions_say_skip(entry: _Entry, values: dict[Fact, Any]) -> str | None:
    """Salt's rules: onlyif needs every command to succeed, unless skips when
    every command succeeds, creates skips when every path exists."""
    for fact in entry.conditions.get("onlyif", []):
        if values[fact] != 0:
            return f"onlyif condition is false: `{fact.command().display}`"
    unless = entry.conditions.get("unless", [])
    if unless and all(values[f] == 0 for f in unless):
        return "unless condition is true: " + ", ".join(f"`{f.command().display}`" for f in unless)
    creates = entry.conditions.get("creates", [])
    if creates and all(values[f] for f in creates):
        return ", ".join(f.path for f in creates) + (" exists" if len(creates) == 1 else " exist")
    return None


def _apply_one(entry: _Entry, results: dict[tuple[str, str], Result], values: dict[Fact, Any],
               runner: Runner, test: bool, context: Context) -> tuple[Result, bool]:
    decl = entry.decl
    failed_probes = [v.error for f in entry.all_facts() if isinstance(v := values.get(f), Failed)]
    if failed_probes:
        return _result(decl, False, "cannot probe the host: " + "; ".join(failed_probes)), False
    skip = _conditions_say_skip(entry, values)
    if skip:
        return _result(decl, True, skip), False

    required = dict.fromkeys(k for r in decl.requisites for k in r.targets)
    watched = dict.fromkeys(k for r in decl.requisites if r.kind == "watch" for k in r.targets
                            if results[k].changed)
    call = Call(decl.id, decl.fun, decl.name if isinstance(decl.name, Secret) else str(decl.name),
                decl.args, context, test, facts={k: values[f] for k, f in entry.facts.items()},
                prepared=entry.prepared, requisite_results=[results[k] for k in required],
                watch_changed=[results[k] for k in watched])
    return _drive(entry, call, runner, context)


def _requisites_say_skip(decl: Declaration, results: dict[tuple[str, str], Result]) -> Result | None:
    """Checked before any fact is needed, so a skipped state costs no round trip."""
    failed = [f"{k[0]}: {k[1]}" for r in decl.requisites for k in r.targets if results[k].ok is False]
    if failed:
        return _result(decl, False,
                       REQUISITE_FAILED + ", ".join(dict.fromkeys(failed)))
    onchanges = [results[k] for r in decl.requisites if r.kind == "onchanges" for k in r.targets]
    if onchanges and not any(r.changed for r in onchanges):
        return _result(decl, True, "no changes in onchanges targets")
    return None


def apply(decls: list[Declaration], runner: Runner, *, test: bool, context: Context
          ) -> list[Result]:
    """Apply checked, ordered declarations (from ``sls.load_states``) to one host.

    ``test=True`` is a dry run: facts are probed, nothing is changed, and each
    state says what it would do (``ok=None``, with its would-be changes).
    """
    entries = _entries(decls, context)
    if any(e.error for e in entries):
        # Every template renders before anything is sent: a broken one stops the
        # whole run here, so the host never gets half of a change.
        return [_result(e.decl, False, e.error) if e.error else
                _result(e.decl, False, NOT_APPLIED + "another state's template or source "
                                       "failed locally, so nothing was sent to the host")
                for e in entries]
    results: dict[tuple[str, str], Result] = {}
    ordered: list[Result] = []
    values: dict[Fact, Any] = {}
    stale = True      # nothing probed yet
    for i, entry in enumerate(entries):
        started = time.monotonic()
        result = _requisites_say_skip(entry.decl, results)
        touched = False
        if result is None:
            if stale:
                # The host may have changed since the last probe: ask again for
                # everything the remaining states need, all at once.
                values = factlib.gather(runner, [f for e in entries[i:] for f in e.all_facts()],
                                        timeout=context.fact_timeout)
                stale = False
            result, touched = _apply_one(entry, results, values, runner, test, context)
        stale = stale or touched
        result.duration = time.monotonic() - started
        results[entry.decl.key] = result
        ordered.append(result)
        if context.progress and (result.changed or result.ok is False):
            context.progress(result)
    return ordered
