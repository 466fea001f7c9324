"""The sandbox's pure parts: mirror detection, cgroup discovery, address plan."""

import shutil
from pathlib import Path

import pytest

from jupyterfab.dev import sandbox
from jupyterfab.dev.sandbox import Network, SandboxError
from jupyterfab.engine.errors import ConfigError


def test_mirror_comes_from_deb822_sources_without_security():
    texts = {"debian.sources": (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")}
    assert sandbox.parse_apt_sources(texts) == ["http://mirror.example/debian"]


def test_mirror_comes_from_one_line_sources_list():
    texts = {"sources.list": (
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64] http://ftp.example.org/debian/ bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n")}
    assert sandbox.parse_apt_sources(texts) == ["http://ftp.example.org/debian"]


def test_cgroup_hierarchies_for_hybrid_and_unified_hosts():
    hybrid = (
        "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "32 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "34 25 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    # the memory and pids controllers too: each host enforces its services' limits in its own group
    assert sandbox.cgroup_mounts(hybrid) == [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"),
                                             Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids")]
    unified = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert sandbox.cgroup_mounts(unified) == [Path("/sys/fs/cgroup")]


def test_address_plan():
    net = Network.parse("198.18.0.0/24")
    assert str(net.gateway) == "198.18.0.1"
    assert str(net.host_address(1)) == "198.18.0.11"
    with pytest.raises(SandboxError, match="no room"):
        Network.parse("198.18.0.0/28").host_address(6)
    with pytest.raises(ConfigError, match="not a valid IPv4 network"):
        Network.parse("198.18.0.1/24")


def test_image_key_changes_with_what_goes_in_it():
    a = sandbox.image_key("bookworm", ("systemd", "sudo"), "http://m/debian")
    assert a == sandbox.image_key("bookworm", ("sudo", "systemd"), "http://m/debian")
    assert a != sandbox.image_key("trixie", ("systemd", "sudo"), "http://m/debian")
    assert a != sandbox.image_key("bookworm", ("systemd",), "http://m/debian")


def test_a_hosts_pid_1_makes_the_limit_controllers_writable_before_systemd_starts():
    # systemd picks the v1 controllers it may use once, at start: a later remount is too late
    command = sandbox.nspawn_command("sandbox1")
    assert "--boot" not in command and command[-1] == sandbox.SANDBOX_INIT
    script = sandbox.SANDBOX_INIT_SCRIPT
    assert "for c in memory pids;" in script and "mount -o remount,bind,rw /sys/fs/cgroup/$c" in script
    assert script.rstrip().splitlines()[-1] == 'exec /lib/systemd/systemd "$@"'


def test_a_hosts_writable_layer_is_a_tmpfs_unless_memory_is_short_or_disk_is_asked_for():
    gib = 1 << 30
    # plenty of memory: each host's tmpfs is capped, not sized to what is free
    assert sandbox.layer_size(16, 17 * gib) == sandbox.LAYER_MAX
    assert sandbox.layer_size(1, 5 * gib) == 3 * gib
    # a typical layer for every new host must leave the reserve
    enough = 16 * sandbox.LAYER_TYPICAL + sandbox.MEMORY_RESERVE
    assert sandbox.layer_size(16, enough) is not None
    assert sandbox.layer_size(16, enough - 1) is None
    assert sandbox.layer_size(1, 2 * gib) is None
    assert sandbox.layer_size(1, 17 * gib, "disk") is None
    # a typo is refused in one line, not taken as the default
    with pytest.raises(sandbox.SandboxError, match=r"^\$JUPYTERFAB_SANDBOX_LAYER is 'dsk': set it to disk"):
        sandbox.layer_size(1, 17 * gib, "dsk")


def test_teardown_unmounts_a_hosts_overlay_before_the_tmpfs_under_it():
    root = "/var/lib/jupyterfab/sandbox"
    mountinfo = "\n".join([
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        f"90 22 0:50 / {root}/hosts/bench1/layer rw,relatime shared:40 - tmpfs jupyterfab-bench1 rw",
        f"91 22 0:51 / {root}/hosts/bench1/root rw,relatime shared:41 - overlay overlay rw",
        f"92 22 0:52 / {root}/hosts/bench10/layer rw,relatime shared:42 - tmpfs jupyterfab-bench10 rw",
        f"93 22 0:53 / {root}/hosts/bench10/root rw,relatime shared:43 - overlay overlay rw",
        "94 22 0:54 / /var/lib/other\\040dir rw - tmpfs x rw",
    ])
    assert sandbox.mounts_under(mountinfo, Path(f"{root}/hosts/bench1")) == [
        f"{root}/hosts/bench1/root", f"{root}/hosts/bench1/layer"]
    assert sandbox.mounts_under(mountinfo, Path(root)) == [
        f"{root}/hosts/bench10/root", f"{root}/hosts/bench10/layer",
        f"{root}/hosts/bench1/root", f"{root}/hosts/bench1/layer"]


def test_a_mistyped_layer_setting_is_refused_before_any_host_goes(monkeypatch, tmp_path):
    monkeypatch.setenv(sandbox.LAYER_ENV, "tmfs")

    def tripwire(*args, **kwargs):
        raise AssertionError("the sandbox was touched")
    for name in ("refuse_to_destroy", "check_prerequisites", "down", "destroy_hosts", "ensure_image"):
        monkeypatch.setattr(sandbox, name, tripwire)
    with pytest.raises(sandbox.SandboxError, match="JUPYTERFAB_SANDBOX_LAYER is 'tmfs'"):
        sandbox.up(tmp_path, count=1)


def test_a_host_whose_overlay_fails_gets_a_copy_and_no_idle_tmpfs(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "STATE_ROOT", tmp_path / "state")
    image = tmp_path / "image"
    for folder in ("etc/ssh", "root", "usr/local/sbin"):
        (image / folder).mkdir(parents=True)
    mounted, ran = set(), []

    def run(*args, **kwargs):
        ran.append(args[0])
        if args[0] == "mount":
            if "overlay" in args:
                raise sandbox.SandboxError("`mount -t overlay` failed (32): wrong fs type")
            mounted.add(args[-1])
        elif args[0] == "umount":
            mounted.discard(args[-1])
        elif args[0] == "cp":
            shutil.copytree(args[-2], args[-1], symlinks=True)
    monkeypatch.setattr(sandbox, "_run", run)
    root = sandbox._prepare_host_root("sandbox1", image, "ssh-ed25519 AAAA test", layer_bytes=1 << 30)
    assert (root / "etc/hostname").read_text() == "sandbox1\n" and "cp" in ran
    assert mounted == set()             # the layer's tmpfs went with the overlay
