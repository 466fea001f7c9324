"""The other supported release: a Debian 13 (trixie) sandbox host takes the same deploy.

Its Python (3.13) differs from this machine's, so the host builds its own
environment from a wheelhouse made for 3.13: the other install path."""

import subprocess
import sys
from pathlib import Path

import pytest

from e2e_support import PROJECT
from jupyterfab import sandbox
from jupyterfab.runner import open_runner

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def test_trixie_host_boots_deploys_and_verifies(sandbox_factory, tmp_path):
    inv = sandbox_factory(1, release="trixie")
    [host] = inv.hosts.values()
    r = open_runner(host).run("cat /etc/debian_version; systemctl is-system-running; python3 -V")
    version, state, python = r.stdout.splitlines()
    assert version.startswith("13") and state == "running" and python.startswith("Python 3.13")

    secret = tmp_path / "password"
    secret.write_text("trixie-password-1\n")
    secret.chmod(0o600)
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    deploy = subprocess.run([str(BIN / "fab"), "-H", host.name, "deploy", "--inventory", inventory,
                             "--password-file", str(secret)], cwd=PROJECT, capture_output=True,
                            text=True, env=env, timeout=900)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "pip.installed" in deploy.stdout          # built on the host, not unpacked
    verify = subprocess.run([str(BIN / "invoke"), "verify", "--hosts", host.name, "--inventory",
                             inventory, "--password-file", str(secret)], cwd=PROJECT,
                            capture_output=True, text=True, env=env, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
