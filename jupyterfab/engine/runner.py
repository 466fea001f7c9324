"""The one layer that touches a host: run a command, write a file.

States and facts never import Fabric; they talk to a ``Runner``. ``SSHRunner``
holds one Fabric connection per host, reused by every state. Tests use a fake
runner with the same two methods.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import paramiko

if TYPE_CHECKING:
    import fabric

from jupyterfab.engine.errors import HostError
from jupyterfab.engine.shell import Command, as_command

log = logging.getLogger(__name__)
# paramiko logs a traceback for every failed handshake; HostUnreachable already
# says what happened, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


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

    def hold(self, command: Command) -> Held:
        """Start a long-lived command with its stdin kept open until ``release``."""


class Held(Protocol):
    def readline(self, timeout: float) -> str | None:
        """The next line of output, without its newline (None once it ended);
        TimeoutError after ``timeout``."""

    def error(self) -> str:
        """What it wrote to stderr so far."""

    def release(self) -> None:
        """Close its stdin and wait briefly for it to end."""


class HostUnreachable(HostError):
    """The SSH connection could not be opened or broke."""


@contextlib.contextmanager
def _broken_as_unreachable(host: str) -> Iterator[None]:
    """A connection that fails or breaks mid-command is HostUnreachable, in one line."""
    try:
        yield
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise HostUnreachable(f"{host}: {exc}") from exc


class SSHRunner:
    """Runs commands over one reused SSH connection.

    Fabric opens the connection (ssh_config, keys, ports); each command is then
    one paramiko channel on the same transport, which costs one round trip and
    none of Invoke's per-command I/O threads. Commands run as the SSH user; when
    that user is not root, through ``sudo -n`` (passwordless sudo is required).
    """

    def __init__(self, connection, *, host: str | None = None):
        self.connection = connection
        self.host = host or connection.original_host
        self.sudo = connection.user != "root"
        with _OPEN_LOCK:
            _OPEN.add(self)

    def _transport(self):
        if not self.connection.is_connected:
            try:
                # paramiko writes each request (and each handshake step) as several
                # small packets; with Nagle's algorithm every one of them waits out
                # a 40 ms delayed ACK. So the socket is ours, with TCP_NODELAY.
                sock = socket.create_connection((self.connection.host, self.connection.port),
                                                timeout=self.connection.connect_timeout or 10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.connection.connect_kwargs["sock"] = sock
                self.connection.open()
            except Exception as exc:
                raise HostUnreachable(f"{self.host}: cannot connect: {exc}") from exc
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise HostUnreachable(f"{self.host}: SSH connection is closed")
        return transport

    def run(self, command, *, stdin=None, timeout=None) -> CmdResult:
        command = as_command(command)
        log.debug("%s: %s", self.host, command.display)
        with _broken_as_unreachable(self.host):
            chan = self._open(command, timeout=timeout)
            if stdin:
                # paramiko's sendall re-slices what is left after every packet
                # (quadratic in the size); megabyte pieces keep a wheelhouse fast.
                view = memoryview(stdin)
                for start in range(0, len(view), 1 << 20):
                    chan.sendall(bytes(view[start:start + (1 << 20)]))
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                got = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if not got:
                    if chan.exit_status_ready() and chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    select.select([chan], [], [], 0.5 if timeout is None else min(timeout, 0.5))
            rc = chan.recv_exit_status()
            chan.close()
        return CmdResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _open(self, command, *, timeout: float | None = None, pty: bool = False):
        """A new channel on the connection, running ``command`` (through sudo unless root)."""
        command = as_command(command)
        chan = self._transport().open_session()
        chan.settimeout(timeout)
        if pty:
            chan.get_pty(width=500)
        chan.exec_command(f"sudo -n -- sh -c {shlex.quote(command.text)}" if self.sudo else command.text)
        return chan

    def hold(self, command: Command) -> ChannelProcess:
        """A command on a channel of its own, alive until ``release`` or until this
        connection drops (sshd then closes its stdin)."""
        with _broken_as_unreachable(self.host):
            return ChannelProcess(self._open(command), self.host)

    def stream(self, command) -> Iterator[str]:
        """``command``'s output, line by line as it comes, until it ends or this
        connection closes (from another thread: how a follower stops). On a
        pseudo-terminal, so that sshd hangs the command up when the connection goes."""
        with _broken_as_unreachable(self.host):
            chan = self._open(command, pty=True)
            pending = b""
            while data := chan.recv(65536):
                *complete, pending = (pending + data).split(b"\n")
                for line in complete:
                    yield line.rstrip(b"\r").decode("utf-8", "replace")
            if pending:
                yield pending.rstrip(b"\r").decode("utf-8", "replace")

    def put(self, data: bytes, remote_path: str) -> None:
        r = self.run(Command(("sh", "-c", 'umask 077 && cat > "$1"', "sh", remote_path)), stdin=data)
        if not r.ok:
            raise OSError(f"{self.host}: cannot write {remote_path}: {r.stderr.strip()}")

    def get(self, remote_path: str) -> bytes:
        """A file's bytes over SFTP on the same connection (readable by the SSH user)."""
        self._transport()
        buffer = io.BytesIO()
        try:
            self.connection.sftp().getfo(remote_path, buffer)
        except (OSError, paramiko.SSHException) as exc:
            raise HostUnreachable(f"{self.host}: cannot fetch {remote_path}: {exc}") from exc
        return buffer.getvalue()

    def close(self) -> None:
        with _OPEN_LOCK:
            _OPEN.discard(self)
        self.connection.close()


