"""``SSHRunner.stream`` (what ``logs --follow`` reads) against a real SSH server on
loopback: paramiko's server side, running each command under a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import threading
import time

import fabric
import paramiko
import pytest

from jupyterfab.engine.runner import HostUnreachable, SSHRunner
from jupyterfab.engine.shell import cmd


class PtyServer(paramiko.ServerInterface):
    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED

    def check_auth_password(self, username, password):
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username):
        return "password"

    def check_channel_pty_request(self, *args):
        return True

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self.run, args=(channel, command.decode()), daemon=True).start()
        return True

    @staticmethod
    def run(channel, command):
        main, child = pty.openpty()
        proc = subprocess.Popen(["sh", "-c", command], stdin=child, stdout=child, stderr=child,
                                start_new_session=True)
        os.close(child)
        try:
            while not channel.closed:       # the client went: hang the command up, as sshd does
                if select.select([main], [], [], 0.1)[0]:
                    data = os.read(main, 4096)
                    if not data:
                        break
                    channel.sendall(data)
        except OSError:
            pass                            # the pty or the channel closed under us
        finally:
            proc.kill()
            proc.wait()
            os.close(main)
            channel.close()


class RefusingServer(PtyServer):
    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


def serving(server: paramiko.ServerInterface) -> SSHRunner:
    """An SSHRunner for one connection to ``server`` on loopback (its listener closes
    with the runner's connection)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    key = paramiko.RSAKey.generate(2048)

    def serve():
        client, _ = listener.accept()
        transport = paramiko.Transport(client)
        transport.add_server_key(key)
        transport.start_server(server=server)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    connection = fabric.Connection("127.0.0.1", user="root", port=listener.getsockname()[1],
                                   connect_kwargs={"password": "x", "look_for_keys": False,
                                                   "allow_agent": False})
    connection.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    return SSHRunner(connection, host="local")


@pytest.fixture
def runner():
    runner = serving(PtyServer())
    yield runner
    runner.close()


@pytest.mark.parametrize("use", ["run", "hold", "stream"])
def test_a_channel_the_server_refuses_is_one_line_naming_the_host(use):
    runner = serving(RefusingServer())
    try:
        with pytest.raises(HostUnreachable, match=r"^local: .*prohibited"):
            {"run": lambda: runner.run("true"), "hold": lambda: runner.hold(cmd("cat")),
             "stream": lambda: list(runner.stream("true"))}[use]()
    finally:
        runner.close()


def test_stream_yields_lines_as_they_come_and_ends_when_the_connection_closes(runner):
    got: list[str] = []
    follower = threading.Thread(target=lambda: got.extend(runner.stream(
        "printf 'one\\ntwo\\n'; sleep 0.3; echo three; sleep 60")), daemon=True)
    follower.start()
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == ["one", "two", "three"]      # whole lines, the pty's \r gone, before the end
    runner.close()                              # Ctrl-C's way: from another thread
    follower.join(5)
    assert not follower.is_alive()


def test_a_held_command_that_stays_silent_times_out_as_such_not_as_a_broken_connection(runner):
    # the host lock turns this TimeoutError into "cannot take the host lock ..."; a
    # HostUnreachable here would lose that
    process = runner.hold(cmd("sh", "-c", "echo first; sleep 30"))
    assert process.readline(timeout=10).rstrip("\r") == "first"    # this server runs it on a pty
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^local: no answer within 1 s"):
        process.readline(timeout=1)
    assert time.monotonic() - started < 5


def test_a_held_command_gives_its_last_line_without_a_newline_then_says_it_ended(runner):
    process = runner.hold(cmd("sh", "-c", "stty -onlcr 2>/dev/null; printf 'one\\n\\nlast'"))
    assert [process.readline(timeout=10) for _ in range(3)] == ["one", "", "last"]
    assert process.readline(timeout=10) is None            # ended: not an empty line
