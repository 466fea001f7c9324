"""Read-only probes of a host, and gathering many of them in one round trip.

A fact is a command plus a pure ``parse(stdout, rc)``: states decide from parsed
facts and never run probes themselves. ``gather`` joins every probe a deploy
needs into one generated shell script, so a no-op deploy costs one SSH round
trip however many states it has. Facts are frozen dataclasses, so two states
asking the same question share one probe.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import HostError
from .runner import Runner
from .shell import Command, Part, Secret, cmd

MANIFEST_NAME = ".jupyterfab-manifest"


class FactError(HostError):
    """A probe gave an answer its parser cannot read (or no answer at all)."""


class Fact:
    """Base class: subclasses are frozen dataclasses, so equal facts dedupe."""

    def command(self) -> Command:
        raise NotImplementedError

    def parse(self, stdout: str, rc: int) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return self.command().display


def command_as(parts: Iterable[Part], *, runas: str | None = None, cwd: str | None = None,
               env: Mapping[str, str | Secret] | None = None) -> Command:
    """``parts`` run as ``runas`` (runuser sets HOME/USER), in ``cwd``, with ``env``.

    Shared by cmd.run, pip and unless/onlyif probes so all three see the same
    user and directory, as in Salt.
    """
    prefix: list[Part] = []
    if runas:
        prefix += ["runuser", "-u", runas, "--"]
    if cwd or env:
        prefix.append("env")
        if cwd:
            prefix += ["-C", cwd]
        for key, value in (env or {}).items():
            prefix.append(Secret(f"{key}={value.reveal()}") if isinstance(value, Secret)
                          else f"{key}={value}")
    return Command(tuple(prefix) + tuple(parts))


def shell_text_command(text: str | Secret, **how) -> Command:
    """A deployer's own shell text (an sls ``cmd.run``, ``unless``, ``check_cmd``)."""
    return command_as(["sh", "-c", text], **how)


def need_rc(fact: Fact, rc: int, allowed: tuple[int, ...], stdout: str) -> None:
    if rc not in allowed:
        raise FactError(f"probe `{fact.describe()}` exited {rc}: {stdout.strip()[:200]}")


# --- files ---------------------------------------------------------------

@dataclass(frozen=True)
class FileInfo:
    kind: str                 # "file", "directory", "other", "broken-link"
    mode: int = 0
    user: str = ""
    group: str = ""
    sha256: str | None = None  # regular files only, when asked for
    is_link: bool = False

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"


# Follows symlinks for the stat (so a symlinked directory counts as one) but
# reports that it was a link, so file.managed can refuse to replace it.
STAT_SCRIPT = (
    'if [ -L "$1" ]; then l=link; else l=; fi; '
    'if [ -e "$1" ]; then '
    'stat -L --printf "%F|%a|%U|%G|$l\\n" -- "$1" || exit 1; '
    'if [ "$2" = sha256 ] && [ -f "$1" ]; then sha256sum < "$1" || exit 1; fi; '
    'elif [ -n "$l" ]; then echo broken-link; else echo absent; fi'
)

_KINDS = {"regular file": "file", "regular empty file": "file", "directory": "directory"}


@dataclass(frozen=True)
class Stat(Fact):
    """Type, mode, owner, group (and sha256 for files) of a path; None if absent."""

    path: str
    checksum: bool = False

    def command(self) -> Command:
        return cmd("sh", "-c", STAT_SCRIPT, "sh", self.path, "sha256" if self.checksum else "")

    def parse(self, stdout: str, rc: int) -> FileInfo | None:
        need_rc(self, rc, (0,), stdout)
        lines = stdout.splitlines()
        if not lines:
            raise FactError(f"stat of {self.path}: empty answer")
        if lines[0] == "absent":
            return None
        if lines[0] == "broken-link":
            return FileInfo("broken-link", is_link=True)
        fields = lines[0].split("|")
        if len(fields) != 5:
            raise FactError(f"stat of {self.path}: cannot read {lines[0]!r}")
        kind, mode, user, group, link = fields
        sha = None
        if self.checksum and len(lines) > 1:
            sha = lines[1][:64]
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise FactError(f"sha256 of {self.path}: cannot read {lines[1]!r}")
        return FileInfo(_KINDS.get(kind, "other"), int(mode, 8), user, group, sha, link == "link")

    def describe(self) -> str:
        return f"stat {self.path}"


