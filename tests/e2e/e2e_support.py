"""Helpers for end-to-end tests (imported by conftest and tests)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyterfab import sandbox

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_tool(tool: str, *args: str, env: dict | None = None, check: bool = True,
             timeout: float = 900) -> subprocess.CompletedProcess:
    """The project's own command (`fab`, `invoke`) as a user runs it: from the venv, in
    the project, with a clean environment and no terminal. ``proc.seconds`` is its wall time."""
    command = [str(BIN / tool), *args]
    environment = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", **(env or {})}
    started = time.monotonic()
    proc = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, env=environment,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    proc.seconds = time.monotonic() - started
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def secret_file(folder: Path, text: str, name: str = "password") -> Path:
    """``text`` in a 0600 file, as the tasks demand of password and token files."""
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def require_sandbox_prerequisites():
    try:
        sandbox.check_prerequisites()
    except sandbox.SandboxError as exc:
        # an error under CI: tests/conftest.py
        pytest.skip(f"end-to-end tests need sandbox hosts: {exc}")


def system_leftovers() -> list[str]:
    """What a teardown may leave, read straight from the system, not from sandbox.py."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {n.split()[0]}" for n in netns.splitlines() if n.startswith(sandbox.NETNS_PREFIX)]
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


