"""The other supported release: a Debian 13 (trixie) sandbox host takes the same deploy.

Its Python (3.13) differs from this machine's, so the host builds its own
environment from a wheelhouse made for 3.13: the other install path."""


import pytest
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner

pytestmark = pytest.mark.e2e


def test_trixie_host_boots_deploys_and_verifies(sandbox_factory, tmp_path):
    inv = sandbox_factory(1, release="trixie")
    [host] = inv.hosts.values()
    r = open_runner(host).run("cat /etc/debian_version; systemctl is-system-running; python3 -V")
    version, state, python = r.stdout.splitlines()
    assert version.startswith("13") and state == "running" and python.startswith("Python 3.13")

    secret = secret_file(tmp_path, "trixie-password-1")
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    deploy = run_tool("fab", "-H", host.name, "deploy", "--inventory", inventory,
                      "--password-file", str(secret), "--verbose")
    assert "pip.installed" in deploy.stdout          # built on the host, not unpacked
    run_tool("invoke", "verify", "--hosts", host.name, "--inventory", inventory,
             "--password-file", str(secret), timeout=300)
