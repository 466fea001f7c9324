"""env_provider: conda on a sandbox host, with the real `fab deploy` and `invoke verify`.

Sandbox hosts cannot reach conda channels, so the installer is the Miniforge-shaped
stand-in the tests build (jupyterfab/testing/conda_installer.py), uploaded as a
local file with its sha256; the environments' pip dependencies come from the
wheelhouse, as they would on an offline host with real conda."""

import re
import time

import pytest
import yaml
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab import sandbox
from jupyterfab.jupyterclient import JupyterSession
from jupyterfab.runner import open_runner
from jupyterfab.testing import conda_installer

pytestmark = pytest.mark.e2e
PASSWORD = "conda-e2e-password-7"
PREFIX = "/opt/jupyterfab/conda"


def run(tool, *args, timeout=900):
    return run_tool(tool, *args, check=False, timeout=timeout)


@pytest.fixture(scope="module")
def conda_host(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    [host] = inv.hosts.values()
    work = tmp_path_factory.mktemp("conda")
    installer = conda_installer.build(work)
    # the sandbox inventory, with this one host switched to conda
    data = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
    data["hosts"][host.name]["vars"] = {
        "env_provider": "conda",
        "conda_installer": str(installer.path),
        "conda_installer_sha256": installer.sha256,
        "conda_packages": [],            # nb_conda_kernels lives on conda-forge, out of reach here
        "conda_kernel_environments": ["conda/analysis.yml.j2"],
    }
    inventory = work / "hosts.yaml"
    inventory.write_text(yaml.safe_dump(data))
    secret = secret_file(work, PASSWORD)

    dry = run("fab", "-H", host.name, "deploy", "--inventory", str(inventory), "--dry-run",
              "--password-file", str(secret))
    first = run("fab", "-H", host.name, "deploy", "--inventory", str(inventory),
                "--password-file", str(secret))
    print(f"\nfirst conda deploy: {first.seconds:.1f} s")
    return {"host": host, "inventory": str(inventory), "secret": str(secret), "dry": dry,
            "first": first, "first_seconds": first.seconds, "installer": installer}


def deploy(conda_host, *extra):
    return run("fab", "-H", conda_host["host"].name, "deploy", "--inventory",
               conda_host["inventory"], *extra)


def main_pid(runner) -> str:
    return runner.run("systemctl show -p MainPID --value jupyter").stdout.strip()


def test_a_dry_run_on_the_fresh_host_predicts_the_install_and_changes_nothing(conda_host):
    dry = conda_host["dry"]
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would upload the installer, check its sha256 and install conda into " + PREFIX \
        in dry.stdout
    assert "would run `conda env update` for /opt/jupyterfab/conda/envs/jupyter" in dry.stdout
    # (the real deploy ran after it, so the host itself is checked in the next tests)


def test_deploy_installs_conda_and_verify_is_green(conda_host):
    first = conda_host["first"]
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"jupyter_env \(conda.env_present\) changed in", first.stderr)
    assert re.search(r"conda_env_analysis \(conda.env_present\) changed in", first.stderr)
    verify = run("invoke", "verify", "--hosts", conda_host["host"].name, "--inventory",
                 conda_host["inventory"], "--password-file", conda_host["secret"], timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "21 passed" in verify.stdout


def test_jupyter_runs_from_the_conda_environment(conda_host):
    runner = open_runner(conda_host["host"])
    pid = main_pid(runner)
    exe = runner.run(f"readlink /proc/{pid}/exe").stdout.strip()
    assert exe.startswith(f"{PREFIX}/envs/jupyter/bin/python"), exe
    marker = runner.run(f"cat {PREFIX}/.jupyterfab-conda").stdout.split("\n")[0]
    assert marker == conda_host["installer"].sha256
    listed = runner.run(f"{PREFIX}/bin/conda env list --json").stdout
    assert f"{PREFIX}/envs/jupyter" in listed and f"{PREFIX}/envs/analysis" in listed


def test_the_second_environment_is_a_kernel_through_nginx(conda_host):
    host = conda_host["host"]
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    assert session.login(PASSWORD)
    specs = session.api("GET", "/api/kernelspecs").json()["kernelspecs"]
    assert specs["conda-env-analysis-py"]["spec"]["display_name"] == "Python [conda env:analysis]"
    assert "conda-env-jupyter-py" in specs
    r = session.api("POST", "/api/kernels", {"name": "conda-env-analysis-py"})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    try:
        assert session.run_in(kernel, "import sys; sys.prefix", 60) == \
            f"'{PREFIX}/envs/analysis'"
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")


def test_a_second_deploy_changes_nothing(conda_host):
    runner = open_runner(conda_host["host"])
    pid = main_pid(runner)
    started = time.monotonic()
    again = deploy(conda_host)
    seconds = time.monotonic() - started
    print(f"\nno-op conda deploy: {seconds:.1f} s")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ok, no changes" in again.stdout and "0 states changed" in again.stdout
    assert main_pid(runner) == pid


def test_a_wrong_sha256_is_refused_and_leaves_the_host_untouched(conda_host):
    runner = open_runner(conda_host["host"])
    watched = f"{PREFIX}/.jupyterfab-conda /etc/systemd/system/jupyter.service /etc/jupyterfab/*"
    before = runner.run(f"sha256sum {watched}; ls -a /opt/jupyterfab /opt").stdout
    pid = main_pid(runner)
    wrong = "deadbeef" * 8    # (all digits would reach --set as a number)
    refused = deploy(conda_host, "--set", f"conda_installer_sha256={wrong}",
                     "--set", "conda_prefix=/opt/other-conda")
    assert refused.returncode != 0
    assert f"has sha256 {conda_host['installer'].sha256}, but the inventory expects {wrong}" \
        in refused.stdout
    assert "nothing was sent to the host" in refused.stdout
    assert runner.run(f"sha256sum {watched}; ls -a /opt/jupyterfab /opt").stdout == before
    assert main_pid(runner) == pid