FILE_CONTENT_SCRIPT = (
    'if [ -f "$1" ]; then echo present; head -c "$2" -- "$1"; '
    'elif [ -e "$1" ]; then echo not-a-file; else echo absent; fi'
)


@dataclass(frozen=True)
class FileContent(Fact):
    """Text of a (small) file, None if absent. Used for markers and diffs."""

    path: str
    limit: int = 1 << 20

    def command(self) -> Command:
        return cmd("sh", "-c", FILE_CONTENT_SCRIPT, "sh", self.path, self.limit)

    def parse(self, stdout: str, rc: int) -> str | None:
        need_rc(self, rc, (0,), stdout)
        head, _, rest = stdout.partition("\n")
        if head == "absent":
            return None
        if head == "not-a-file":
            raise FactError(f"{self.path} is not a regular file")
        if head != "present":
            raise FactError(f"reading {self.path}: unexpected answer {head!r}")
        return rest

    def describe(self) -> str:
        return f"read {self.path}"


@dataclass(frozen=True)
class PathExists(Fact):
    path: str

    def command(self) -> Command:
        return cmd("test", "-e", self.path)

    def parse(self, stdout: str, rc: int) -> bool:
        need_rc(self, rc, (0, 1), stdout)
        return rc == 0


TREE_SCRIPT = (
    'cd "$1" 2>/dev/null || exit 0; '
    f'find . -type f ! -path ./{MANIFEST_NAME} -exec sha256sum -- {{}} +'
)


@dataclass(frozen=True)
class TreeHashes(Fact):
    """sha256 of every file under a directory, by relative path ({} if absent)."""

    path: str

    def command(self) -> Command:
        return cmd("sh", "-c", TREE_SCRIPT, "sh", self.path)

    def parse(self, stdout: str, rc: int) -> dict[str, str]:
        need_rc(self, rc, (0,), stdout)
        hashes = {}
        for line in stdout.splitlines():
            m = re.fullmatch(r"([0-9a-f]{64})  \./(.+)", line)
            if m:  # names sha256sum had to escape (backslash, newline) are skipped
                hashes[m.group(2)] = m.group(1)
        return hashes

    def describe(self) -> str:
        return f"hash files under {self.path}"


# --- packages ------------------------------------------------------------

@dataclass(frozen=True)
class DebPackages(Fact):
    """Installed version of each named package (None when not installed)."""

    names: tuple[str, ...]

    def command(self) -> Command:
        return cmd("dpkg-query", "-W", "-f", "${binary:Package}\t${Status}\t${Version}\n",
                   *self.names)

    def parse(self, stdout: str, rc: int) -> dict[str, str | None]:
        # rc 1 only means some names are unknown to dpkg: not installed
        need_rc(self, rc, (0, 1), stdout)
        found: dict[str, str] = {}
        for line in stdout.splitlines():
            fields = line.split("\t")
            if len(fields) != 3:
                continue
            package, status, version = fields
            if status.endswith(" installed") and status.startswith("install"):
                found[package] = version
                found.setdefault(package.split(":")[0], version)
        return {name: found.get(name) for name in self.names}

    def describe(self) -> str:
        return "dpkg-query " + " ".join(self.names)


APT_LISTS_SCRIPT = (
    "find /var/lib/apt/lists -maxdepth 1 -type f -name '*_Packages*' -printf 'lists %T@\\n' 2>/dev/null; "
    "find /etc/apt/sources.list /etc/apt/sources.list.d -maxdepth 1 -type f "
    "\\( -name '*.list' -o -name '*.sources' \\) -printf 'sources %T@\\n' 2>/dev/null; true"
)


@dataclass(frozen=True)
class AptListsStale(Fact):
    """True when apt's package lists are missing or older than its sources."""

    def command(self) -> Command:
        return cmd("sh", "-c", APT_LISTS_SCRIPT)

    def parse(self, stdout: str, rc: int) -> bool:
        newest: dict[str, float] = {}
        for line in stdout.splitlines():
            what, _, stamp = line.partition(" ")
            try:
                newest[what] = max(newest.get(what, 0.0), float(stamp))
            except ValueError:
                continue
        if "lists" not in newest:
            return True
        return newest.get("sources", 0.0) > newest["lists"]

    def describe(self) -> str:
        return "apt package lists age"