# Every open SSHRunner, so that Ctrl-C can end the hosts' work that other threads do:
# a thread cannot be interrupted, but its command ends when its connection closes.
_OPEN: set[SSHRunner] = set()
_OPEN_LOCK = threading.Lock()


def close_every_connection() -> None:
    """Close every open SSH connection (Ctrl-C): each host's work then stops as after a
    dropped connection, which leaves the host working and the next run finishing the job."""
    with _OPEN_LOCK:
        runners = list(_OPEN)
    for runner in runners:
        runner.close()


class ChannelProcess:
    """The controller's end of a command started by ``SSHRunner.hold``."""

    def __init__(self, chan, host: str):
        self.chan, self.host = chan, host
        self._out, self._err = b"", b""

    def readline(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        timed_out = False
        with _broken_as_unreachable(self.host):
            while b"\n" not in self._out:
                if self.chan.recv_stderr_ready():
                    self._err += self.chan.recv_stderr(65536)
                if self.chan.recv_ready():
                    data = self.chan.recv(65536)
                    if not data:
                        break
                    self._out += data
                    continue
                if self.chan.eof_received or self.chan.closed:
                    if self.chan.recv_ready():
                        continue        # arrived with the end, after the check above
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                select.select([self.chan], [], [], min(left, 0.5))
        # Outside the guard: TimeoutError is an OSError, but a command that stays silent
        # is not a broken connection (the host lock names what it waited for).
        if timed_out:
            raise TimeoutError(f"{self.host}: no answer within {timeout:.0f} s")
        if not self._out:
            return None
        line, _, self._out = self._out.partition(b"\n")
        return line.decode("utf-8", "replace")

    def error(self) -> str:
        return self._err.decode("utf-8", "replace")

    def release(self) -> None:
        try:
            self.chan.shutdown_write()
            deadline = time.monotonic() + 10
            while not self.chan.exit_status_ready() and time.monotonic() < deadline:
                select.select([self.chan], [], [], 0.2)
                while self.chan.recv_ready():
                    self.chan.recv(65536)
            self.chan.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass        # the connection is gone, and with it the remote end


def connection_for(host) -> fabric.Connection:
    """A Fabric connection for an inventory ``Host``; opened lazily by the runner.

    The host key must be known: in the inventory's ``known_hosts`` file when it
    names one, else in the user's ~/.ssh/known_hosts. An unknown key is refused
    (never silently trusted) and the error says how to add it.
    """
    import fabric

    connect_kwargs = {"banner_timeout": 10, "auth_timeout": 10}
    if host.key:
        connect_kwargs["key_filename"] = host.key
        connect_kwargs["look_for_keys"] = False
    conn = fabric.Connection(host.address, user=host.user, port=host.port,
                             connect_kwargs=connect_kwargs, connect_timeout=10)
    # the inventory's file, else where `ssh` keeps them (Fabric itself reads none)
    known = host.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
    if host.known_hosts or os.path.isfile(known):
        conn.client.load_host_keys(known)
    conn.client.set_missing_host_key_policy(_RefuseUnknownHostKey(host.known_hosts))
    return conn


class _RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts or "~/.ssh/known_hosts"

    def missing_host_key(self, client, hostname, key):
        raise paramiko.SSHException(
            f"the host key of {hostname} ({key.get_name()}) is not in {self.known_hosts}; "
            f"check it and add it (e.g. ssh-keyscan {hostname.strip('[]').split(']')[0]} "
            f">> {self.known_hosts}) or SSH in once by hand")


def open_runner(host) -> SSHRunner:
    return SSHRunner(connection_for(host), host=host.name)
