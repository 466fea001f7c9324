"""Accounts and groups."""

from __future__ import annotations

from dataclasses import dataclass

from jupyterfab.engine.facts import Fact, FactError, need_rc
from jupyterfab.engine.shell import Command, cmd


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
