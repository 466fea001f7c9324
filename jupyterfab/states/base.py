"""What a state function is: its arguments, the facts it needs, and the steps it takes.

A state function is a generator (the pyinfra way). It reads ``call.facts``
(probed beforehand, in one batch with every other state's) and, to act on the
host, yields operations and receives their outcome:

    result = yield Run(cmd("systemctl", "start", "--", name))   # -> CmdResult
    yield Put(data, tmp_path)                                     # -> None
    text = yield Probe(FileContent(path))                         # -> parsed fact

then ``return``s a ``Result``. In dry-run (``call.test``) it may only yield
``Probe``. A ``Run`` whose command fails ends the state as failed unless it was
yielded with ``check=False``. This keeps states free of SSH and lets tests
drive them with scripted answers, or with a fake host.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..facts import Fact
from ..facts.commands import RunAs
from ..initsys import ADAPTERS
from ..result import Result
from ..runner import CmdResult
from ..shell import Command, Secret

# --- operations a state yields -------------------------------------------

@dataclass(frozen=True)
class Run:
    command: Command
    stdin: bytes | None = None
    check: bool = True          # a non-zero exit fails the state
    timeout: float | None = None
    # Nothing a service reads changes (a temporary file, a check, a staged
    # directory): the pending-reload marker of a watching service is not written
    # with it (engine), so a change its check then rejects owes no reload.
    stages_only: bool = False
    # Staging run first in the same round trip, ``command`` only once it passed:
    # the marker goes between the two (a key checked against its certificate,
    # an environment unpacked beside the live one).
    staged_by: Command | None = None


@dataclass(frozen=True)
class Put:
    data: bytes
    path: str


@dataclass(frozen=True)
class Probe:
    fact: Fact


Operation = Run | Put | Probe
StateGen = Generator[Operation, Any, Result]


# --- context ---------------------------------------------------------------

@dataclass
class Context:
    """Everything about one host's deploy that is not in the state files."""

    host: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    files_dir: Path = Path("files")
    apt_proxy: str | None = None          # e.g. http://198.18.0.1:3142, for apt-get
    # the host's init system as the deploy probed it ("systemd" or "upstart"): the
    # service states speak its commands, and templates see it as {{ init }}, and its
    # adapter's file.managed arguments for a service's definition as
    # {{ service_unit("jupyter") }} (name, source, check_cmd)
    init: str = "systemd"
    fact_timeout: float | None = 120.0
    command_timeout: float | None = 3600.0
    # told about every state that changed something (or failed), as it finishes,
    # so long deploys show progress; None: silent
    progress: Callable[[Result], None] | None = None
    # user -> the box every step run as that user runs in (the caller's: systemd
    # properties); a user not named here is plain runuser's
    confinement: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def run_as(self, user: str | None) -> RunAs | None:
        """How a step runs as ``user`` (None: as root): inside its box, if it has one."""
        if not user:
            return None
        if user in self.confinement:
            return RunAs(user, self.init, tuple(self.confinement[user]))
        return RunAs(user)

    def template_vars(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.vars, "host": self.host, "groups": list(self.groups), "init": self.init,
                "service_unit": ADAPTERS[self.init].unit_file if self.init in ADAPTERS else None,
                **(extra or {})}


# --- one invocation ----------------------------------------------------------

@dataclass
class Call:
    """One state about to be applied: its arguments, facts, and what ran before it."""

    state_id: str
    function: str
    name: str
    args: dict[str, Any]
    ctx: Context
    test: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    prepared: Any = None
    # results of the states this one requires/watches, and the watched ones that
    # changed (in dry-run: would change); a state that reacts to watch reads the
    # latter, for every other state watch works like require
    requisite_results: list[Result] = field(default_factory=list)
    watch_changed: list[Result] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)

    def _result(self, ok: bool | None, comment: str, changes: dict | None, stderr: str = "") -> Result:
        return Result(name=self.name, changes=self.changes if changes is None else changes,
                      comment=comment, ok=ok, state_id=self.state_id, function=self.function,
                      stderr=stderr)

    def done(self, comment: str, changes: dict | None = None) -> Result:
        return self._result(True, comment, changes)

    def would(self, comment: str, changes: dict | None = None) -> Result:
        return self._result(None, comment, changes)

    def fail(self, comment: str, stderr: str = "", changes: dict | None = None) -> Result:
        return self._result(False, comment, changes, stderr)

    def command_failed(self, command: Command, result: CmdResult, what: str = "") -> Result:
        head = f"{what}: " if what else ""
        return self.fail(f"{head}`{command.display}` exited {result.rc}",
                         stderr=(result.stderr or result.stdout).strip())


# --- argument checking -------------------------------------------------------

class ArgError(ConfigError, ValueError):
    """An argument value is unusable; the sls loader adds file/line/state."""

    def __init__(self, message: str, arg: str | None = None):
        super().__init__(message)
        self.arg = arg


Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Arg:
    check: Check
    default: Any = None
    required: bool = False


