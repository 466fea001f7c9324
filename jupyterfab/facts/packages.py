"""Installed packages: Debian's (dpkg, apt's lists) and a Python environment's."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..shell import Command, cmd
from . import Fact, FactError, need_rc
from .commands import PROBE_BOUND, RunAs


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


# One find for both: the package lists' ages, and the sources' (a missing place is
# only a message, and the fact reads what was printed).
APT_LISTS_FIND = ("find", "/var/lib/apt/lists", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
                  "-maxdepth", "1", "-type", "f", "(",
                  "-path", "/var/lib/apt/lists/*", "-name", "*_Packages*", "-printf", "lists %T@\\n",
                  "-o", "!", "-path", "/var/lib/apt/lists/*", "(", "-name", "*.list", "-o",
                  "-name", "*.sources", ")", "-printf", "sources %T@\\n", ")")


@dataclass(frozen=True)
class AptListsStale(Fact):
    """True when apt's package lists are missing or older than its sources."""

    def command(self) -> Command:
        return cmd(*APT_LISTS_FIND)

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



# Prints the requirements (argv) that the running environment does not satisfy,
# one a line: not installed, or installed at a version the specifier excludes.
# Version checks use pip's vendored packaging (a venv always has pip); without
# it, a requirement counts as satisfied when a distribution of that name exists.
# A bare name (no version, extra or marker) whose .dist-info folder is on sys.path
# is satisfied without importing either: importlib.metadata and packaging cost
# ~40 ms of the probe's ~50 ms, and every deploy of every host asks.
UNSATISFIED_SCRIPT = r"""
import os, re, sys
def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()
present = set()
for folder in sys.path:
    try:
        names = os.listdir(folder or ".")
    except OSError:
        continue
    present.update(key(n[:-10].rpartition("-")[0]) for n in names if n.endswith(".dist-info"))
rest = [t for t in sys.argv[1:]
        if not (re.fullmatch(r"\s*[A-Za-z0-9._-]+\s*", t) and key(t.strip()) in present)]
if rest:
    from importlib import metadata
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        Requirement = None
for text in rest:
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

# $1 the shell text that runs the environment's interpreter on UNSATISFIED_SCRIPT and
# the requirements (as its owner, inside the owner's box), $2 the environment, $3 the
# .dist-info globs of the requirements when every one is a bare name ("" otherwise).
# "absent" without an interpreter; "broken" and the error when it cannot even run.
#
# Every deploy asks, and starting the environment's Python as its owner (a transient
# unit, then the interpreter) is most of a no-op's CPU on a host. So when each
# requirement is a bare name whose .dist-info folder is in the site-packages of the
# version the interpreter resolves to, and the environment is still a venv or a conda
# environment, the answer is "ok" without running it. Anything else (a version, an
# extra, a marker, a folder missing, an interpreter gone or of another version) asks
# the interpreter as before. Root only reads names here: nothing of the user's runs.
UNSATISFIED_PROBE = r"""
ask="$1"; env="$2"; globs="$3"
[ -e "$env/bin/python" ] || [ -L "$env/bin/python" ] || { echo absent; exit 0; }
all_there() {   # $1 site-packages, $2 globs: does each match?
    sp="$1"; set -f; set -- $2; set +f
    for glob; do for f in "$sp"/$glob; do [ -e "$f" ] || return 1; break; done; done
}
if [ -n "$globs" ] && { [ -f "$env/pyvenv.cfg" ] || [ -d "$env/conda-meta" ]; } &&
   p="$(readlink -f "$env/bin/python")" && [ -x "$p" ]; then
    v="${p##*/python}"
    case "$v" in
        3.[0-9]*) all_there "$env/lib/python$v/site-packages" "$globs" && { echo ok; exit 0; };;
    esac
fi
out="$(eval "$ask" 2>&1)" || { echo broken; printf '%s\n' "$out" | tail -n 3; exit 0; }
echo ok; [ -z "$out" ] || printf '%s\n' "$out"
"""
BARE_NAME = re.compile(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*")


def dist_info_glob(name: str) -> str:
    """The folder glob a bare requirement's installed distribution matches (pure):
    any case, any of - _ . between words, as installers name .dist-info folders."""
    words = re.split(r"[-_.]+", name.strip())
    return "[-_.]".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w)
                        for w in words) + "-*.dist-info"


def dist_info_globs(requirements: tuple[str, ...]) -> str:
    """Every requirement's glob, space-separated, when each is a bare name; else ""."""
    if not requirements or not all(BARE_NAME.fullmatch(r) for r in requirements):
        return ""
    return " ".join(dist_info_glob(r) for r in requirements)


@dataclass(frozen=True)
class EnvironmentState:
    state: str                      # "absent", "broken" or "ok"
    unsatisfied: tuple[str, ...] = ()
    error: str = ""                 # broken: what the interpreter said


@dataclass(frozen=True)
class UnsatisfiedRequirements(Fact):
    """Which of ``requirements`` a Python environment lacks, asked of its own
    interpreter, run as ``runas`` (the environment's owner, inside the owner's box: its
    code never runs as root, nor outside that box)."""

    env: str
    requirements: tuple[str, ...]
    runas: RunAs | None = None

    def command(self) -> Command:
        ask = [f"{self.env}/bin/python", "-I", "-c", UNSATISFIED_SCRIPT, *self.requirements]
        asked = self.runas.command(ask, PROBE_BOUND) if self.runas else Command(tuple(ask))
        return cmd("sh", "-c", UNSATISFIED_PROBE, "sh", asked.text, self.env,
                   dist_info_globs(self.requirements))

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
