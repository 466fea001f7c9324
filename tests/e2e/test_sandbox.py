"""Sandbox hosts are real Debian systems: systemd as PID 1, sshd, their own network."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from e2e_support import PROJECT, system_leftovers

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_hosts(sandbox_factory):
    inv = sandbox_factory(2)
    return [inv.hosts[name] for name in sorted(inv.hosts)]


def test_two_hosts_boot_with_systemd_as_pid1_and_answer_over_fabric(two_hosts):
    seen = set()
    for host in two_hosts:
        runner = open_runner(host)
        r = runner.run("cat /proc/1/comm; systemctl is-system-running; hostname; "
                       "cat /etc/machine-id; ip -4 -o addr show dev host0")
        comm, state, hostname, machine_id, addr = r.stdout.splitlines()
        assert comm == "systemd"
        assert state == "running"
        assert hostname == host.name
        assert host.address + "/" in addr
        seen.add(machine_id)
        runner.close()
    assert len(seen) == 2, "every host has its own machine id"


def test_each_host_has_its_own_ssh_host_key(two_hosts):
    known = (sandbox.workdir_for(PROJECT) / "known_hosts").read_text().splitlines()
    keys = {line.split()[2] for line in known}
    assert len(known) == 2 and len(keys) == 2


def layer_mount(name: str) -> tuple[str, str] | None:
    """(filesystem type, source) of the host's writable layer's own mount, from findmnt."""
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--mountpoint",
                          str(sandbox.host_dir(name) / "layer")], capture_output=True, text=True).stdout
    return tuple(out.split()) if out.strip() else None


def test_each_hosts_writable_layer_is_a_tmpfs_of_its_own(two_hosts):
    for host in two_hosts:
        assert layer_mount(host.name) == ("tmpfs", f"jupyterfab-{host.name}")
    runner = open_runner(two_hosts[0])
    runner.run("echo on-the-layer > /root/layer-marker")
    upper = sandbox.host_dir(two_hosts[0].name) / "layer/upper/root/layer-marker"
    assert upper.read_text() == "on-the-layer\n"
    assert not (sandbox.host_dir(two_hosts[1].name) / "layer/upper/root/layer-marker").exists()
    # one filesystem, as on a real server: a new file is no mount point of its own (with
    # the layer's device showing through, JupyterLab could not delete a notebook: send2trash
    # looked for a trash folder inside the file)
    assert runner.run("python3 -c 'import os; print(os.path.ismount(\"/root/layer-marker\"), "
                      "os.lstat(\"/root/layer-marker\").st_dev == os.lstat(\"/root\").st_dev)'"
                      ).stdout.split() == ["False", "True"]


def test_a_rebooted_host_comes_back_with_its_files(two_hosts):
    host = two_hosts[1]
    runner = open_runner(host)
    boot_before = runner.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
    runner.run("echo kept-across-reboot > /root/marker && sync")
    runner.close()

    new_boot = sandbox.reboot(PROJECT, host.name)

    runner = open_runner(host)
    r = runner.run("cat /root/marker; cat /proc/sys/kernel/random/boot_id; "
                   "systemctl is-system-running; cat /proc/1/comm")
    marker, boot_after, state, comm = r.stdout.split()
    assert marker == "kept-across-reboot"
    assert layer_mount(host.name) == ("tmpfs", f"jupyterfab-{host.name}")   # the same layer
    assert boot_after == new_boot != boot_before
    assert state in ("running", "degraded") and comm == "systemd"
    # the other host was not disturbed
    other = open_runner(two_hosts[0])
    assert other.run("test -e /root/marker").rc == 1
    assert other.run("systemctl is-system-running").stdout.strip() == "running"


def test_destroying_a_host_unmounts_its_layer_and_leaves_the_other_running(two_hosts):
    gone, kept = two_hosts[1], two_hosts[0]
    sandbox.destroy_hosts([gone.name])
    mounts = Path("/proc/mounts").read_text()
    assert f"{sandbox.host_dir(gone.name)}/" not in mounts and not sandbox.host_dir(gone.name).exists()
    assert layer_mount(kept.name) == ("tmpfs", f"jupyterfab-{kept.name}")
    assert open_runner(kept).run("cat /root/layer-marker").stdout == "on-the-layer\n"


def test_down_leaves_nothing_behind(two_hosts):
    sandbox.down()
    assert system_leftovers() == []
    assert not list((sandbox.STATE_ROOT / "hosts").glob("*"))


def test_up_after_a_crash_cleans_up_first(sandbox_factory):
    inv = sandbox_factory(1)
    # A crash: the supervisor and nspawn die without any cleanup.
    for name in inv.hosts:
        for pidfile in ("supervisor.pid", "nspawn.pid"):
            os.kill(int((sandbox.host_dir(name) / pidfile).read_text()), signal.SIGKILL)
    time.sleep(0.5)
    assert system_leftovers(), "a crash leaves namespaces and mounts behind"
    inv = sandbox_factory(1)
    [host] = inv.hosts.values()
    assert open_runner(host).run("systemctl is-system-running").stdout.strip() == "running"


def test_subnet_in_use_is_refused_with_a_clear_message(sandbox_factory):
    sandbox_factory(1)   # our own bridge holds 198.18.0.0/24 now
    sandbox.down()
    subprocess.run(["ip", "link", "add", "jftestdummy", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "198.18.0.5/24", "dev", "jftestdummy"], check=True)
        with pytest.raises(sandbox.SandboxError, match=r"198\.18\.0\.0/24 is already in use.*jftestdummy"):
            sandbox.up(PROJECT, count=1, replace=True)
    finally:
        subprocess.run(["ip", "link", "delete", "jftestdummy"])