def text(value: Any) -> str | Secret:
    if isinstance(value, (str, Secret)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ArgError(f"expected a string, got {type(value).__name__}")


def string(value: Any) -> str:
    value = text(value)
    if isinstance(value, Secret):
        raise ArgError("a secret cannot be used here")
    return value


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ArgError(f"expected true or false, got {value!r}")


def integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ArgError(f"expected a number, got {value!r}")


def abs_path(value: Any) -> str:
    value = string(value)
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise ArgError(f"expected an absolute path, got {value!r}")
    normal = posixpath.normpath(value)
    return "/" if normal == "/" else normal


def url(value: Any) -> str:
    """http(s) or file URL"""
    value = string(value)
    if not value.startswith(("http://", "https://", "file://")):
        raise ArgError(f"{value!r} is not an http(s) or file URL")
    return value


def bundle_file(value: Any) -> str:
    """bundle file on this machine"""
    path = string(value)
    if not Path(path).is_file():
        raise ArgError(f"bundle {path} is not a file on this machine")
    return path


def mode(value: Any) -> int:
    """``"0644"``, ``"644"``, ``644`` (Salt's unquoted form) or ``0o644`` -> 0o644."""
    raw = str(value).strip().removeprefix("0o")
    if not re.fullmatch(r"[0-7]{3,4}", raw) or isinstance(value, bool):
        raise ArgError(f"expected an octal mode like \"0644\", got {value!r}")
    return int(raw, 8)


def _matching(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)

    def check(value: Any) -> str:
        value = string(value)
        if not regex.fullmatch(value):
            raise ArgError(f"{value!r} is not a valid {what}")
        return value
    return check


# Leading "-" is excluded everywhere: a name must never read as an option.
user_name = _matching(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", "user or group name")
package_name = _matching(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?", "Debian package name")
package_version = _matching(r"[A-Za-z0-9.+~:-]+", "package version")
unit_name = _matching(r"[A-Za-z0-9_][A-Za-z0-9:_.@\\-]*", "systemd unit name")
env_name = _matching(r"[A-Za-z_][A-Za-z0-9_]*", "environment variable name")


def requirement(value: Any) -> str:
    value = string(value).strip()
    if not value or value.startswith("-") or "\n" in value:
        raise ArgError(f"{value!r} is not a pip requirement")
    return value


def list_of(check: Check) -> Check:
    def checked(value: Any) -> tuple:
        if not isinstance(value, list):
            raise ArgError(f"expected a list, got {type(value).__name__}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(check(item))
            except ArgError as exc:
                raise ArgError(f"item {i + 1}: {exc}") from None
        return tuple(out)
    return checked


def one_or_many(check: Check) -> Check:
    """Salt lets ``unless``/``creates`` be one value or a list."""
    many = list_of(check)

    def checked(value: Any) -> tuple:
        return many(value) if isinstance(value, list) else (check(value),)
    return checked


def env_map(value: Any) -> dict[str, str | Secret]:
    """A mapping, or Salt's list of one-key mappings."""
    if isinstance(value, list):
        merged: dict = {}
        for item in value:
            if not isinstance(item, dict) or len(item) != 1:
                raise ArgError("env: expected `NAME: value` items")
            merged.update(item)
        value = merged
    if not isinstance(value, dict):
        raise ArgError("env: expected a mapping of NAME: value")
    return {env_name(k): text(v) for k, v in value.items()}


def mapping(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ArgError(f"expected a mapping, got {type(value).__name__}")
    return value


# --- the registry ------------------------------------------------------------

# Requisites and conditions valid on every state (checked by the sls loader/engine).
REQUISITE_KINDS = ("require", "watch", "onchanges")
GLOBAL_ARGS: dict[str, Arg] = {
    "unless": Arg(one_or_many(text)),
    "onlyif": Arg(one_or_many(text)),
    "creates": Arg(one_or_many(abs_path)),
}


@dataclass
class StateFunction:
    ref: str                                                   # "pkg.installed"
    apply: Callable[[Call], StateGen]
    args: dict[str, Arg]
    name_check: Check = string
    # (name, args, ctx) -> {key: Fact}; the values arrive as call.facts[key]
    facts: Callable[[Any, dict, Context], dict[str, Fact]] | None = None
    # (name, args, ctx) -> anything: local work done before touching the host
    # (render a template, hash a tree); its error fails the state, nothing is sent
    prepare: Callable[[Any, dict, Context], Any] | None = None
    check: Callable[[Any, dict], None] | None = None           # (name, args): cross-argument rules
    # name -> a host path: for a state that reacts to `watch` (service.running), the
    # marker the engine creates before a watched state's first command runs, so a run
    # cut between that change and this state's reaction still reacts on the next run
    pending_marker: Callable[[str], str] | None = None

    def normalize(self, name: Any, raw: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Checked ``name`` and arguments with defaults; ArgError names the argument."""
        known = {**GLOBAL_ARGS, **self.args}
        # unknown arguments first: `- nmae: /etc/x` is the mistake, not the ID as the name
        for key in raw:
            if key not in known:
                raise ArgError(f"unknown argument {key!r} for {self.ref} "
                               f"(accepted: {', '.join(sorted(known))})", key)
        try:
            name = self.name_check(name)
        except ArgError as exc:
            raise ArgError(f"name: {exc}", "name") from None
        args: dict[str, Any] = {}
        for key, value in raw.items():
            try:
                args[key] = known[key].check(value) if value is not None else None
            except ArgError as exc:
                raise ArgError(f"{key}: {exc}", key) from None
        for key, arg in known.items():
            if key not in args or args[key] is None:
                if arg.required:
                    raise ArgError(f"missing required argument {key!r}", key)
                args[key] = arg.default
        if self.check:
            self.check(name, args)
        return name, args


REGISTRY: dict[str, StateFunction] = {}


def state(ref: str, *, args: dict[str, Arg] | None = None, name: Check = string,
          facts=None, prepare=None, check=None, pending_marker=None):
    """Register a state function under ``module.function``."""
    def register(fn):
        REGISTRY[ref] = StateFunction(ref, fn, args or {}, name, facts, prepare, check,
                                      pending_marker)
        return fn
    return register

