"""The host lock's script run for real by the local shell (flock from util-linux),
and the deploy's use of it on the fake host."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from fakehost import FakeHost, FakeRunner
from unit_support import PROJECT, UNIT, LocalRunner

from jupyterfab import inventory
from jupyterfab.engine import hostlock
from jupyterfab.engine.runner import HostUnreachable
from jupyterfab.engine.shell import Raw, cmd
from jupyterfab.stack import deploy

pytestmark = pytest.mark.skipif(not shutil.which("flock"), reason="needs flock (util-linux)")


def test_a_second_holder_waits_then_fails_naming_the_first(tmp_path):
    lock = str(tmp_path / "jupyterfab.lock")
    with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock):
        assert "deploy from " in (tmp_path / "jupyterfab.lock.holder").read_text()
        started = time.monotonic()
        with pytest.raises(hostlock.HostBusy) as busy:
            with hostlock.held(LocalRunner(), "rotate-password", wait=1, lock_file=lock):
                pytest.fail("two holders at once")
        assert time.monotonic() - started >= 1          # it waited, bounded
    message = str(busy.value)
    assert message.startswith(f"host busy: deploy from {hostlock.controller()} since ")
    assert "\n" not in message
    # released: the next run gets it at once, and the holder file is gone after it
    with hostlock.held(LocalRunner(), "restart", wait=0, lock_file=lock):
        pass
    assert not (tmp_path / "jupyterfab.lock.holder").exists()


def test_a_waiting_run_gets_the_lock_when_the_holder_finishes(tmp_path):
    lock = str(tmp_path / "jupyterfab.lock")
    first = hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock)
    first.__enter__()
    waited = []
    # released while the second one waits
    threading.Timer(1.0, lambda: first.__exit__(None, None, None)).start()
    with hostlock.held(LocalRunner(), "deploy", wait=20, lock_file=lock, log=waited.append):
        pass
    assert waited and "waiting up to 20 s" in waited[0] and "deploy from" in waited[0]


HOLD_AND_HANG = """
import sys, time
sys.path[:0] = {paths!r}
from unit_support import LocalRunner
from jupyterfab.engine import hostlock
with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file={lock!r}):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_controller_releases_the_lock(tmp_path):
    lock = str(tmp_path / "jupyterfab.lock")
    controller = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_HANG.format(paths=[str(UNIT), str(PROJECT)], lock=lock)],
        stdout=subprocess.PIPE, text=True)
    assert controller.stdout.readline().strip() == "held"
    with pytest.raises(hostlock.HostBusy):
        with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock):
            pass
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    # the holder's stdin closed with the controller: the lock goes with it
    with hostlock.held(LocalRunner(), "deploy", wait=5, lock_file=lock):
        pass


def test_a_busy_host_is_not_even_probed(project):
    fake = FakeHost()
    fake.lock_holder = "rotate-password from alice@laptop since 2026-12-01 15:00:00 UTC (pid 7)"
    runner = FakeRunner(fake)
    host = inventory.Host("web1", "203.0.113.5", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True})
    report = deploy.deploy_host(host, deploy.Options(log=lambda _: None), runner)
    assert report.text == ("host busy: rotate-password from alice@laptop since "
                            "2026-12-01 15:00:00 UTC (pid 7)")
    assert runner.calls == []     # the probe (and the password hash it reads) waits for the lock


def test_a_dry_run_takes_no_lock():
    fake = FakeHost()
    fake.lock_holder = "deploy from bob@ci since 2026-12-01 15:00:00 UTC (pid 9)"
    runner = FakeRunner(fake)
    host = inventory.Host("web1", "203.0.113.5", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True})
    report = deploy.deploy_host(host, deploy.Options(test=True, log=lambda _: None), runner)
    assert "host busy" not in report.text and runner.calls and runner.locks == []



def test_the_first_command_runs_under_the_lock_in_its_round_trip(tmp_path):
    lock = str(tmp_path / "jupyterfab.lock")
    first = cmd("sh", "-c", 'flock -n "$1" true && echo free || echo taken; printf "two\\n\\nlast"; exit 3',
                "sh", lock)
    with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock, first=first) as looked:
        assert looked.rc == 3 and looked.stdout == "taken\ntwo\n\nlast"
    ends_with_newline = cmd("sh", "-c", "echo one")
    with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock, first=ends_with_newline) as looked:
        assert looked.rc == 0 and looked.stdout == "one\n"
    with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock) as looked:
        assert looked is None


def test_a_lock_holder_that_dies_during_the_first_command_is_a_broken_connection(tmp_path):
    lock = str(tmp_path / "jupyterfab.lock")
    with pytest.raises(HostUnreachable, match="the first command under the host lock ended early"):
        with hostlock.held(LocalRunner(), "deploy", wait=0, lock_file=lock,
                           first=cmd("sh", "-c", 'echo partial; kill -9 "$1"', "sh", Raw("$$"))):
            pytest.fail("no result without its end marker")