# --- users and groups ----------------------------------------------------

@dataclass(frozen=True)
class UserAccount:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    primary_group: str
    groups: tuple[str, ...]  # supplementary only


USER_SCRIPT = 'getent passwd "$1" || exit 2; id -gn "$1"; id -Gn "$1"'


@dataclass(frozen=True)
class UserInfo(Fact):
    name: str

    def command(self) -> Command:
        return cmd("sh", "-c", USER_SCRIPT, "sh", self.name)

    def parse(self, stdout: str, rc: int) -> UserAccount | None:
        if rc == 2:
            return None
        need_rc(self, rc, (0,), stdout)
        lines = stdout.splitlines()
        fields = lines[0].split(":") if lines else []
        if len(fields) != 7 or len(lines) < 3:
            raise FactError(f"user {self.name}: cannot read {stdout!r}")
        primary = lines[1].strip()
        groups = tuple(g for g in lines[2].split() if g != primary)
        return UserAccount(fields[0], int(fields[2]), int(fields[3]), fields[5], fields[6],
                           primary, groups)

    def describe(self) -> str:
        return f"user {self.name}"


@dataclass(frozen=True)
class GroupAccount:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class GroupInfo(Fact):
    name: str

    def command(self) -> Command:
        return cmd("getent", "group", self.name)

    def parse(self, stdout: str, rc: int) -> GroupAccount | None:
        if rc == 2:
            return None
        need_rc(self, rc, (0,), stdout)
        fields = stdout.strip().split(":")
        if len(fields) != 4:
            raise FactError(f"group {self.name}: cannot read {stdout!r}")
        return GroupAccount(fields[0], int(fields[2]), tuple(m for m in fields[3].split(",") if m))

    def describe(self) -> str:
        return f"group {self.name}"


# --- commands ------------------------------------------------------------

@dataclass(frozen=True)
class CommandRc(Fact):
    """Exit code of a deployer's test command (``unless`` / ``onlyif``)."""

    text: str | Secret
    runas: str | None = None
    cwd: str | None = None

    def command(self) -> Command:
        return shell_text_command(self.text, runas=self.runas, cwd=self.cwd)

    def parse(self, stdout: str, rc: int) -> int:
        return rc

    def describe(self) -> str:
        return f"run {self.command().display}"


# Prints the requirements (argv) that the running environment does not satisfy,
# one a line: not installed, or installed at a version the specifier excludes.
# Version checks use pip's vendored packaging (a venv always has pip); without
# it, a requirement counts as satisfied when a distribution of that name exists.
UNSATISFIED_SCRIPT = r"""
import re, sys
from importlib import metadata
try:
    from pip._vendor.packaging.requirements import Requirement
except ImportError:
    Requirement = None
for text in sys.argv[1:]:
    name, spec, marker = re.match(r"\s*([A-Za-z0-9._-]+)", text).group(1), None, None
    if Requirement is not None:
        req = Requirement(text)
        name, spec, marker = req.name, req.specifier, req.marker
    if marker is not None and not marker.evaluate():
        continue
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        print(text)
        continue
    if spec and not spec.contains(version, prereleases=True):
        print(text)
"""

# $1 the user to ask as ("": this one), $2 the environment; the rest, the
# requirements. "absent" without an interpreter; "broken" and the error when it
# cannot even run.
UNSATISFIED_PROBE = r"""
user="$1"; env="$2"; shift 2
[ -e "$env/bin/python" ] || [ -L "$env/bin/python" ] || { echo absent; exit 0; }
if [ -n "$user" ]; then as_owner() { runuser -u "$user" -- "$@"; }; else as_owner() { "$@"; }; fi
out="$(as_owner "$env/bin/python" -I -c "$0" "$@" 2>&1)" || { echo broken; printf '%s\n' "$out" | tail -n 3; exit 0; }
echo ok; [ -z "$out" ] || printf '%s\n' "$out"
"""


@dataclass(frozen=True)
class EnvironmentState:
    state: str                      # "absent", "broken" or "ok"
    unsatisfied: tuple[str, ...] = ()
    error: str = ""                 # broken: what the interpreter said


