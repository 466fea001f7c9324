"""The one layer that touches a host: run a command, write a file.

States and facts never import Fabric; they talk to a ``Runner``. ``SSHRunner``
holds one Fabric connection per host, reused by every state. Tests use a fake
runner with the same two methods.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Protocol

from .shell import Command, as_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CmdResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Runner(Protocol):
    host: str

    def run(self, command: Command | str, *, stdin: bytes | None = None,
            timeout: float | None = None) -> CmdResult:
        """Run on the host as root; never raises on a non-zero exit code."""

    def put(self, data: bytes, remote_path: str) -> None:
        """Write ``data`` to ``remote_path`` (callers write a temp path, then move)."""


class HostUnreachable(Exception):
    """The SSH connection could not be opened or broke."""


class SSHRunner:
    """Runs commands over one reused Fabric connection.

    Commands run as the SSH user; when that user is not root, through
    ``sudo -n`` (passwordless sudo is a documented requirement).
    """

    def __init__(self, connection, *, host: str | None = None):
        self.connection = connection
        self.host = host or connection.host
        self.sudo = connection.user != "root"

    def _wrap(self, text: str) -> str:
        return f"sudo -n -- sh -c {__import__('shlex').quote(text)}" if self.sudo else text

    def run(self, command, *, stdin=None, timeout=None) -> CmdResult:
        command = as_command(command)
        log.debug("%s: %s", self.host, command.display)
        try:
            r = self.connection.run(
                self._wrap(command.text), hide=True, warn=True, in_stream=io.BytesIO(stdin) if stdin is not None else False,
                timeout=timeout, pty=False,
            )
        except Exception as exc:  # paramiko/socket errors: the host, not the command
            if isinstance(exc, (OSError, EOFError)) or exc.__class__.__module__.startswith("paramiko"):
                raise HostUnreachable(f"{self.host}: {exc}") from exc
            raise
        return CmdResult(r.exited, r.stdout, r.stderr)

    def put(self, data: bytes, remote_path: str) -> None:
        if self.sudo:
            r = self.run(Command(("sh", "-c", 'cat > "$1"', "sh", remote_path)), stdin=data)
            if not r.ok:
                raise OSError(f"{self.host}: cannot write {remote_path}: {r.stderr.strip()}")
            return
        self.connection.sftp().putfo(io.BytesIO(data), remote_path)
