"""Helpers for unit tests, imported by name (`from unit_support import ...`): a local
runner, a throwaway project (states/ + files/), a FakeHost built from a scenario.

Not in conftest.py: with tests/, tests/unit and tests/e2e each holding a conftest,
`from conftest import` finds whichever was imported last."""

from __future__ import annotations

import os
import re
import shlex
import socketserver
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNIT = Path(__file__).resolve().parent     # tests/unit, whose test files sit in layer folders
PROJECT = UNIT.parents[1]
sys.path.insert(0, str(UNIT))

from fakehost import FakeHost, FakeUnit, FakeUser  # noqa: E402

from jupyterfab.dev import docs_reference  # noqa: E402
from jupyterfab.engine import highstate, sls  # noqa: E402
from jupyterfab.engine.result import Result  # noqa: E402
from jupyterfab.engine.runner import CmdResult  # noqa: E402
from jupyterfab.engine.shell import Command, as_command  # noqa: E402
from jupyterfab.engine.states import REGISTRY  # noqa: E402
from jupyterfab.engine.states.base import Call, Context, Put, Run  # noqa: E402
from jupyterfab.stack.front import tlsplan  # noqa: E402


class LocalRunner:
    """Runs commands with the local /bin/sh, the way SSH hands a command line
    to the remote shell: proves the generated shell really works, unprivileged."""

    host = "local"

    def __init__(self):
        self.calls: list[str] = []

    def run(self, command: Command | str, *, stdin: bytes | None = None, timeout=None) -> CmdResult:
        command = as_command(command)
        self.calls.append(command.display)
        done = subprocess.run(["/bin/sh", "-c", command.text], input=stdin or b"",
                              capture_output=True, timeout=timeout or 20)
        return CmdResult(done.returncode, done.stdout.decode("utf-8", "replace"),
                         done.stderr.decode("utf-8", "replace"))

    def hold(self, command: Command) -> LocalHeld:
        # unbuffered: a line read is all that left the pipe, so select() sees the rest
        return LocalHeld(subprocess.Popen(["/bin/sh", "-c", command.text], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0))

    def put(self, data: bytes, remote_path: str) -> None:
        self.calls.append(f"put {remote_path}")
        fd = os.open(remote_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


class LocalHeld:
    """A held command's local process: its stdin open until ``release``."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def readline(self, timeout: float) -> str:
        import select
        if not select.select([self.process.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"no line within {timeout} s")
        line = self.process.stdout.readline()
        return line.decode().removesuffix("\n") if line else None

    def error(self) -> str:
        return ""

    def release(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


@dataclass
class Project:
    root: Path
    host: str = "web1"
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def states(self) -> Path:
        return self.root / "states"

    @property
    def files(self) -> Path:
        return self.root / "files"

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def sls(self, text: str, name: str = "main") -> Project:
        self.write(f"states/{name}.sls", text)
        if not (self.states / "top.sls").exists():
            self.write("states/top.sls", f"base:\n  '*':\n    - {name}\n")
        return self

    def context(self) -> Context:
        return Context(host=self.host, vars=dict(self.vars), groups=tuple(self.groups),
                       files_dir=self.files, **self.options)

    def load(self):
        return sls.load_states(self.states, self.context())

    def apply(self, runner, *, test: bool = False):
        return highstate.apply(self.load(), runner, test=test, context=self.context())


def by_id(results) -> dict:
    return {r.state_id: r for r in results}


# --- one state function on its own: facts in, the operations it yields out ----------

OK = CmdResult(0, "", "")


def make_call(fun: str, name, facts: dict, *, test=False, ctx=None, requisites=(), watched=(),
              prepared=None, **args) -> Call:
    spec = REGISTRY[fun]
    name, args = spec.normalize(name, args)
    ctx = ctx or Context("h", files_dir=Path("/nonexistent"))
    if spec.prepare and prepared is None:
        prepared = spec.prepare(name, args, ctx)
    return Call("sid", fun, name, args, ctx, test, facts, prepared, list(requisites), list(watched))


def drive(call: Call, answers=(), default=None) -> tuple[list, Result]:
    """Run the state, answering each Run/Probe from ``answers`` in order
    (default: success / no value); returns (operations yielded, result)."""
    ops, answers = [], list(answers)
    gen = REGISTRY[call.function].apply(call)
    reply = None
    while True:
        try:
            op = gen.send(reply)
        except StopIteration as stop:
            return ops, stop.value
        ops.append(op)
        reply = answers.pop(0) if answers else (OK if isinstance(op, Run) else default(op) if default else None)


def texts(ops) -> list[str]:
    """The operations as the summary shows them: commands, uploads, probes."""
    return [op.command.display if isinstance(op, Run) else
            f"put {op.path}" if isinstance(op, Put) else f"probe {op.fact.describe()}" for op in ops]


# --- building a FakeHost from a scenario's `host:` mapping ----------------------

def _mode(value) -> int:
    return int(str(value), 8)


def build_host(spec: dict | None, host: FakeHost | None = None) -> FakeHost:
    h = host or FakeHost()
    spec = spec or {}
    if "init" in spec:
        h.init = spec["init"]
    h.packages.update(spec.get("packages") or {})
    h.available.update(spec.get("available") or {})
    if "apt_lists_stale" in spec:
        h.apt_lists_stale = spec["apt_lists_stale"]
    h.only_after_update.update(spec.get("only_after_update") or [])
    dirs = spec.get("dirs") or {}
    for path, meta in (dirs.items() if isinstance(dirs, dict) else ((d, {}) for d in dirs)):
        meta = meta or {}
        h.add_dir(path, _mode(meta.get("mode", "0755")), meta.get("user", "root"),
                  meta.get("group", "root"))
    for path, meta in (spec.get("files") or {}).items():
        if meta is None:
            h.files.pop(path, None)
            continue
        if isinstance(meta, str):
            meta = {"content": meta}
        h.add_file(path, meta.get("content", ""), _mode(meta.get("mode", "0644")),
                   meta.get("user", "root"), meta.get("group", "root"))
    for name, gid in (spec.get("groups") or {}).items():
        h.groups[name] = gid
    for name, u in (spec.get("users") or {}).items():
        h.users[name] = FakeUser(name, u.get("uid", 1000), u.get("gid", 1000),
                                 u.get("home", f"/home/{name}"), u.get("shell", "/bin/sh"),
                                 list(u.get("groups", [])))
    for name, u in (spec.get("units") or {}).items():
        unit = h.units.setdefault(name, FakeUnit())
        for key, value in (u or {}).items():
            setattr(unit, key, value)
    for entry in spec.get("shell") or []:
        h.shell_patterns.insert(0, (re.compile(entry["match"]), _scripted(entry)))
    return h


def _scripted(entry: dict):
    """A deployer command's answer; `when_file_contains: {path: text}` makes
    it fail only while that file holds that text (like `nginx -t` would)."""
    def answer(host: FakeHost, env: dict, script: str):
        condition = entry.get("when_file_contains")
        if condition:
            hit = all(p in host.files and text in host.text(p) for p, text in condition.items())
            if not hit:
                return 0, entry.get("ok_stdout", ""), ""
        some = entry.get("when_some_file_contains")
        if some and not any(p in host.files and text in host.text(p) for p, text in some.items()):
            return 0, entry.get("ok_stdout", ""), ""
        argument = entry.get("when_argument_file_contains")
        if argument:
            path = shlex.split(script)[-1]
            if path not in host.files or argument not in host.text(path):
                return 0, entry.get("ok_stdout", ""), ""
        anywhere = entry.get("when_any_file_contains")
        if anywhere and not any(anywhere in f.data.decode("utf-8", "replace")
                                for f in host.files.values()):
            return 0, entry.get("ok_stdout", ""), ""
        if "creates_file" in entry:
            host.add_file(entry["creates_file"], "")
        return entry.get("rc", 0), entry.get("stdout", ""), entry.get("stderr", "")
    return answer


def fab_task(name: str):
    """The fab task ``name``'s body: ``body(targets, **options)``, what it does for all its hosts."""
    return docs_reference.load_collection(PROJECT / "fabfile.py")[name].body.__wrapped__


def plans_counted(monkeypatch) -> list[str]:
    """The names of the hosts whose edge plan is worked out from now on, one per time."""
    asked: list[str] = []
    real = tlsplan.plan_for

    def counted(name, v):
        asked.append(name)
        return real(name, v)

    monkeypatch.setattr(tlsplan, "plan_for", counted)
    return asked


def commands_on_path(folder: Path, **scripts: str) -> dict[str, str]:
    """Each script (a name and its sh lines) as a command in ``folder``, and the
    environment that finds them first on PATH."""
    folder.mkdir()
    for name, lines in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{lines}\n")
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP server on a Unix socket, as Jupyter listens behind NGINX."""

    daemon_threads = True