@dataclass(frozen=True)
class UnsatisfiedRequirements(Fact):
    """Which of ``requirements`` a Python environment lacks, asked of its own
    interpreter, run as ``runas`` (the environment's owner: its code never runs as root)."""

    env: str
    requirements: tuple[str, ...]
    runas: str | None = None

    def command(self) -> Command:
        return cmd("sh", "-c", UNSATISFIED_PROBE, UNSATISFIED_SCRIPT, self.runas or "", self.env,
                   *self.requirements)

    def parse(self, stdout: str, rc: int) -> EnvironmentState:
        need_rc(self, rc, (0,), stdout)
        head, _, rest = stdout.strip("\n").partition("\n")
        lines = tuple(line for line in rest.splitlines() if line.strip())
        if head == "absent":
            return EnvironmentState("absent")
        if head == "broken":
            return EnvironmentState("broken", error=" ".join(lines)[-300:])
        if head != "ok":
            raise FactError(f"checking {self.env}: unexpected answer {head!r}")
        return EnvironmentState("ok", lines)

    def describe(self) -> str:
        return f"which requirements {self.env} lacks"


# --- gathering -----------------------------------------------------------

def batch_script(facts: list[Fact], marker: str) -> str:
    """One sh script running every probe in its own subshell, stdin closed,
    its stdout framed by markers and followed by its exit code."""
    lines = ["# jupyterfab facts"]
    for i, fact in enumerate(facts):
        lines.append(f"echo '{marker} {i} begin'")
        lines.append(f"( {fact.command().text}\n) </dev/null 2>/dev/null")
        lines.append(f"printf '\\n{marker} {i} rc %s\\n' \"$?\"")
    return "\n".join(lines) + "\n"


def split_batch_output(stdout: str, marker: str, count: int) -> dict[int, tuple[str, int]]:
    """Inverse of ``batch_script``: probe index -> (stdout, rc); a probe whose
    frame is incomplete (the script was killed) is left out."""
    answers: dict[int, tuple[str, int]] = {}
    position = 0
    for index in range(count):
        begin = f"{marker} {index} begin\n"
        start = stdout.find(begin, position)
        if start < 0:
            continue
        start += len(begin)
        end = stdout.find(f"\n{marker} {index} rc ", start)
        if end < 0:
            continue
        rc_start = end + len(f"\n{marker} {index} rc ")
        rc_end = stdout.find("\n", rc_start)
        rc_text = stdout[rc_start:rc_end if rc_end >= 0 else None]
        if rc_text.isdigit():
            answers[index] = (stdout[start:end], int(rc_text))
            position = rc_start
    return answers


# sh -c takes the script as one argument, and Linux caps one argument at 128 KiB
_MAX_INLINE_SCRIPT = 100_000


@dataclass(frozen=True)
class Failed:
    """A fact whose probe could not be read; the states needing it fail."""

    error: str


def gather(runner: Runner, facts: Iterable[Fact], *, timeout: float | None = None
           ) -> dict[Fact, Any]:
    """Probe all ``facts`` in ONE round trip; a fact that cannot be read maps to ``Failed``."""
    unique = list(dict.fromkeys(facts))
    if not unique:
        return {}
    marker = "JFAB-" + secrets.token_hex(8)
    script = batch_script(unique, marker)
    if len(script) < _MAX_INLINE_SCRIPT:
        result = runner.run(cmd("sh", "-c", script), timeout=timeout)
    else:
        result = runner.run(cmd("sh", "-s"), stdin=script.encode(), timeout=timeout)
    answers = split_batch_output(result.stdout, marker, len(unique))
    values: dict[Fact, Any] = {}
    for i, fact in enumerate(unique):
        if i not in answers:
            detail = result.stderr.strip()[:300] or f"probe script exited {result.rc}"
            values[fact] = Failed(f"no answer to `{fact.describe()}`: {detail}")
            continue
        out, rc = answers[i]
        try:
            values[fact] = fact.parse(out, rc)
        except FactError as exc:
            values[fact] = Failed(str(exc))
    return values


def probe(runner: Runner, fact: Fact, *, timeout: float | None = None) -> Any:
    """One fact, one round trip; raises FactError when it cannot be read."""
    value = gather(runner, [fact], timeout=timeout)[fact]
    if isinstance(value, Failed):
        raise FactError(value.error)
    return value

