"""Files and directories: type, mode, owner, checksum, content, a tree's hashes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from jupyterfab.engine.facts import Fact, FactError, FactGroup, need_rc
from jupyterfab.engine.shell import Command, cmd

MANIFEST_NAME = ".jupyterfab-manifest"


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

# STAT_SCRIPT's answers for many paths from one `stat` and one `sha256sum`: $1 has
# a letter per path (s: its sha256 too), the rest are the paths. First a line per
# path from sh's own tests (no process), then stat's line for each existing path,
# then sha256sum's for each file whose sha256 was asked.
STAT_GROUP_SCRIPT = r"""
flags=$1; shift; f=$flags
for p do
    if [ -L "$p" ]; then l=link; else l=; fi
    if [ -e "$p" ]; then
        s=; case $f in s*) [ -f "$p" ] && s=sha256;; esac; echo "exists|$l|$s"
    elif [ -n "$l" ]; then echo broken-link; else echo absent; fi
    f=${f#?}
done
existing() { for p do shift; [ -e "$p" ] && set -- "$@" "$p"; done
    [ $# -eq 0 ] || stat -L --printf "%F|%a|%U|%G\n" -- "$@"; }
summed() { f=$1; shift; for p do shift; case $f in s*) [ -f "$p" ] && set -- "$@" "$p";; esac
    f=${f#?}; done; [ $# -eq 0 ] || sha256sum -- "$@"; }
echo %%stat; existing "$@" || exit 1
echo %%sha256; summed "$flags" "$@" || exit 1
"""


class StatGroup(FactGroup):
    """Every absolute path's ``Stat`` from one ``stat`` and one ``sha256sum``."""

    def command(self, facts: list[Fact]) -> Command:
        flags = "".join("s" if fact.checksum else "-" for fact in facts)
        return cmd("sh", "-c", STAT_GROUP_SCRIPT, "sh", flags, *(fact.path for fact in facts))

    def split(self, facts: list[Fact], stdout: str, rc: int) -> list[tuple[str, int]]:
        # as each path's own probe would have failed: the state needing it says so
        failed = [(stdout[-200:], rc or 1)] * len(facts)
        lines = stdout.split("\n")
        if rc != 0 or lines[len(facts):len(facts) + 1] != ["%%stat"] or "%%sha256" not in lines:
            return failed
        at_stat, at_sha = len(facts), lines.index("%%sha256")
        kinds, stat_lines, sum_lines = lines[:at_stat], lines[at_stat + 1:at_sha], lines[at_sha + 1:-1]
        existing = [kind.split("|") for kind in kinds if kind.startswith("exists|")]
        if (lines[-1] != "" or len(stat_lines) != len(existing)
                or len(sum_lines) != sum(1 for fields in existing if fields[-1])):
            return failed
        stats, sums = iter(stat_lines), iter(sum_lines)
        answers = []
        for kind in kinds:
            if not kind.startswith("exists|"):
                answers.append((kind + "\n", 0))
                continue
            _, link, summed = kind.split("|")
            answer = f"{next(stats)}|{link}\n"
            if summed:
                answer += next(sums).lstrip("\\")[:64] + "  -\n"
            answers.append((answer, 0))
        return answers


_STAT_GROUP = StatGroup()

_KINDS = {"regular file": "file", "regular empty file": "file", "directory": "directory"}


@dataclass(frozen=True)
class Stat(Fact):
    """Type, mode, owner, group (and sha256 for files) of a path; None if absent."""

    path: str
    checksum: bool = False

    def command(self) -> Command:
        return cmd("sh", "-c", STAT_SCRIPT, "sh", self.path, "sha256" if self.checksum else "")

    def group(self) -> FactGroup | None:
        # a relative path could read as an option, or `-` as stdin, to sha256sum
        return _STAT_GROUP if self.path.startswith("/") else None

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
