"""The sandbox never destroys running hosts silently: ``sandbox.up``, ``demo`` and
``bench`` refuse while hosts run, naming them, unless ``--replace``; and what pointed at
the hosts (inventories, the demo's record, ssh files) goes with them.

Run in-process with the teardown and the boot replaced by tripwires: a broken refusal
fails here instead of tearing down the machine's real sandbox."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
from invoke import Context, Exit

from jupyterfab import sandbox

PROJECT = Path(__file__).resolve().parents[2]


class Tripwire(Exception):
    """Raised where the sandbox would be torn down or booted."""


@pytest.fixture
def tasks_module():
    spec = importlib.util.spec_from_file_location("jupyterfab_local_tasks", PROJECT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def running_host(tmp_path, monkeypatch):
    """A sandbox state dir whose sandbox1 runs (its nspawn pid is this process's)."""
    root = tmp_path / "state"
    host = root / "hosts" / "sandbox1"
    host.mkdir(parents=True)
    (host / "host.json").write_text(json.dumps({"name": "sandbox1", "address": "198.18.0.11"}))
    (host / "nspawn.pid").write_text(str(os.getpid()))
    monkeypatch.setattr(sandbox, "STATE_ROOT", root)
    monkeypatch.setattr(sandbox, "exclusive", contextlib.nullcontext)

    def tripwire(*args, **kwargs):
        raise Tripwire("the sandbox would have been torn down or booted")

    for name in ("check_prerequisites", "down", "ensure_image", "_start_host"):
        monkeypatch.setattr(sandbox, name, tripwire)
    return host


REFUSAL = r"sandbox hosts are running: sandbox1 \(198\.18\.0\.11\);.*notebooks.*--replace"


def test_up_refuses_while_hosts_run_and_names_them(running_host):
    with pytest.raises(sandbox.SandboxError, match=REFUSAL):
        sandbox.up(PROJECT, count=1)
    assert (running_host / "host.json").exists()


def test_up_with_replace_goes_on_to_replace_them(running_host):
    with pytest.raises(Tripwire):
        sandbox.up(PROJECT, count=1, replace=True)


def test_stopped_hosts_are_no_reason_to_refuse(running_host):
    (running_host / "nspawn.pid").write_text("999999999")   # no such process
    with pytest.raises(Tripwire):
        sandbox.up(PROJECT, count=1)


@pytest.mark.parametrize("call", [
    lambda t, c: t.up(c),
    lambda t, c: t.up(c, count=2),
    lambda t, c: t.demo(c),
    lambda t, c: t.demo(c, cloudflare=True),
    lambda t, c: t.bench(c),
    lambda t, c: t.bench(c, latency=True),
], ids=["sandbox.up", "sandbox.up --count 2", "demo", "demo --cloudflare", "bench", "bench --latency"])
def test_every_task_that_boots_hosts_refuses_in_one_line(running_host, tasks_module, call, capsys):
    with pytest.raises(Exit) as refused:
        call(tasks_module, Context())
    assert refused.value.code == 1
    message = str(refused.value.message)
    assert "\n" not in message
    assert re.search(REFUSAL, message), message
    assert (running_host / "host.json").exists()


@pytest.mark.parametrize("call", [
    lambda t, c: t.up(c, replace=True),
    lambda t, c: t.demo(c, replace=True),
    lambda t, c: t.bench(c, replace=True),
], ids=["sandbox.up", "demo", "bench"])
def test_replace_lets_every_task_go_on(running_host, tasks_module, call, monkeypatch):
    monkeypatch.setattr(tasks_module, "_sandbox_password_file", lambda: Path("/nonexistent"))
    monkeypatch.setattr("jupyterfab.testing.pebble.available", lambda: "")   # the demo's CA: present
    with pytest.raises(Tripwire):
        call(tasks_module, Context())


def test_stale_inventories_go_with_the_hosts(tmp_path):
    work = sandbox.workdir_for(tmp_path)
    work.mkdir()
    stale = ["hosts.yaml", "hosts-cloudflare.yaml", "hosts-acme.yaml", "demo.json", "ssh_config",
             "known_hosts"]
    kept = ["password", "id_ed25519", "id_ed25519.pub", "cloudflare-token"]
    for name in stale + kept:
        (work / name).write_text("x\n")
    removed = sandbox.forget_client_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in work.iterdir()) == sorted(kept)


def test_hints_say_sudo_only_when_the_users_shell_is_not_roots(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert sandbox.as_root("./run sandbox.down") == "./run sandbox.down"
    monkeypatch.setenv("SUDO_USER", "alice")
    assert sandbox.as_root("./run sandbox.down") == "sudo ./run sandbox.down"
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert sandbox.as_root("./run sandbox.down") == "sudo ./run sandbox.down"


def test_the_benchs_deploys_write_into_its_log_not_on_the_terminal(tasks_module, tmp_path, capfd):
    log_path = tmp_path / "bench.log"
    with open(log_path, "w") as log:
        rc, seconds, peak_kb = tasks_module._fab_measured("--version", log=log)
    assert rc == 0 and seconds > 0 and peak_kb > 0
    assert "Fabric" in log_path.read_text()
    assert capfd.readouterr().out == ""
