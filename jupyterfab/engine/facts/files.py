"""Files and directories: type, mode, owner, checksum, content, a tree's hashes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from jupyterfab.engine import nofollow
from jupyterfab.engine.facts import Fact, FactError, FactGroup, need_rc
from jupyterfab.engine.shell import Command, cmd

MANIFEST_NAME = ".jupyterfab-manifest"


@dataclass(frozen=True)
class FileInfo:
    kind: str                 # "file", "directory", "other", "broken-link", "link" (see link)
    mode: int = 0
    user: str = ""
    group: str = ""
    sha256: str | None = None  # regular files only, when asked for
    is_link: bool = False
    # The first symbolic link on the way (the path itself, or a folder above it) that
    # root must not follow (nofollow.trusted): then kind is "link" and nothing beyond it
    # is told; the file states refuse the path.
    link: str = ""

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"


# $1 has a letter per path (s: its sha256 too), the rest are the paths. For each path,
# in order: a line "@LINK_UID|LINK_MODE|DIR_UID|DIR_MODE|UID|_|N" for every component
# that is a symbolic link (N: it is the path's first N components) (its owner, the owner and mode of the folder holding
# it, and the uid asking, as /proc/self/. tells, for nofollow.trusted on the controller;
# a path without links costs no process), then "exists|sha256" (or "exists|"), "broken-link" or "absent", as sh sees
# it. Then stat's line for each existing path and sha256sum's for each file whose
# sha256 was asked. The probe reads through links (it only reads); whether a link may be
# followed is decided from those lines, by the rule the changes follow on the host.
STAT_GROUP_SCRIPT = r"""
flags=$1; shift; f=$flags; lq=
for p do
    q=; r=${p#/}; n=0
    while [ -n "$r" ]; do
        q=$q/${r%%/*}; n=$((n + 1))
        case $r in */*) r=${r#*/};; *) r=;; esac
        if [ -L "$q" ]; then
            [ "$q" = "$lq" ] || { lq=$q; la=$(stat --printf "%u|%a|" -- "$q" "${q%/*}/." /proc/self/.); }
            echo "@$la$n"
        fi
    done
    if [ -e "$p" ]; then
        s=; case $f in s*) [ -f "$p" ] && s=sha256;; esac; echo "exists|$s"
    elif [ -L "$p" ]; then echo broken-link; else echo absent; fi
    f=${f#?}
done
existing() { for p do shift; [ -e "$p" ] && set -- "$@" "$p"; done
    [ $# -eq 0 ] || stat -L --printf "%F|%a|%U|%G\n" -- "$@"; }
summed() { f=$1; shift; for p do shift; case $f in s*) [ -f "$p" ] && set -- "$@" "$p";; esac
    f=${f#?}; done; [ $# -eq 0 ] || sha256sum -- "$@"; }
echo %%stat; existing "$@" || exit 1
echo %%sha256; summed "$flags" "$@" || exit 1
"""

def _records(head: list[str]) -> list[list[str]] | None:
    """The script's first part cut into one record per path: its link lines, then its
    kind line; None when it does not read so."""
    records, current = [], []
    for line in head:
        current.append(line)
        if not line.startswith("@"):
            records.append(current)
            current = []
    return None if current else records


class StatGroup(FactGroup):
    """Every path's ``Stat`` from one ``stat`` and one ``sha256sum`` (and, for a path
    with a symbolic link on its way, a ``stat`` of the link and its folder)."""

    def command(self, facts: list[Fact]) -> Command:
        flags = "".join("s" if fact.checksum else "-" for fact in facts)
        return cmd("sh", "-c", STAT_GROUP_SCRIPT, "sh", flags, *(fact.path for fact in facts))

    def split(self, facts: list[Fact], stdout: str, rc: int) -> list[tuple[str, int]]:
        # as each path's own probe would have failed: the state needing it says so
        failed = [(stdout[-200:], rc or 1)] * len(facts)
        lines = stdout.split("\n")
        if rc != 0 or "%%stat" not in lines or "%%sha256" not in lines or lines[-1] != "":
            return failed
        at_stat, at_sha = lines.index("%%stat"), lines.index("%%sha256")
        records = _records(lines[:at_stat])
        stat_lines, sum_lines = lines[at_stat + 1:at_sha], lines[at_sha + 1:-1]
        if records is None or len(records) != len(facts):
            return failed
        kinds = [record[-1] for record in records]
        if (len(stat_lines) != sum(1 for k in kinds if k.startswith("exists|"))
                or len(sum_lines) != kinds.count("exists|sha256")):
            return failed
        stats, sums = iter(stat_lines), iter(sum_lines)
        # each path's answer as the script gives it for that path alone
        return [("\n".join([*record, "%%stat", *([next(stats)] if kind.startswith("exists|") else []),
                            "%%sha256", *([next(sums)] if kind == "exists|sha256" else [])]) + "\n", 0)
                for record, kind in zip(records, kinds, strict=True)]


_STAT_GROUP = StatGroup()

_KINDS = {"regular file": "file", "regular empty file": "file", "directory": "directory"}


def read_links(lines: list[str], path: str) -> tuple[list[str], str]:
    """A path's ``@`` lines: the links on its way, and the first of them root must not
    follow ("" for none)."""
    components = path.split("/")
    paths, refused = [], ""
    for line in lines:
        fields = line[1:].split("|")
        if not line.startswith("@") or len(fields) != 7 or not all(f.isdigit() for f in fields) \
                or not 0 < int(fields[6]) < len(components):
            raise FactError(f"stat of {path}: cannot read {line!r}")
        link_uid, _, dir_uid, dir_mode, uid, _, depth = fields
        link = "/".join(components[:int(depth) + 1])
        paths.append(link)
        if not refused and not nofollow.trusted(int(link_uid), int(dir_uid), int(dir_mode, 8), int(uid)):
            refused = link
    return paths, refused


@dataclass(frozen=True)
class Stat(Fact):
    """Type, mode, owner, group (and sha256 for files) of an absolute path; None if
    absent. A path with a link root must not follow on its way is ``kind="link"``,
    ``link`` naming that link, whatever is beyond it."""

    path: str
    checksum: bool = False

    def __post_init__(self):
        # the script walks the components from /; a relative "-" would be sha256sum's stdin
        if not self.path.startswith("/"):
            raise ValueError(f"Stat needs an absolute path, not {self.path!r}")

    def command(self) -> Command:
        return _STAT_GROUP.command([self])

    def group(self) -> FactGroup | None:
        return _STAT_GROUP

    def parse(self, stdout: str, rc: int) -> FileInfo | None:
        need_rc(self, rc, (0,), stdout)
        lines = stdout.split("\n")
        if "%%stat" not in lines or "%%sha256" not in lines or lines.index("%%stat") == 0:
            raise FactError(f"stat of {self.path}: cannot read {stdout.strip()[:200]!r}")
        at_stat, at_sha = lines.index("%%stat"), lines.index("%%sha256")
        *links, kind = lines[:at_stat]
        on_the_way, link = read_links(links, self.path)
        if link:
            return FileInfo("link", is_link=True, link=link)
        if kind == "absent":
            return None
        if kind == "broken-link":
            return FileInfo("broken-link", is_link=True)
        fields = lines[at_stat + 1].split("|") if at_sha > at_stat + 1 else []
        if not kind.startswith("exists|") or len(fields) != 4:
            raise FactError(f"stat of {self.path}: cannot read {stdout.strip()[:200]!r}")
        kind_name, mode, user, group = fields
        sha = None
        if kind == "exists|sha256":
            sha = lines[at_sha + 1].lstrip("\\")[:64]
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise FactError(f"sha256 of {self.path}: cannot read {lines[at_sha + 1]!r}")
        return FileInfo(_KINDS.get(kind_name, "other"), int(mode, 8), user, group, sha,
                        self.path in on_the_way)

    def describe(self) -> str:
        return f"stat {self.path}"


@dataclass(frozen=True)
class LinkTarget(Fact):
    """What a symbolic link points to, as written ("?" when it is no link now): the
    words of a refusal."""

    path: str

    def command(self) -> Command:
        return cmd("readlink", "--", self.path)

    def parse(self, stdout: str, rc: int) -> str:
        return stdout[:-1] if rc == 0 and stdout.endswith("\n") else "?"

    def describe(self) -> str:
        return f"readlink {self.path}"


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
