"""Ctrl-C while several hosts run: every host's work stops, and it says so in one line."""

import signal
import threading
import time

import pytest
from invoke import Exit

from jupyterfab.cli import one_line
from jupyterfab.engine import fleet
from jupyterfab.engine.runner import HostUnreachable, SSHRunner
from jupyterfab.inventory import Host


class FakeConnection:
    """What SSHRunner needs of a Fabric connection; ``close`` is the dropped connection."""

    def __init__(self, name):
        self.user, self.original_host = "root", name
        self.closed = threading.Event()

    def close(self):
        self.closed.set()


def test_ctrl_c_closes_every_hosts_connection_instead_of_waiting_for_them():
    connections = {}

    def deploy(host):       # a long deploy: it ends when its connection closes
        connections[host.name] = FakeConnection(host.name)
        runner = SSHRunner(connections[host.name], host=host.name)
        try:
            if not connections[host.name].closed.wait(20):
                return fleet.HostResult(host.name, "finished, never interrupted")
            raise HostUnreachable(f"{host.name}: SSH connection is closed")
        finally:
            runner.close()

    main = threading.main_thread().ident     # Ctrl-C: SIGINT, which the main thread gets
    threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fleet.run([Host("a", "198.18.0.11"), Host("b", "198.18.0.12")], deploy)
    assert time.monotonic() - started < 5          # it waited the whole 20 s before
    assert sorted(connections) == ["a", "b"]
    assert all(c.closed.is_set() for c in connections.values())


def test_an_interrupted_task_ends_in_one_line_with_ctrl_cs_exit_code():
    @one_line
    def task():
        raise KeyboardInterrupt
    with pytest.raises(Exit) as stopped:
        task()
    assert stopped.value.code == 130
    assert str(stopped.value.message).startswith("interrupted (Ctrl-C)")
    assert "\n" not in stopped.value.message
