"""env_provider: conda on a sandbox host, with the real `fab deploy` and `invoke verify`.

Sandbox hosts cannot reach conda channels, so the installer is the Miniforge-shaped
stand-in the tests build (tests/support/conda_installer.py), uploaded as a
local file with its sha256; the environments' pip dependencies come from the
wheelhouse, as they would on an offline host with real conda. The deploy's channel
(conda_channels) is a real HTTP server on the sandbox bridge serving a channel the
tests build (tests/support/conda_channel.py): `%conda install` in the user's own
conda environment downloads from it."""

import re
import time

import pytest
import yaml
from e2e_support import PROJECT, run_tool, secret_file, serve_directory
from support import conda_channel, conda_installer

from jupyterfab import sandbox
from jupyterfab.jupyterclient import JupyterSession
from jupyterfab.runner import open_runner

pytestmark = pytest.mark.e2e
PASSWORD = "conda-e2e-password-7"
PREFIX = "/opt/jupyterfab/conda"
KERNEL_ENV = "/home/jupyter/.local/share/jupyterfab/kernel-env"
HELLO = "jf-e2e-conda-hello"     # only the sandbox's channel has it


def run(tool, *args, timeout=900):
    return run_tool(tool, *args, check=False, timeout=timeout)


@pytest.fixture(scope="module")
def conda_host(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    [host] = inv.hosts.values()
    work = tmp_path_factory.mktemp("conda")
    installer = conda_installer.build(work)
    package = conda_channel.noarch_python_package(
        work, HELLO, "1.0", {"jf_e2e_conda_hello/__init__.py": b"GREETING = 'hello from the channel'\n"})
    conda_channel.write_channel(work / "www/channel", [package])
    url, stop = serve_directory(work / "www", str(sandbox.Network.parse(sandbox.DEFAULT_SUBNET).gateway))
    # the sandbox inventory, with this one host switched to conda
    data = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
    data["hosts"][host.name]["vars"] = {
        "env_provider": "conda",
        "conda_installer": str(installer.path),
        "conda_installer_sha256": installer.sha256,
        "conda_packages": [],            # nb_conda_kernels lives on conda-forge, out of reach here
        "conda_kernel_environments": ["conda/analysis.yml.j2"],
        "conda_channels": [f"{url}/channel"],
        "python_packages": ["json5"],      # a seed from the wheelhouse
    }
    inventory = work / "hosts.yaml"
    inventory.write_text(yaml.safe_dump(data))
    secret = secret_file(work, PASSWORD)

    dry = run("fab", "-H", host.name, "deploy", "--inventory", str(inventory), "--dry-run",
              "--password-file", str(secret))
    first = run("fab", "-H", host.name, "deploy", "--inventory", str(inventory),
                "--password-file", str(secret))
    print(f"\nfirst conda deploy: {first.seconds:.1f} s")
    yield {"host": host, "inventory": str(inventory), "secret": str(secret), "dry": dry,
           "first": first, "first_seconds": first.seconds, "installer": installer,
           "channel": f"{url}/channel"}
    stop()


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
    assert "22 passed" in verify.stdout


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


def session_for(conda_host) -> JupyterSession:
    session = JupyterSession(conda_host["host"].address, "jupyter.example.com",
                             "http://jupyter.example.com", timeout=30)
    assert session.login(PASSWORD)
    return session


def test_the_users_kernel_environment_is_their_own_conda_environment(conda_host):
    runner = open_runner(conda_host["host"])
    made = re.search(r"kernel_env \(pip\.installed\) changed in ([\d.]+) s", conda_host["first"].stderr)
    assert made, conda_host["first"].stderr
    print(f"\nthe user's conda environment: created in {made.group(1)} s on the first deploy")
    owners = runner.run(f"stat -c %U {KERNEL_ENV} {KERNEL_ENV}/conda-meta {KERNEL_ENV}/bin/python "
                        f"{KERNEL_ENV}/lib/python3.11/site-packages").stdout.split()
    assert set(owners) == {"jupyter"}, owners
    history = runner.run(f"cat {KERNEL_ENV}/conda-meta/history").stdout
    assert f"# cmd: {PREFIX}/bin/conda create --yes --quiet --prefix {KERNEL_ENV} --override-channels " \
           f"-c {conda_host['channel']} python=3.11 pip" in history, history
    seeded = runner.run(f"runuser -u jupyter -- {KERNEL_ENV}/bin/python -c 'import json5, ipykernel'")
    assert seeded.ok, seeded.stderr
    spec = session_for(conda_host).api("GET", "/api/kernelspecs").json()
    assert spec["default"] == "python3"
    assert f"{KERNEL_ENV}/bin/python" in spec["kernelspecs"]["python3"]["spec"]["argv"]
    condarc = runner.run("cat /opt/jupyterfab/etc/xdg/conda/condarc").stdout
    assert f"channels:\n  - {conda_host['channel']}\n" in condarc, condarc


def test_conda_and_pip_install_in_a_notebook_go_into_it_and_survive_a_redeploy(conda_host):
    runner = open_runner(conda_host["host"])
    session = session_for(conda_host)
    kernel = session.start_kernel()
    try:
        out = session.execute(kernel, f"%conda install {HELLO}", timeout=180)
        assert f"{conda_host['channel']}/noarch::{HELLO}-1.0-pyhd8ed1ab_0" in out["stdout"], out
        assert "Executing transaction: done" in out["stdout"], out
        got = session.execute(kernel, "import jf_e2e_conda_hello as h; print(h.GREETING, h.__file__)")
        assert got["stdout"].startswith(
            f"hello from the channel {KERNEL_ENV}/lib/python3.11/site-packages/"), got
        pip = session.execute(kernel, "%pip install jinja2", timeout=180)   # from the wheelhouse
        assert re.search(r"Successfully installed .*jinja2-", pip["stdout"], re.I), pip
        where = session.execute(kernel, "import jinja2; print(jinja2.__file__)")["stdout"]
        assert where.startswith(f"{KERNEL_ENV}/lib/python3.11/site-packages/jinja2/"), where
    finally:
        session.api("DELETE", f"/api/kernels/{kernel}")
    assert runner.run(f"test -f {KERNEL_ENV}/conda-meta/{HELLO}-1.0-pyhd8ed1ab_0.json").ok
    # the server's environment did not get it
    assert runner.run(f"ls {PREFIX}/envs/jupyter/lib/python3.11/site-packages | "
                      "grep -c jf_e2e").stdout.strip() == "0"
    pid = main_pid(runner)
    again = deploy(conda_host)
    assert again.returncode == 0 and "ok, no changes" in again.stdout, again.stdout + again.stderr
    assert main_pid(runner) == pid
    assert session_for(conda_host).run_code(
        "import jf_e2e_conda_hello as h, jinja2; h.GREETING") == "'hello from the channel'"


def test_kernel_env_reset_rebuilds_the_conda_environment(conda_host):
    runner = open_runner(conda_host["host"])
    runner.run(f"runuser -u jupyter -- ln -sfn /usr/bin/python3.0-gone {KERNEL_ENV}/bin/python")
    broken = deploy(conda_host)
    assert broken.returncode == 1 and f"the environment {KERNEL_ENV} is broken" in broken.stdout
    reset = run("fab", "-H", conda_host["host"].name, "kernel-env", "--reset", "--yes",
                "--inventory", conda_host["inventory"])
    assert reset.returncode == 0, reset.stdout + reset.stderr
    saved = re.search(r"is in (\S+\.txt)", reset.stdout).group(1)
    assert re.search(r"^jinja2==", runner.run(f"cat {saved}").stdout, re.I | re.M)
    history = runner.run(f"cat {KERNEL_ENV}/conda-meta/history").stdout
    assert history.count(" create --yes") == 1 and " install " not in history   # a new one
    assert runner.run(f"stat -c %U {KERNEL_ENV}/bin/python").stdout.strip() == "jupyter"
    assert session_for(conda_host).run_code("import json5, sys; sys.prefix") == f"'{KERNEL_ENV}'"
    again = deploy(conda_host)
    assert again.returncode == 0 and "ok, no changes" in again.stdout, again.stdout + again.stderr
