"""TCP_NODELAY on another process's sockets, read from outside it.

Nothing in /proc shows a socket's options, so the socket itself is borrowed:
``pidfd_getfd`` (Linux 5.6+, needs the right to ptrace the process: root, or its
parent) duplicates the process's file descriptor into this one, where
``getsockopt`` reads it. Used by the tests on a Jupyter Server subprocess and on
sandbox hosts' NGINX and Jupyter (their processes run on this machine's kernel;
inside a container, pidfd_getfd is refused). As a script (standard library only):

    python3 sockopts.py PID PORT      # "LOCAL_PORT REMOTE_PORT NODELAY" per socket
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys

PIDFD_GETFD = 438       # the same number on every Linux architecture


def tcp_sockets(pid: int) -> list[tuple[int, int, str]]:
    """(local port, remote port, inode) of every TCP socket in ``pid``'s network namespace."""
    out = []
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            out.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16),
                        fields[9]))
    return out


def nodelay(pid: int, inode: str) -> int | None:
    """TCP_NODELAY (0 or 1) of ``pid``'s socket with ``inode``; None if ``pid`` has none."""
    fds = f"/proc/{pid}/fd"
    fd = next((int(n) for n in os.listdir(fds) if _link(f"{fds}/{n}") == f"socket:[{inode}]"), None)
    if fd is None:
        return None
    pidfd = os.pidfd_open(pid)
    try:
        copy = ctypes.CDLL(None, use_errno=True).syscall(PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd on process {pid}'s fd {fd}")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=copy) as borrowed:
        return borrowed.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def connections(pid: int, port: int) -> list[tuple[int, int, int]]:
    """(local port, remote port, TCP_NODELAY) of ``pid``'s connected sockets that use ``port``
    on either end (listening sockets left out)."""
    return [(local, remote, value) for local, remote, inode in tcp_sockets(pid)
            if remote and port in (local, remote) and (value := nodelay(pid, inode)) is not None]


if __name__ == "__main__":
    for row in connections(int(sys.argv[1]), int(sys.argv[2])):
        print(*row)
