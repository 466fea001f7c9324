"""Helpers for end-to-end tests (imported by conftest and tests)."""

import os
import subprocess
from pathlib import Path

import pytest

from jupyterfab import sandbox

PROJECT = Path(__file__).resolve().parents[2]


def require_sandbox_prerequisites():
    try:
        sandbox.check_prerequisites()
    except sandbox.SandboxError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"end-to-end tests need sandbox hosts: {exc}")


def system_leftovers() -> list[str]:
    """What a teardown may leave, read straight from the system, not from sandbox.py."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {l.split()[0]}" for l in netns.splitlines() if l.startswith(sandbox.NETNS_PREFIX)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(sandbox.VETH_PREFIX) or name == sandbox.BRIDGE:
            left.append(f"link {name}")
    for line in Path("/proc/mounts").read_text().splitlines():
        if str(sandbox.STATE_ROOT) in line.split()[1]:
            left.append(f"mount {line.split()[1]}")
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in ps.splitlines():
        if "systemd-nspawn" in line or "jupyterfab.sandbox supervise" in line or (
                "apt-cacher-ng" in line and str(sandbox.STATE_ROOT) in line):
            left.append(f"process {line.strip()}")
    return left


