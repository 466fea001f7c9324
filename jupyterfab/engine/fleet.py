"""One fan-out over hosts and one result shape for every host action (as Fabric's
ThreadingGroup and GroupResult): ``run(hosts, action) -> FleetResult``, each host
succeeded or failed, printed by one text renderer (``render``) and one JSON encoder
(``to_json``) for deploy, cloudflare, the day-2 tasks and upgrade."""

from __future__ import annotations

import contextlib
import json
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from jupyterfab.engine import hostlock
from jupyterfab.engine.errors import JupyterfabError
from jupyterfab.engine.parallel import fleet_workers
from jupyterfab.engine.result import Result
from jupyterfab.engine.runner import HostUnreachable, Runner, close_every_connection, open_runner


class Target(Protocol):
    """A host as the engine reaches it (the inventory's Host is one)."""

    name: str
    address: str
    user: str
    port: int


@dataclass
class HostResult:
    """What one action did on one host."""

    host: str
    text: str = ""              # what happened (day-2, upgrade), or why the host failed
    failed: bool = False        # the action failed on this host as a whole (``text`` says why)
    results: list[Result] = field(default_factory=list)   # each state's / Cloudflare step's
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # the action's own fields, for JSON

    @property
    def ok(self) -> bool:
        return not self.failed and all(r.ok is not False for r in self.results)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.changed)

    def fail(self, why: str) -> HostResult:
        self.text, self.failed = why, True
        return self


def outcome(host: str, ok: bool, text: str) -> HostResult:
    return HostResult(host, text, failed=not ok)


@dataclass
class FleetResult:
    hosts: list[HostResult]

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def failed(self) -> list[str]:
        return [h.host for h in self.hosts if not h.ok]


def connected(action: Callable[[Target, Runner], HostResult], *, lock: str | None = None,
              log: Callable[[str], None] | None = None) -> Callable[[Target], HostResult]:
    """``action`` over a connection to the host, opened first and closed after; with
    ``lock`` (the task's name: it changes the host), under the host lock."""
    def run(host: Target) -> HostResult:
        runner = open_runner(host)
        try:
            with hostlock.held(runner, lock, log=log) if lock else contextlib.nullcontext():
                return action(host, runner)
        finally:
            runner.close()
    return run


# What ``sudo -n`` says when the SSH user may not sudo without a password: every task's
# first command on such a host fails with it (the lock, a probe), each in its own words.
SUDO_REFUSED = "sudo: a password is required"


def sudo_refused(host: Target) -> str:
    return (f"{host.user} cannot sudo on {host.address} without a password ({SUDO_REFUSED}): "
            f"jupyterfab needs root or passwordless sudo; add '{host.user} ALL=(ALL) NOPASSWD:ALL' "
            f"with visudo -f /etc/sudoers.d/{host.user}, or SSH in as root")


def run(hosts: list[Target], action: Callable[[Target], HostResult]) -> FleetResult:
    """``action`` on every host in parallel (as many at once as ``fleet_workers`` says for
    this controller); a host that fails (unreachable, or any jupyterfab error) is one
    failed result and never stops the others."""
    def one(host: Target) -> HostResult:
        started = time.monotonic()
        try:
            result = action(host)
        except HostUnreachable as exc:
            result = HostResult(host.name).fail(f"unreachable: {exc}")
        except JupyterfabError as exc:
            result = HostResult(host.name).fail(str(exc))
        result.seconds = result.seconds or time.monotonic() - started
        if result.failed and SUDO_REFUSED in result.text:
            result.text = sudo_refused(host)
        return result

    if len(hosts) == 1:
        return FleetResult([one(hosts[0])])
    with ThreadPoolExecutor(max_workers=max(1, fleet_workers(len(hosts)))) as pool:
        try:
            return FleetResult(list(pool.map(one, hosts)))
        except KeyboardInterrupt:
            # Else Ctrl-C waits, silent, until every host's deploy or upgrade has ended.
            pool.shutdown(wait=False, cancel_futures=True)
            close_every_connection()
            raise


def to_json(fleet: FleetResult, *, test: bool) -> str:
    """The outcome for machines: one object per host, with every state's result."""
    return json.dumps({"dry_run": test, "ok": fleet.ok, "hosts": [
        {"host": h.host, "ok": h.ok, "message": h.text, "error": h.text if h.failed else "",
         "seconds": round(h.seconds, 3), "changed": h.changed, **h.details, "states": [
             {"id": s.state_id, "function": s.function, "name": s.name, "ok": s.ok,
              "changed": s.changed, "comment": s.comment, "stderr": s.stderr,
              "duration": round(s.duration, 3),
              "changes": s.changes if s.function != "file.managed" or "diff" not in s.changes
              else {**s.changes, "diff": str(s.changes["diff"])}}
             for s in h.results]}
        for h in fleet.hosts]}, indent=2, default=str)


def render(fleet: FleetResult, *, test: bool = False, color: bool = False, table: bool = False,
           detail: bool = True) -> str:
    """Each host's changed states (Salt-style) and its line (or block) of text; with
    ``table``, then a line per host and the totals. Without ``detail``, of the states
    only the failed ones, in full (the changed ones were a progress line each)."""
    out = []
    for h in fleet.hosts:
        failed = [r for r in h.results if r.ok is False]
        if h.results and detail:
            out.append(summary(h.host, h.results, color=color, test=test))
        elif failed:
            out.append("\n".join([f"{h.host}:", *(paint(line, "red", color)
                                                   for r in failed for line in _block(r))]))
        if h.text:
            verdict = "ok" if h.ok else "FAILED"
            out.append(f"== {h.host}: {verdict}\n{h.text}" if "\n" in h.text and not table
                       else f"{h.host}: {verdict}: {h.text}")
    if table:
        out += ["", *summary_table(fleet.hosts, test=test, color=color)]
    return "\n".join(out)


