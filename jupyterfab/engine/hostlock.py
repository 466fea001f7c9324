"""One run at a time per host: a ``flock`` held on the host for a whole task.

Every task that changes a host (deploy, restart/stop/start, rotate-password,
restore, upgrade) takes the lock first; read-only ones (status, logs, backup, dry
runs) never do. The lock is a ``flock`` on ``LOCK_FILE``, held by one remote shell
on its own SSH channel for as long as the task runs, across all its commands:

    sh: flock LOCK_FILE; write LOCK_FILE.holder; echo locked; cat >/dev/null

A task's first command can ride along (``held(..., first=...)``): the shell runs it
once it holds the lock and prints its output and exit code before waiting, so taking
the lock and a deploy's first look at the host cost one round trip, not two.

The shell holds the lock until its stdin closes: when the task releases it, or
when the controller dies or its connection drops (sshd closes the channel, ``cat``
reads end-of-file, the shell exits, the kernel drops the lock). Nothing stale
remains to be cleaned up by hand; the holder file only says who holds it.

A second run waits up to ``wait_seconds`` (``$JUPYTERFAB_LOCK_WAIT``, 60 by
default), then fails with ``host busy: deploy from root@laptop since <time>``.

An upgrade's health watch runs on the host (see upgrade.py) and holds
``LOCK_FILE.watch`` while it may still roll back; a new holder of the host lock
also waits for that, so no run changes a host whose upgrade is being judged.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from jupyterfab.engine.errors import HostError
from jupyterfab.engine.runner import CmdResult, Held, HostUnreachable, Runner
from jupyterfab.engine.shell import Command, cmd

LOCK_FILE = "/run/lock/jupyterfab.lock"
WATCH_LOCK = f"{LOCK_FILE}.watch"
WAIT_ENV = "JUPYTERFAB_LOCK_WAIT"
DEFAULT_WAIT = 60.0
FIRST_TIMEOUT = 60.0     # what runner.run gives a deploy's probe

# $1 lock file, $2 seconds to wait, $3 the holder line, $4 a command to run once the lock
# is held (or ""), $5 the marker its exit code follows. Prints waiting=<holder> when
# another run has it, then locked (or busy=<holder> and exits 75, EX_TEMPFAIL), then the
# command's output and "\n$5 <rc>", then holds the lock until stdin closes. Closing a
# descriptor drops its flock, so the watch lock needs no `flock -u`.
HOLD = r"""
lock="$1"; wait="$2"; holder="$1.holder"
[ -d "${lock%/*}" ] || mkdir -p "${lock%/*}"
exec 9>>"$lock"
if ! flock -n 9; then
    echo "waiting=$(cat "$holder" 2>/dev/null)"
    flock -w "$wait" 9 || { echo "busy=$(cat "$holder" 2>/dev/null)"; exit 75; }
fi
exec 8>>"$lock.watch"
if ! flock -n 8; then
    echo "waiting=an upgrade's health watch on this host"
    flock -w "$wait" 8 || { echo "busy=an upgrade's health watch (it rolls back by itself if needed)"; exit 75; }
fi
exec 8>&-
printf '%s\n' "$3" > "$holder.tmp" && mv -f "$holder.tmp" "$holder"
echo locked
if [ -n "$4" ]; then (eval "$4") </dev/null 9>&-; printf '\n%s %s\n' "$5" "$?"; fi
cat >/dev/null
rm -f "$holder"
"""


class HostBusy(HostError):
    """Another run holds the host's lock and did not let go in time."""


def wait_seconds() -> float:
    value = os.environ.get(WAIT_ENV, "")
    try:
        return max(0.0, float(value)) if value else DEFAULT_WAIT
    except ValueError:
        return DEFAULT_WAIT


def controller() -> str:
    """Who runs this task: user@hostname of the controller."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def holder_line(task: str, who: str, since: float) -> str:
    """What the holder file says, and what a waiting run quotes (pure)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
    return f"{task} from {who} since {stamp} (pid {os.getpid()})"


def parse_busy(line: str) -> str:
    """``busy=deploy from a@b since T (pid N)`` -> the one-line error (pure)."""
    said = line.partition("=")[2].strip()
    return f"host busy: {said or 'another jupyterfab run holds ' + LOCK_FILE}"


@contextmanager
def held(runner: Runner, task: str, *, wait: float | None = None,
         log: Callable[[str], None] | None = None, lock_file: str = LOCK_FILE,
         first: Command | None = None) -> Iterator[CmdResult | None]:
    """Hold the host's lock for the ``with`` block; HostBusy when it stays taken.
    With ``first``, the block gets that command's result, run under the lock in
    the same round trip (its stderr is not kept); else None."""
    wait = wait_seconds() if wait is None else wait
    marker = f"JFAB-{secrets.token_hex(8)}"
    process = runner.hold(cmd("sh", "-c", HOLD, "sh", lock_file, int(wait),
                              holder_line(task, controller(), time.time()),
                              first.text if first else "", marker))
    try:
        while True:
            cannot = f"{runner.host}: cannot take the host lock {lock_file}"
            line = _next_line(process, wait + 30, cannot) or ""     # "": it ended
            if line.startswith("waiting="):
                if log:
                    log(f"{runner.host}: waiting up to {wait:.0f} s for the host lock "
                        f"({line.partition('=')[2] or 'held'})")
                continue
            if line == "locked":
                break
            if line.startswith("busy="):
                raise HostBusy(parse_busy(line))
            raise HostUnreachable(f"{cannot}: {(line or process.error() or 'no answer').strip()}")
        yield _first_result(process, marker, runner.host) if first else None
    finally:
        process.release()


def _next_line(process: Held, timeout: float, waiting_for: str) -> str | None:
    try:
        return process.readline(timeout=timeout)
    except TimeoutError as exc:
        raise HostUnreachable(f"{waiting_for}: {exc}") from exc


def _first_result(process: Held, marker: str, host: str) -> CmdResult:
    """The output of the command run once the lock was held, up to its marker line
    (the script prints a newline of its own in front of the marker)."""
    lines: list[str] = []
    waiting_for = f"{host}: the first command under the host lock"
    while (line := _next_line(process, FIRST_TIMEOUT, waiting_for)) is not None:
        if line.startswith(marker + " "):
            rc = line.partition(" ")[2]
            return CmdResult(int(rc) if rc.isdigit() else 255, "\n".join(lines), "")
        lines.append(line)
    raise HostUnreachable(f"{waiting_for} ended early: {process.error().strip() or 'no answer'}")
