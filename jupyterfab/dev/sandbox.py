"""Sandbox hosts: complete Debian systems booted on this machine, for tests and demos.

Each host is a debootstrap image (cached, shared read-only) under a per-host
overlay, booted by ``systemd-nspawn`` with systemd as PID 1, in its own network
namespace joined to a bridge on the controller by a veth pair. The hosts have no
internet: apt goes through an apt-cacher-ng on the bridge address (the same
``apt_proxy`` option users with private mirrors set), Python packages come from
an uploaded wheelhouse.

Nothing here is remembered only in memory: ``down`` (and ``up`` after a crash)
finds what to remove by looking (namespaces, links, mounts, processes named with
this module's prefixes), so a crash never leaves state that cannot be cleaned.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jupyterfab import PROJECT
from jupyterfab.engine.errors import ConfigError, HostError

STATE_ROOT = Path(os.environ.get("JUPYTERFAB_SANDBOX_ROOT", "/var/lib/jupyterfab/sandbox"))
IMAGE_CACHE = Path(os.environ.get("JUPYTERFAB_IMAGE_CACHE", "/var/cache/jupyterfab/images"))
APT_CACHE = Path(os.environ.get("JUPYTERFAB_APT_CACHE", "/var/cache/jupyterfab/apt-cacher-ng"))

DEFAULT_SUBNET = "198.18.0.0/24"   # RFC 2544 benchmarking range: never routed on the internet
DEFAULT_RELEASE = "bookworm"
RELEASES = ("bookworm", "trixie")
APT_PROXY_PORT = 3143              # not 3142, so a system apt-cacher-ng can keep its port

# What a fresh cloud server has, and no more: the deploy installs the rest.
IMAGE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3",
                  "sudo", "ca-certificates", "iproute2")
# Bump when the way an image is built changes, so cached images are rebuilt.
IMAGE_RECIPE = "3"

NETNS_PREFIX = "jf-"
VETH_PREFIX = "jfv-"
BRIDGE = "jfbr0"
HOST_PREFIX = "sandbox"
# The benchmark's hosts: names and an address range of their own, beside (never instead
# of) the sandbox hosts a user keeps, on the same bridge and apt proxy.
BENCH_PREFIX = "bench"
BENCH_SUBNET = "198.18.1.0/24"

BOOT_TIMEOUT = 90.0


class SandboxError(HostError):
    """A problem the user can act on; the message says how."""


# --------------------------------------------------------------------------- helpers

def _run(*args: str, check: bool = True, input: str | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise SandboxError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def check_prerequisites() -> None:
    """Root, and the tools the sandbox needs, with the install line when missing."""
    if os.geteuid() != 0:
        raise SandboxError("sandbox hosts need root (network namespaces, mounts, "
                           "systemd-nspawn): run it again with sudo")
    needs = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
             "ip": "iproute2", "ssh-keygen": "openssh-client",
             "apt-cacher-ng": "apt-cacher-ng"}
    missing = sorted({pkg for tool, pkg in needs.items() if not _which(tool)})
    if missing:
        raise SandboxError("missing tools for sandbox hosts; install them with:\n"
                           f"  apt-get install -y {' '.join(missing)}")


def _which(tool: str) -> str | None:
    """Where ``tool`` is, in the sbin folders too (a user's PATH may lack them); every
    caller runs after check_prerequisites found it."""
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


# --------------------------------------------------------------------------- mirror

def parse_apt_sources(texts: dict[str, str]) -> list[str]:
    """Debian archive URIs from sources.list / deb822 .sources texts (pure).

    Security and updates archives are left out: debootstrap needs the main one.
    """
    uris: list[str] = []
    for name, text in texts.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                pairs = (line.partition(":") for line in stanza.splitlines()
                         if ":" in line and not line.startswith("#"))
                fields = {key.strip().lower(): value.strip() for key, _, value in pairs}
                security = any(s.endswith("-security") for s in fields.get("suites", "").split())
                if "deb" in fields.get("types", "").split() and not security:
                    uris.extend(fields.get("uris", "").split())
        else:
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    rest = [w for w in words[1:] if not w.startswith("[")]
                    if len(rest) >= 2 and not rest[1].endswith("-security"):
                        uris.append(rest[0])
    return [u.rstrip("/") for u in uris if "security" not in u]


def detect_mirror() -> str:
    """The Debian mirror this machine's apt already uses (it is known to be reachable)."""
    override = os.environ.get("JUPYTERFAB_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    texts = {}
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") and path.is_file():
            texts[path.name] = path.read_text(errors="replace")
    uris = parse_apt_sources(texts)
    debian = [u for u in uris if re.search(r"/debian$", u)] or uris
    if not debian:
        raise SandboxError("no Debian mirror found in /etc/apt/sources.list(.d); "
                           "set JUPYTERFAB_DEBIAN_MIRROR=http://your.mirror/debian")
    return debian[0]


# --------------------------------------------------------------------------- image

def image_key(release: str, packages: tuple[str, ...], mirror: str) -> str:
    text = "\n".join([IMAGE_RECIPE, release, mirror, *sorted(packages)])
    return f"{release}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def check_release(release: str) -> None:
    if release not in RELEASES:
        raise ConfigError(f"--release takes {' or '.join(RELEASES)}, not {release!r}")


def ensure_image(release: str = DEFAULT_RELEASE, packages: tuple[str, ...] = IMAGE_PACKAGES) -> Path:
    """The cached root filesystem for ``release``, built by debootstrap when missing."""
    check_release(release)
    mirror = detect_mirror()
    key = image_key(release, packages, mirror)
    image = IMAGE_CACHE / key / "rootfs"
    if (IMAGE_CACHE / key / "complete").exists():
        return image
    building = IMAGE_CACHE / f".{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    _log(f"building the {release} image with debootstrap from {mirror} (about a minute)")
    started = time.monotonic()
    proc = subprocess.run(
        [_which("debootstrap"), "--variant=minbase", f"--include={','.join(packages)}",
         release, str(building / "rootfs"), mirror],
        capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        shutil.rmtree(building, ignore_errors=True)
        raise SandboxError(f"debootstrap failed for {release} from {mirror}:\n{tail}")
    _prepare_image(building / "rootfs")
    (building / "complete").write_text(json.dumps(
        {"release": release, "mirror": mirror, "packages": sorted(packages),
         "seconds": round(time.monotonic() - started, 1)}))
    shutil.rmtree(IMAGE_CACHE / key, ignore_errors=True)
    building.rename(IMAGE_CACHE / key)
    _log(f"image {key} built in {time.monotonic() - started:.0f} s")
    return image


def _prepare_image(root: Path) -> None:
    """Make the image a template: every host gets its own keys and identity."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    # No DNS of the machine's: each host asks the bridge (resolv_conf).
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    # A container has no consoles to spawn gettys on; masking keeps boot quiet.
    getty = root / "etc/systemd/system/console-getty.service"
    getty.unlink(missing_ok=True)
    getty.symlink_to("/dev/null")
    # sshd: fast logins (no reverse DNS) and key-only root login.
    dropin = root / "etc/ssh/sshd_config.d/jupyterfab-sandbox.conf"
    dropin.write_text("UseDNS no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n")
    # Recorded so a host can tell it is a sandbox image.
    (root / "etc/jupyterfab-sandbox").write_text("sandbox image\n")


# --------------------------------------------------------------------------- network

@dataclass(frozen=True)
class Network:
    subnet: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> Network:
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            raise ConfigError(f"subnet {text!r} is not a valid IPv4 network: {exc}") from None
        if net.num_addresses < 16:
            raise ConfigError(f"subnet {text} is too small: use a /28 or larger")
        return cls(net)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    def host_address(self, index: int) -> ipaddress.IPv4Address:
        address = self.subnet.network_address + 10 + index
        if address not in self.subnet or address == self.subnet.broadcast_address:
            raise SandboxError(f"subnet {self.subnet} has no room for host #{index}")
        return address


def addresses_in_use() -> list[tuple[str, ipaddress.IPv4Interface]]:
    return [(link["ifname"], ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
            for link in json.loads(_run("ip", "-j", "-4", "addr", "show").stdout or "[]")
            for info in link.get("addr_info", [])]


def check_subnet_free(network: Network) -> None:
    for ifname, iface in addresses_in_use():
        if ifname != BRIDGE and iface.network.overlaps(network.subnet):
            raise SandboxError(
                f"address range {network.subnet} is already in use on this machine "
                f"({ifname} has {iface}); choose another with --subnet (e.g. 198.19.0.0/24)")


def _ensure_bridge(network: Network) -> None:
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    gateway = f"{network.gateway}/{network.subnet.prefixlen}"
    present = _run("ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout
    if gateway not in present:
        _run("ip", "addr", "add", gateway, "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _ensure_host_network(name: str, address: ipaddress.IPv4Address, network: Network) -> None:
    netns = NETNS_PREFIX + name
    veth = VETH_PREFIX + name
    if len(veth) > 15:
        raise SandboxError(f"host name {name!r} is too long for a network interface name")
    _run("ip", "netns", "add", netns)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "host0", "netns", netns)
    _run("ip", "link", "set", veth, "master", BRIDGE, "up")
    _run("ip", "-n", netns, "link", "set", "lo", "up")
    _run("ip", "-n", netns, "addr", "add", f"{address}/{network.subnet.prefixlen}", "dev", "host0")
    _run("ip", "-n", netns, "link", "set", "host0", "up")
    _run("ip", "-n", netns, "route", "add", "default", "via", str(network.gateway))


# --------------------------------------------------------------------------- apt proxy

def _apt_proxy_url() -> str | None:
    """The running apt proxy's URL (other hosts on the bridge use it), or None."""
    pid = _read_pid(STATE_ROOT / "apt-cacher-ng.pid")
    if pid is None or not _alive(pid):
        return None
    try:
        address = (STATE_ROOT / "apt-cacher-ng.address").read_text().strip()
    except OSError:     # started before the address was recorded: on the default range
        address = str(Network.parse(DEFAULT_SUBNET).gateway)
    return f"http://{address}:{APT_PROXY_PORT}"


def _start_apt_proxy(network: Network) -> str:
    """apt-cacher-ng on the bridge address, with its Debian backend set to the mirror
    apt already uses (its built-in mirror list is not reachable from everywhere); the
    one already running when there is one (hosts of another range reach it through
    the bridge, which has an address in each range)."""
    running = _apt_proxy_url()
    if running:
        return running
    confdir = STATE_ROOT / "apt-cacher-ng"
    shutil.rmtree(confdir, ignore_errors=True)
    shutil.copytree("/etc/apt-cacher-ng", confdir)
    mirror = detect_mirror()
    (confdir / "backends_debian").write_text(mirror + "/\n")
    for folder in (APT_CACHE, STATE_ROOT / "apt-cacher-ng-log"):
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(LookupError, PermissionError):
            shutil.chown(folder, "apt-cacher-ng", "apt-cacher-ng")
    pidfile = STATE_ROOT / "apt-cacher-ng.pid"
    _run(_which("apt-cacher-ng"), "-c", str(confdir), "ForeGround=0",
         f"BindAddress={network.gateway}", f"Port={APT_PROXY_PORT}",
         f"CacheDir={APT_CACHE}", f"LogDir={STATE_ROOT / 'apt-cacher-ng-log'}",
         f"PidFile={pidfile}", f"SocketPath={STATE_ROOT / 'apt-cacher-ng.socket'}",
         "ExThreshold=365")
    _wait_port(str(network.gateway), APT_PROXY_PORT, 15.0, "apt-cacher-ng")
    (STATE_ROOT / "apt-cacher-ng.address").write_text(f"{network.gateway}\n")
    return f"http://{network.gateway}:{APT_PROXY_PORT}"


def _wait_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SandboxError(f"{what} did not listen on {host}:{port} "
                                   f"within {timeout:.0f} s: {exc}") from None
            time.sleep(0.1)


# --------------------------------------------------------------------------- hosts

@dataclass
class SandboxHost:
    name: str
    address: str
    dir: Path


def host_dir(name: str) -> Path:
    return STATE_ROOT / "hosts" / name


# A host's writable layer (the overlay's upper and work directories) is a tmpfs of its
# own, not a directory on this machine's disk. On ext4 without a journal (this project's
# development machine) every file created walks the inodes freed in the last minute,
# and a host's teardown frees tens of thousands: the next host unpacked its environments
# 4x slower (perf: 60-70 % of tar's time in recently_deleted/find_inode_bit). A tmpfs
# is fresh at every boot and its teardown is an unmount, which frees no disk inodes.
# It keeps its files across the host's reboots (nspawn exits and starts again on the
# same mounts) and is gone with the host.
LAYER_ENV = "JUPYTERFAB_SANDBOX_LAYER"   # "disk": the writable layers on disk, as before
LAYER_TYPICAL = 768 << 20   # a deployed host wrote 573 MB (server and kernel envs, apt)
LAYER_MAX = 4 << 30         # room for an upgrade's second environment beside the first
MEMORY_RESERVE = 2 << 30    # left for the controller and the hosts' own processes


def check_layer_setting(setting: str) -> str:
    """``$JUPYTERFAB_SANDBOX_LAYER``'s value, refused in one line unless "" or "disk" (pure)."""
    if setting not in ("", "disk"):
        raise SandboxError(f"${LAYER_ENV} is {setting!r}: set it to disk (the hosts' writable "
                           "layers on disk) or leave it unset (on tmpfs when memory allows)")
    return setting


def layer_size(hosts: int, mem_available: int, setting: str = "") -> int | None:
    """Bytes of tmpfs for each of ``hosts`` new hosts' writable layers, with
    ``mem_available`` bytes of memory available; None puts them on disk: when
    ``setting`` (``$JUPYTERFAB_SANDBOX_LAYER``) says ``disk``, or when each host's
    typical layer would not leave MEMORY_RESERVE. A tmpfs holds only what is written
    to it; its size is a ceiling, so one runaway host cannot take the machine's memory
    (pure)."""
    if check_layer_setting(setting) == "disk" or hosts * LAYER_TYPICAL + MEMORY_RESERVE > mem_available:
        return None
    return min(LAYER_MAX, mem_available - MEMORY_RESERVE)


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _prepare_host_root(name: str, image: Path, controller_pubkey: str,
                       layer_bytes: int | None = None, nameserver: str = "") -> Path:
    """Overlay the shared image with the host's own writable layer and identity; the
    layer on a tmpfs of ``layer_bytes`` (see LAYER_ENV), or on disk when None.
    ``nameserver``: the host's DNS, on the bridge (see ``resolv_conf``)."""
    hdir = host_dir(name)
    shutil.rmtree(hdir, ignore_errors=True)
    layer, root = hdir / "layer", hdir / "root"
    for folder in (layer, root):
        folder.mkdir(parents=True)
    if layer_bytes:
        _run("mount", "-t", "tmpfs", "-o", f"size={layer_bytes},mode=0755",
             f"jupyterfab-{name}", str(layer))
    for sub in ("upper", "work"):
        (layer / sub).mkdir()
    options = f"lowerdir={image},upperdir={layer / 'upper'},workdir={layer / 'work'}"
    if layer_bytes:
        # The image and the layer are different filesystems: without xino a file reports
        # its layer's device, not the overlay's, so os.path.ismount() calls every new file
        # a mount point (and send2trash, which Jupyter deletes with, refuses it).
        options += ",xino=on"
    try:
        _run("mount", "-t", "overlay", "overlay", "-o", options, str(root))
    except SandboxError:
        # Some filesystems can't be an overlay's upper layer; a full copy always works,
        # and then the tmpfs meant for the layer holds nothing.
        _log(f"{name}: overlay mount failed, copying the image instead")
        if layer_bytes:
            _run("umount", str(layer))
        root.rmdir()
        _run("cp", "-a", "--reflink=auto", str(image), str(root))
    (root / "etc/hostname").write_text(name + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n::1 localhost\n")
    (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
    if nameserver:
        (root / "etc/resolv.conf").write_text(resolv_conf(nameserver))
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(controller_pubkey)
    os.chmod(ssh / "authorized_keys", 0o600)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}",
         "-f", str(root / "etc/ssh/ssh_host_ed25519_key"))
    init = root / SANDBOX_INIT.lstrip("/")
    init.write_text(SANDBOX_INIT_SCRIPT)
    init.chmod(0o755)
    return root


def resolv_conf(nameserver: str) -> str:
    """The hosts ask the bridge for names: nothing answers there (a quick "refused")
    unless the ACME tests or the demo run Pebble's DNS, which answers the names they add
    (``Pebble.add_a``) to the hosts as to the CA, as public DNS would."""
    return f"nameserver {nameserver}\noptions timeout:1 attempts:1\n"


def _start_host(name: str) -> None:
    """Boot the host under a small supervisor that turns nspawn's reboot exit into a boot."""
    hdir = host_dir(name)
    log = open(hdir / "console.log", "ab")
    # The supervisor forks away from this process (see __main__), so it is never a
    # child we would leave as a zombie; it writes its own pid file.
    subprocess.run(
        [sys.executable, "-m", "jupyterfab.dev.sandbox", "supervise", name],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, check=True,
        cwd="/", env={**os.environ, "PYTHONPATH": str(PROJECT)})


def nspawn_command(name: str) -> list[str]:
    hdir = host_dir(name)
    # Not --boot: PID 1 is SANDBOX_INIT, which hands over to systemd (see there).
    return [_which("systemd-nspawn"), "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{NETNS_PREFIX}{name}",
            f"--directory={hdir / 'root'}", f"--machine={name}",
            "--console=read-only", "--resolv-conf=off", "--timezone=off",
            "--kill-signal=SIGRTMIN+3", SANDBOX_INIT]


CGROUP_PREFIX = "jupyterfab-sandbox-"


# cgroup v1 controllers a host's service limits need (MemoryMax=, TasksMax=):
# each host gets its own group in them too, made writable inside (SANDBOX_INIT).
LIMIT_CONTROLLERS = ("memory", "pids")


def cgroup_mounts(mountinfo: str) -> list[Path]:
    """The cgroup hierarchies a container's systemd writes to: cgroup2, name=systemd,
    and (cgroup v1) the memory and pids controllers (pure)."""
    found = []
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if not post_fields:
            continue
        fstype, options = post_fields[0], post_fields[-1].split(",")
        if fstype == "cgroup2" or (fstype == "cgroup" and (
                "name=systemd" in options or any(c in options for c in LIMIT_CONTROLLERS))):
            found.append(Path(fields[4]))
    return found


# nspawn (without user namespaces) mounts cgroup v1 controller hierarchies read-only
# in a container, and systemd decides once, when it starts as PID 1, which v1
# controllers it may use: only those whose hierarchy it can write
# (controller_is_v1_accessible checks cgroup.procs for W_OK). A remount after that
# (a unit early in boot) comes too late: the units never get a memory cgroup and
# MemoryMax= holds nothing. So the container's PID 1 is this script: it makes the
# memory and pids hierarchies writable, then execs systemd, which then enforces
# its services' MemoryMax=/TasksMax= as on a real machine, in the host's own group
# (its cgroup namespace's root, see _own_cgroup). On cgroup v2 there is nothing to
# remount: nspawn delegates the container's subtree writable.
SANDBOX_INIT = "/usr/local/sbin/jupyterfab-sandbox-init"
SANDBOX_INIT_SCRIPT = """#!/bin/sh
# jupyterfab sandbox host: PID 1 until systemd takes over (jupyterfab/dev/sandbox.py).
for c in {}; do
    [ -d /sys/fs/cgroup/$c ] && mount -o remount,bind,rw /sys/fs/cgroup/$c
done
exec /lib/systemd/systemd "$@"
""".format(" ".join(LIMIT_CONTROLLERS))


def _own_cgroup(name: str) -> None:
    """Move this process into a cgroup of the host's own, in every hierarchy systemd uses.

    Without a system manager to give each nspawn a unit, every container would
    share one ``payload`` cgroup and their systemds would trip over each other
    (units failing with 219/CGROUP while several hosts boot).
    """
    for mount in cgroup_mounts(Path("/proc/self/mountinfo").read_text()):
        group = mount / (CGROUP_PREFIX + name)
        if (mount / "cgroup.subtree_control").exists():
            # cgroup v2: hand the limit controllers down, where the machine has them
            for controller in LIMIT_CONTROLLERS:
                with contextlib.suppress(OSError):
                    (mount / "cgroup.subtree_control").write_text(f"+{controller}")
        group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))


def _our_cgroups(names: list[str] | None = None) -> list[Path]:
    """The hosts' cgroups, deepest first: every host's, or those of ``names``."""
    groups = []
    for mount in cgroup_mounts(Path("/proc/self/mountinfo").read_text()):
        tops = (mount.glob(CGROUP_PREFIX + "*") if names is None
                else [mount / (CGROUP_PREFIX + n) for n in names])
        for top in tops:    # os.walk of a missing folder yields nothing
            groups += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(groups, key=lambda p: len(p.parts), reverse=True)


# nspawn exits with 133 when the container asked for a reboot.
REBOOT_EXIT = 133


def supervise(name: str) -> int:
    """Run one host's nspawn until it powers off or is told to stop."""
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)   # nspawn asks the container's systemd to power off

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _own_cgroup(name)
    while not stopping:
        child = subprocess.Popen(nspawn_command(name), stdin=subprocess.DEVNULL)
        (host_dir(name) / "nspawn.pid").write_text(str(child.pid))
        rc = child.wait()   # the signal handler returns: the wait goes on (PEP 475)
        print(f"[supervisor] nspawn exited with {rc}", flush=True)
        if rc != REBOOT_EXIT:
            break
        print("[supervisor] container asked for a reboot: booting again", flush=True)
    return 0