def paint(text: str, name: str, color: bool) -> str:
    return f"{COLORS[name]}{text}{RESET}" if color else text


NOTE_WIDTH = 110     # the table's lines are wrapped to this many columns


def summary_table(hosts: list[HostResult], *, test: bool, color: bool = False) -> list[str]:
    """``host  status  time  note``, colored by outcome when ``color``; a totals line last."""
    width = max(len("host"), *(len(h.host) for h in hosts))
    lines = [f"{'host':<{width}}  {'result':<16} {'time':>8}"]
    note_at = width + 2 + 16 + 1 + 8 + 2    # where a note starts: its next lines line up there
    for h in hosts:
        would = sum(1 for r in h.results if r.ok is None)
        if not h.ok:
            status, hue = "FAILED", "red"
        elif test:
            status, hue = f"{would} would change", "yellow" if would else "green"
        else:
            status, hue = (f"ok, {h.changed} changed", "cyan") if h.changed else ("ok, no changes", "green")
        note = ""
        if h.failed:
            note = h.text.splitlines()[0]
        elif not h.ok:
            failed = [r.state_id or r.name for r in sorted(  # the cause first, then what it stopped
                (r for r in h.results if r.ok is False), key=lambda r: not r.failed_on_its_own)]
            note = "failed: " + ", ".join(failed[:3]) + (" ..." if len(failed) > 3 else "")
            if h.changed and not test:   # what did go live before the failure is live
                note += f" ({h.changed} other state{'s' if h.changed != 1 else ''} changed)"
        # wrapped whole, never cut: the message is the one thing the user must read
        note_lines = textwrap.wrap(note, max(40, NOTE_WIDTH - note_at), break_long_words=False,
                                   break_on_hyphens=False) or [""]
        lines.append(f"{h.host:<{width}}  {paint(f'{status:<16}', hue, color)} {h.seconds:6.2f} s"
                     + (f"  {note_lines[0]}" if note else ""))
        lines += [" " * note_at + more for more in note_lines[1:]]
    bad = sum(1 for h in hosts if not h.ok)
    # a failed host's changes happened all the same: "0 states changed" after a restart would lie
    changed = sum(h.changed for h in hosts) if not test else sum(h.changed for h in hosts if h.ok)
    total = (f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}: {len(hosts) - bad} ok, "
             f"{bad} failed; {changed} state{'s' if changed != 1 else ''} "
             f"{'would change' if test else 'changed'}")
    lines.append(paint(total, "red" if bad else "green", color))
    return lines


# --- the text renderer ----------------------------------------------------------------

COLORS = {"green": "\033[32m", "cyan": "\033[36m", "red": "\033[31m", "yellow": "\033[33m"}
RESET = "\033[0m"


def _format_value(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) or (isinstance(v, str) and "\n" in v):
                lines.append(f"{pad}{k}:")
                lines += _format_value(v, indent + 4)
            else:
                lines.append(f"{pad}{k}: {v}")
        return lines
    if isinstance(value, list):
        return [f"{pad}- {item}" for item in value] or [f"{pad}(none)"]
    return [pad + line for line in str(value).rstrip("\n").split("\n")]


def _block(result: Result) -> list[str]:
    status = {True: "True", False: "False", None: "None (would change)"}[result.ok]
    lines = ["----------",
             f"          ID: {result.state_id}",
             f"    Function: {result.function}",
             f"        Name: {result.name}",
             f"      Result: {status}",
             f"     Comment: {result.comment}",
             f"    Duration: {result.duration * 1000:.1f} ms"]
    if result.changes:
        lines.append("     Changes:")
        lines += _format_value(result.changes, 14)
    if result.stderr:
        lines.append("      Stderr:")
        lines += _format_value(result.stderr, 14)
    return lines


def summary(host: str, results: list[Result], *, color: bool = False, test: bool | None = None
            ) -> str:
    """Salt-like report: a block per changed or failed state, then the counts.
    ``test`` defaults to "some state would change" (ok=None)."""
    if test is None:
        test = any(r.ok is None for r in results)

    out = [f"{host}:"]
    hue = {False: "red", None: "yellow", True: "cyan"}     # failed, would change, changed
    for r in results:
        if r.changed or r.ok is not True:
            out += [paint(line, hue[r.ok], color) for line in _block(r)]
    failed = sum(1 for r in results if r.ok is False)
    changed = sum(1 for r in results if r.ok is not False and (r.changed or r.ok is None))
    succeeded = len(results) - failed
    total = sum(r.duration for r in results)
    what = "would change" if test else "changed"
    out += ["",
            f"Summary for {host}" + (" (dry run)" if test else ""),
            "------------",
            paint(f"Succeeded: {succeeded} ({what}={changed})", "green", color),
            paint(f"Failed:    {failed:>{len(str(succeeded))}}", "red" if failed else "green", color),
            "------------",
            f"Total states run: {len(results)}",
            f"Total run time:   {total:.3f} s"]
    return "\n".join(out)
