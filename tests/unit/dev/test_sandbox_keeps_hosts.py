"""The sandbox never destroys running hosts silently: ``sandbox.up`` and ``demo`` refuse
while hosts run, naming them, unless ``--replace``; ``demo`` reuses the host the last demo
deployed; ``bench`` boots hosts of its own beside them; and what pointed at the hosts
(inventories, the demo's record, ssh files) goes with them.

Run in-process with the teardown and the boot replaced by tripwires: a broken refusal
fails here instead of tearing down the machine's real sandbox."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from invoke import Context, Exit
from unit_support import PROJECT

from jupyterfab.dev import demo_record, sandbox
from jupyterfab.engine import shell


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
    # Not this project's .sandbox/: after a real ./run demo its demo.json made `demo` here
    # reuse that host and deploy to 198.18.0.11 for real, from a unit test.
    monkeypatch.setattr(sandbox, "workdir_for", lambda project: tmp_path / ".sandbox")

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
], ids=["sandbox.up", "sandbox.up --count 2", "demo", "demo --cloudflare"])
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
], ids=["sandbox.up", "demo"])
def test_replace_lets_every_task_go_on(running_host, tasks_module, call, monkeypatch):
    monkeypatch.setattr(tasks_module, "_sandbox_password_file", lambda: Path("/nonexistent"))
    monkeypatch.setattr("jupyterfab.dev.doubles.pebble.available", lambda: "")   # the demo's CA: present
    with pytest.raises(Tripwire):
        call(tasks_module, Context())


@pytest.mark.parametrize("latency", [False, True], ids=["bench", "bench --latency"])
def test_bench_boots_its_own_hosts_beside_the_running_ones(running_host, tasks_module, monkeypatch,
                                                          latency, tmp_path):
    stale = running_host.parent / "bench1"          # left by an interrupted bench
    stale.mkdir()
    (stale / "host.json").write_text(json.dumps({"name": "bench1", "address": "198.18.1.11"}))
    destroyed = []
    monkeypatch.setattr(sandbox, "check_prerequisites", lambda: None)
    monkeypatch.setattr(sandbox, "destroy_hosts", destroyed.extend)
    monkeypatch.setattr(sandbox, "check_subnet_free", lambda network: None)
    monkeypatch.setattr(tasks_module, "_sandbox_password_file", lambda: Path("/nonexistent"))
    # the bench removes its folder after: this project's own (a real bench's) must stay
    monkeypatch.setattr(tasks_module, "BENCH_WORK", running_host.parent / "bench-work")
    # and its log goes here, not into the checkout's artifacts/
    monkeypatch.setattr(tasks_module, "ARTIFACTS", tmp_path / "artifacts")
    with pytest.raises(Tripwire):       # booting: ensure_image, after the bench's own cleanup
        tasks_module.bench(Context(), latency=latency)
    assert "bench1" in destroyed and "sandbox1" not in destroyed, destroyed
    assert (running_host / "host.json").exists()
    if not latency:
        assert [p.name[:6] for p in (tmp_path / "artifacts").iterdir()] == ["bench-"]


@pytest.fixture
def last_demo(running_host, tasks_module, monkeypatch, tmp_path):
    """The last demo deployed sandbox1 (running): its record, and the deploys and verifies
    the demo task runs, recorded instead of run."""
    work = tmp_path / ".sandbox"
    work.mkdir()
    (work / "hosts.yaml").write_text("hosts: {}\n")
    monkeypatch.setattr(tasks_module, "PROJECT", tmp_path)
    calls = []
    monkeypatch.setattr(tasks_module, "_fab", lambda *args, log=None: calls.append(args) or 0)
    monkeypatch.setattr(tasks_module, "verify", lambda c: calls.append(("verify",)))

    def record(kind):
        demo_record.remember_demo(tmp_path, work / "hosts-acme.yaml", kind=kind, host="sandbox1",
                                     password_file=str(work / "password"), ca_file=str(work / "ca.pem"))
        return calls
    return record


def test_demo_reuses_the_running_host_of_the_last_demo(last_demo, tasks_module, capsys):
    calls = last_demo("acme")
    tasks_module.demo(Context())
    deploy, verified = calls
    assert deploy[:3] == ("-H", "sandbox1", "deploy") and deploy[4].endswith("hosts-acme.yaml")
    assert verified == ("verify",)
    said = capsys.readouterr().out
    assert "already runs the demo" in said and "Verify:" in said and "Again:" in said


def test_demo_cloudflare_verifies_its_running_host_and_says_why_not_redeployed(last_demo, tasks_module,
                                                                               capsys):
    calls = last_demo("cloudflare")
    tasks_module.demo(Context(), cloudflare=True)
    assert calls == [("verify",)]
    assert "stand-in" in capsys.readouterr().out


def test_demo_of_the_other_kind_is_refused_naming_replace(last_demo, tasks_module):
    calls = last_demo("acme")
    with pytest.raises(Exit) as refused:
        tasks_module.demo(Context(), cloudflare=True)
    assert "runs the demo without Cloudflare" in refused.value.message and "--replace" in refused.value.message
    assert calls == []


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
    assert shell.as_root("./run sandbox.down") == "./run sandbox.down"
    monkeypatch.setenv("SUDO_USER", "alice")
    assert shell.as_root("./run sandbox.down") == "sudo ./run sandbox.down"
    monkeypatch.delenv("SUDO_USER")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert shell.as_root("./run sandbox.down") == "sudo ./run sandbox.down"


def test_the_benchs_deploys_write_into_its_log_not_on_the_terminal(tasks_module, tmp_path, capfd):
    log_path = tmp_path / "bench.log"
    with open(log_path, "w") as log:
        rc, seconds, peak_kb = tasks_module._fab_measured("--version", log=log)
    assert rc == 0 and seconds > 0 and peak_kb > 0
    assert "Fabric" in log_path.read_text()
    assert capfd.readouterr().out == ""


def test_a_hosts_teardown_takes_its_processes_only():
    nspawn = f"/usr/bin/systemd-nspawn --boot --directory={sandbox.STATE_ROOT}/hosts/bench1/root "
    supervisor = "/usr/bin/python3 -m jupyterfab.dev.sandbox supervise bench1 "
    inside = "0::/jupyterfab-sandbox-bench1/system.slice/jupyter.service\n"
    for cmdline, cgroups in [(nspawn, "0::/\n"), (supervisor, "0::/\n"), ("jupyter-lab ", inside)]:
        assert sandbox.belongs(cmdline, cgroups, ["bench1"]) and sandbox.belongs(cmdline, cgroups)
        assert not sandbox.belongs(cmdline, cgroups, ["sandbox1"])
        assert not sandbox.belongs(cmdline.replace("bench1", "bench10"),
                                   cgroups.replace("bench1", "bench10"), ["bench1"])
    assert not sandbox.belongs("/usr/sbin/sshd ", "0::/system.slice/ssh.service\n", ["bench1"])


def test_the_bench_times_the_no_op_once_the_servers_answer_and_five_times_once_the_machine_is_quiet(
        tasks_module, monkeypatch, tmp_path):
    events, hosts = [], [SimpleNamespace(name="bench1", address="198.18.1.11")]
    monkeypatch.setattr(tasks_module, "_bench_up", lambda count: hosts)
    monkeypatch.setattr(tasks_module, "_bench_down", lambda: events.append("down"))
    monkeypatch.setattr(tasks_module, "_wait_until_serving", lambda hosts, edge=None: events.append("serving"))
    monkeypatch.setattr(tasks_module, "_wait_until_quiet", lambda: events.append("quiet"))
    seconds = iter([10.0, 0.9, 0.7, 0.5, 0.6, 2.0, 0.4])

    def measured(*args, log=None):
        events.append("deploy" + (" with password" if "--password-file" in args else ""))
        return 0, next(seconds), 1024
    monkeypatch.setattr(tasks_module, "_fab_measured", measured)
    figures = []
    tasks_module._bench_rows(figures, [1], False, tmp_path / "pw", "hosts.yaml", log=open(os.devnull, "w"))
    assert events == ["deploy with password", "serving", "deploy"] + ["quiet", "deploy"] * 5 + ["down"]
    assert [f[2:] for f in figures] == [[(10.0, 1024), (0.9, 1024), (0.6, 1024)]]   # the median at rest


def test_cpu_busy_share_comes_from_proc_stat(tasks_module):
    before = tasks_module.cpu_times("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    after = tasks_module.cpu_times("cpu  130 0 60 950 60 0 0 0 0 0\n")
    assert before == (150, 1000) and after == (190, 1200)
    assert tasks_module.busy_fraction(before, after) == pytest.approx(0.2)
    assert tasks_module.busy_fraction(after, after) == 0.0


@pytest.mark.parametrize("sizes", ["1,x", "4,,16", "0", "-1"])
def test_bad_bench_sizes_are_refused_in_one_line_before_anything_boots(tasks_module, monkeypatch, sizes):
    monkeypatch.setattr(sandbox, "exclusive", lambda: pytest.fail("the sandbox was taken"))
    monkeypatch.setattr(tasks_module, "_sandbox_password_file", lambda: pytest.fail("a password was made"))
    with pytest.raises(Exit) as refused:
        tasks_module.bench(Context(), sizes=sizes)
    assert refused.value.code == 2 and str(refused.value.message).startswith("error: --sizes takes host counts")
    assert tasks_module.host_counts(" 1, 4,16") == [1, 4, 16]