# --------------------------------------------------------------------------- keys, ssh

def workdir_for(project_dir: Path) -> Path:
    """Where ``up`` writes the ssh_config, inventory and controller key for users."""
    return project_dir / ".sandbox"


def _controller_key(out: Path) -> tuple[Path, str]:
    key = out / "id_ed25519"
    if not key.exists():
        out.mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jupyterfab-sandbox", "-f", str(key))
    return key, (out / "id_ed25519.pub").read_text()


def _host_pubkey(name: str) -> str:
    return " ".join((host_dir(name) / "root/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])


def write_client_files(out: Path, hosts: list[SandboxHost], key: Path, apt_proxy: str) -> None:
    known = "".join(f"{h.address} {_host_pubkey(h.name)}\n" for h in hosts)
    (out / "known_hosts").write_text(known)
    blocks = [f"Host {h.name}\n  HostName {h.address}\n  User root\n  IdentityFile {key}\n"
              f"  IdentitiesOnly yes\n  UserKnownHostsFile {out / 'known_hosts'}\n"
              f"  StrictHostKeyChecking yes\n  ConnectTimeout 5\n" for h in hosts]
    (out / "ssh_config").write_text("# Written by `./run sandbox.up`; removed with the hosts.\n\n"
                                    + "\n".join(blocks))
    lines = [
        "# Sandbox hosts, written by `./run sandbox.up` in the same format as hosts.yaml;",
        "# removed with the hosts. While they run, fab and ./run tasks read it by default",
        "# for the hosts it names (or give --inventory .sandbox/hosts.yaml).",
        "defaults:",
        "  user: root",
        f"  key: {key}",
        f"  known_hosts: {out / 'known_hosts'}",
        "  vars:",
        f"    apt_proxy: {apt_proxy}",
        "    wheelhouse: build          # no internet here: wheels come from the controller",
        "    # The sandbox's own bridge: nobody else can reach these hosts, so plain HTTP is",
        "    # allowed here (the demo and tests/e2e/test_acme_pebble.py show HTTPS through Pebble).",
        "    allow_plain_http: true",
        "hosts:",
    ]
    for h in hosts:
        lines += [f"  {h.name}:", f"    address: {h.address}", "    groups: [sandbox]"]
    (out / "hosts.yaml").write_text("\n".join(lines) + "\n")
    give_back(out)


def give_back(out: Path) -> None:
    """The files in ``out`` (.sandbox) belong to whoever owns the folder it is in (the
    project), not to root: after ``sudo ./run demo`` its user reads them all, the
    password (0600) too."""
    owner = out.parent.stat()
    for f in out.iterdir():
        if f.stat().st_uid != owner.st_uid or f.stat().st_gid != owner.st_gid:
            shutil.chown(f, owner.st_uid, owner.st_gid)


def ssh_command(out: Path, name: str, *remote: str) -> list[str]:
    return ["ssh", "-F", str(out / "ssh_config"), "-o", "BatchMode=yes", name, *remote]


def wait_ready(out: Path, hosts: list[SandboxHost], timeout: float = BOOT_TIMEOUT,
               not_boot_id: dict[str, str] | None = None) -> dict[str, str]:
    """Wait (bounded) until each host accepts the key and systemd says running or degraded.

    Returns each host's boot id. ``not_boot_id`` waits for a new boot, for reboots.
    """
    probe = "systemctl is-system-running; cat /proc/sys/kernel/random/boot_id"
    deadline = time.monotonic() + timeout
    pending = [h.name for h in hosts]
    boot_ids: dict[str, str] = {}
    last: dict[str, str] = {}
    while pending:
        for name in list(pending):
            try:
                proc = subprocess.run(ssh_command(out, name, probe), capture_output=True, text=True,
                                      timeout=15)
            except subprocess.TimeoutExpired:
                last[name] = "ssh timed out"
                continue
            state, boot = (proc.stdout.split() + ["", ""])[:2]
            last[name] = f"ssh rc={proc.returncode}, system {state or 'unknown'}"
            if state in ("running", "degraded") and boot and boot != (not_boot_id or {}).get(name):
                boot_ids[name] = boot
                pending.remove(name)
        if not pending:
            break
        if time.monotonic() > deadline:
            detail = "; ".join(f"{n}: {last.get(n, 'no answer')}" for n in pending)
            raise SandboxError(f"hosts not ready within {timeout:.0f} s ({detail}); "
                               f"console logs are in {STATE_ROOT / 'hosts'}/NAME/console.log")
        time.sleep(0.3)
    return boot_ids


# --------------------------------------------------------------------------- up / down

def list_hosts() -> list[SandboxHost]:
    hosts = []
    for meta in sorted((STATE_ROOT / "hosts").glob("*/host.json")):
        data = json.loads(meta.read_text())
        hosts.append(SandboxHost(data["name"], data["address"], meta.parent))
    return hosts


def is_running(name: str) -> bool:
    pidfile = host_dir(name) / "nspawn.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


LOCK_FILE = Path(os.environ.get("JUPYTERFAB_SANDBOX_LOCK", "/run/lock/jupyterfab-sandbox.lock"))


@contextlib.contextmanager
def exclusive(timeout: float = 3600.0):
    """Hold the machine-wide sandbox lock: the sandbox (bridge, hosts, state dir) is one per
    machine, so two test sessions or demos on one machine take turns instead of tearing
    down each other's hosts."""
    if _held_by_an_ancestor():
        yield       # a command run by the lock's holder (a test session's `./run demo`)
        return
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a+") as handle:
        deadline, holder = time.monotonic() + timeout, ""
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not holder:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    _log(f"waiting for the sandbox, in use by {holder}")
                elif time.monotonic() > deadline:
                    raise SandboxError(f"the sandbox is still in use by {holder} "
                                       f"after {timeout:.0f} s") from None
                time.sleep(1.0)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({' '.join(sys.argv[:3])})\n")
        handle.flush()
        os.environ[LOCK_HOLDER_ENV] = str(os.getpid())     # for the commands it runs
        try:
            yield
        finally:
            os.environ.pop(LOCK_HOLDER_ENV, None)
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


LOCK_HOLDER_ENV = "JUPYTERFAB_SANDBOX_LOCK_HOLDER"


def _held_by_an_ancestor() -> bool:
    """The lock is held by a process this one descends from (named in the environment
    it passed down, and in the lock file): it is already ours to use."""
    holder = os.environ.get(LOCK_HOLDER_ENV, "")
    try:
        recorded = LOCK_FILE.read_text().split()
    except OSError:
        return False
    if not holder.isdigit() or recorded[:2] != ["pid", holder]:
        return False
    pid = os.getppid()
    while pid > 1:
        if pid == int(holder):
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def running_hosts() -> list[SandboxHost]:
    """The sandbox hosts whose container runs now."""
    return [h for h in list_hosts() if is_running(h.name)]


def _has_prefix(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and name[len(prefix):].isdigit()


def refuse_to_destroy(replace: bool) -> None:
    """Stop before anything would destroy running hosts (notebooks included), unless
    ``replace``: the error names them and both ways on."""
    running = running_hosts()
    if running and not replace:
        names = ", ".join(f"{h.name} ({h.address})" for h in running)
        raise SandboxError(
            f"sandbox hosts are running: {names}; this would destroy them and their notebooks: "
            "add --replace to replace them, or run `./run sandbox.down` first")


def up(project_dir: Path, count: int = 1, release: str = DEFAULT_RELEASE,
       subnet: str = DEFAULT_SUBNET, *, replace: bool = False, prefix: str = HOST_PREFIX,
       workdir: Path | None = None) -> list[SandboxHost]:
    """Boot ``count`` fresh hosts, after clearing whatever an earlier run left; refuses
    while hosts run unless ``replace`` (then they are destroyed first).

    With another ``prefix`` (the bench's), the hosts are PREFIX1..N in ``subnet`` with
    their client files in ``workdir``: only earlier hosts of that prefix are replaced,
    every other host keeps running."""
    if count < 1:
        raise SandboxError("--count must be at least 1")
    layer_setting = check_layer_setting(os.environ.get(LAYER_ENV, ""))      # before anything goes
    network = Network.parse(subnet)
    beside = prefix != HOST_PREFIX
    if not beside:
        refuse_to_destroy(replace)
    check_prerequisites()
    if beside:
        destroy_hosts([h.name for h in list_hosts() if _has_prefix(h.name, prefix)])
        if [h for h in list_hosts() if not _has_prefix(h.name, prefix)
                and ipaddress.IPv4Address(h.address) in network.subnet]:
            raise SandboxError(f"address range {network.subnet} is used by other sandbox hosts")
    else:
        down(quiet=True, project_dir=project_dir)
    check_subnet_free(network)
    image = ensure_image(release)
    out = workdir or workdir_for(project_dir)
    out.mkdir(parents=True, exist_ok=True)
    key, pubkey = _controller_key(out)
    started = time.monotonic()
    _ensure_bridge(network)
    apt_proxy = _start_apt_proxy(network)
    hosts = []
    layer_bytes = layer_size(count, _mem_available(), layer_setting)
    for i in range(1, count + 1):
        name = f"{prefix}{i}"
        address = network.host_address(i)
        _prepare_host_root(name, image, pubkey, layer_bytes, nameserver=str(network.gateway))
        _ensure_host_network(name, address, network)
        host = SandboxHost(name, str(address), host_dir(name))
        (host.dir / "host.json").write_text(json.dumps(
            {"name": name, "address": str(address), "release": release, "image": str(image)}))
        hosts.append(host)
    write_client_files(out, hosts, key, apt_proxy)
    for host in hosts:
        _start_host(host.name)
    wait_ready(out, hosts)
    _log(f"{count} host(s) up in {time.monotonic() - started:.1f} s: "
         + ", ".join(f"{h.name}={h.address}" for h in hosts))
    return hosts


def bridge_address(subnet: str = DEFAULT_SUBNET) -> str:
    """The controller's address on the bridge: where the hosts reach services run here
    (apt-cacher-ng, and for ACME tests and the demo, Pebble)."""
    return str(Network.parse(subnet).gateway)


# An address inside Cloudflare's published 173.245.48.0/20: put on the bridge, it lets
# this machine play Cloudflare's edge towards the hosts (demo and tests of the lockdown).
EDGE_ADDRESS = "173.245.48.1"


def add_edge_address(address: str = EDGE_ADDRESS) -> str:
    """Give the bridge ``address`` too (gone with the bridge at ``down``)."""
    present = _run("ip", "-o", "addr", "show", "dev", BRIDGE, check=False).stdout
    if f" {address}/" not in present:
        _run("ip", "addr", "add", f"{address}/32", "dev", BRIDGE)
    return address


def reboot(project_dir: Path, name: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Reboot a host from inside (systemctl reboot) and wait for its new boot."""
    out = workdir_for(project_dir)
    host = next((h for h in list_hosts() if h.name == name), None)
    if host is None:
        raise ConfigError(f"no sandbox host named {name!r}; `./run sandbox.list` shows them")
    old = wait_ready(out, [host], timeout=10)
    subprocess.run(ssh_command(out, name, "systemctl reboot"), capture_output=True, timeout=15)
    return wait_ready(out, [host], timeout=timeout, not_boot_id=old)[name]


def _our_processes(names: list[str] | None = None) -> list[int]:
    """Supervisors, nspawns, apt-cacher-ng and anything running inside a host; with
    ``names``, only what belongs to those hosts (``belongs``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue
        if belongs(cmdline, cgroups, names):
            pids.append(int(proc.name))
    return pids


def belongs(cmdline: str, cgroups: str, names: list[str] | None = None) -> bool:
    """A process (its command line, NULs as spaces, and /proc/PID/cgroup) is the
    sandbox's, or with ``names`` one of those hosts': by command line (naming the
    sandbox's directory, or a supervisor) or by cgroup (every process of a host lives
    in that host's own cgroup, even after its nspawn died). Pure."""
    if names is None:
        return str(STATE_ROOT) in cmdline or "jupyterfab.dev.sandbox supervise" in cmdline \
            or CGROUP_PREFIX in cgroups
    return any(f"{host_dir(n)}/" in cmdline or f"jupyterfab.dev.sandbox supervise {n} " in cmdline
               or re.search(rf"/{re.escape(CGROUP_PREFIX + n)}(/|$)", cgroups, re.M) for n in names)


def _our_mounts(under: Path | None = None) -> list[str]:
    """Mount points in the sandbox's directory (or in ``under``), the newest first."""
    return mounts_under(Path("/proc/self/mountinfo").read_text(), under or STATE_ROOT)


def mounts_under(mountinfo: str, under: Path) -> list[str]:
    """The mount points below ``under`` in a mountinfo text, the newest first: a mount
    made on or beside another that it uses (a host's overlay on its layer's tmpfs) goes
    before it; mountinfo lists mounts in the order they were made (pure)."""
    points = [line.split()[4].replace("\\040", " ") for line in mountinfo.splitlines()]
    return [point for point in points if point.startswith(f"{under}/")][::-1]


def leftovers() -> dict[str, list[str]]:
    """Everything the sandbox may have left on this machine; empty lists when clean."""
    netns = [line.split()[0] for line in _run("ip", "netns", "list", check=False).stdout.splitlines()
             if line.startswith(NETNS_PREFIX)]
    links = [link["ifname"] for link in json.loads(_run("ip", "-j", "link", "show").stdout or "[]")
             if link["ifname"].startswith(VETH_PREFIX) or link["ifname"] == BRIDGE]
    return {"processes": [str(p) for p in _our_processes()], "mounts": _our_mounts(),
            "netns": netns, "links": links, "cgroups": [str(g) for g in _our_cgroups()]}


# What ``up`` and the demos write beside the hosts and what only makes sense while they
# run: inventories (hosts.yaml, hosts-cloudflare.yaml, ...), the demo's record, ssh files.
STALE_WITH_HOSTS = ("hosts*.yaml", "demo.json", "ssh_config", "known_hosts")


def forget_client_files(project_dir: Path) -> list[Path]:
    """Remove what pointed at the hosts that are gone: the removed files."""
    out = workdir_for(project_dir)
    removed = sorted(f for pattern in STALE_WITH_HOSTS for f in out.glob(pattern) if f.is_file())
    for f in removed:
        f.unlink()
    return removed


def down(quiet: bool = False, project_dir: Path | None = None) -> None:
    """Stop every sandbox host and remove all it made, found by looking, not remembering;
    with ``project_dir``, also the inventories and ssh files written there for them."""
    if os.geteuid() != 0:
        raise SandboxError("sandbox hosts need root: run it again with sudo")
    if project_dir is not None:
        forget_client_files(project_dir)
    pidfiles = [*(STATE_ROOT / "hosts").glob("*/supervisor.pid"), STATE_ROOT / "apt-cacher-ng.pid"]
    _stop([pid for path in pidfiles if (pid := _read_pid(path)) is not None])
    for point in _our_mounts():
        _run("umount", "-l", point, check=False)
    for netns in leftovers()["netns"]:
        _run("ip", "netns", "delete", netns, check=False)
    for link in leftovers()["links"]:
        _run("ip", "link", "delete", link, check=False)
    _remove_cgroups()
    _remove_host_folders([p.name for p in (STATE_ROOT / "hosts").glob("*")])
    for stale in ("apt-cacher-ng.pid", "apt-cacher-ng.socket", "apt-cacher-ng.address"):
        (STATE_ROOT / stale).unlink(missing_ok=True)
    left = {k: v for k, v in leftovers().items() if v}
    if left:
        raise SandboxError(f"sandbox teardown left things behind: {left}")
    if not quiet:
        _log("all sandbox hosts are down; nothing is left behind")


def destroy_hosts(names: list[str]) -> None:
    """Stop the hosts ``names`` and remove what each made (processes, mounts, network
    namespace and link, cgroups, folder); every other host, the bridge and the apt
    proxy stay as they are."""
    supervisors = [_read_pid(host_dir(name) / "supervisor.pid") for name in names]
    _stop([pid for pid in supervisors if pid is not None], names)
    for name in names:
        for point in _our_mounts(host_dir(name)):
            _run("umount", "-l", point, check=False)
        _run("ip", "netns", "delete", NETNS_PREFIX + name, check=False)
        _run("ip", "link", "delete", VETH_PREFIX + name, check=False)
    _remove_cgroups(names)
    _remove_host_folders(names)
    left = [n for n in names if host_dir(n).exists() or _our_processes([n])]
    if left:
        raise SandboxError(f"sandbox teardown of {', '.join(left)} left things behind")


def _stop(supervisors: list[int], names: list[str] | None = None) -> None:
    """Stop hosts: SIGTERM their ``supervisors`` (each host powers off cleanly) and give
    them 15 s; then SIGKILL whatever is left of the sandbox's processes, or with ``names``
    of those hosts' (hosts whose supervisor crashed, hung shutdowns), and give that 5 s."""
    for pid in supervisors:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in supervisors):
        time.sleep(0.1)
    for pid in _our_processes(names):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _our_processes(names):
        time.sleep(0.1)


def _remove_cgroups(names: list[str] | None = None) -> None:
    """The hosts' cgroups (every host's, or those of ``names``), emptied by ``_stop``."""
    for group in _our_cgroups(names):
        with contextlib.suppress(OSError):
            group.rmdir()


def _remove_host_folders(names: list[str]) -> None:
    for name in names:
        shutil.rmtree(host_dir(name), ignore_errors=True)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / name, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "supervise":
        if os.fork():
            os._exit(0)
        (host_dir(sys.argv[2]) / "supervisor.pid").write_text(str(os.getpid()))
        sys.exit(supervise(sys.argv[2]))
    print("usage: python -m jupyterfab.dev.sandbox supervise NAME (used by sandbox.up)", file=sys.stderr)
    sys.exit(2)
