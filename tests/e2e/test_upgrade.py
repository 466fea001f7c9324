"""`fab upgrade` on a sandbox host: an older JupyterLab goes to a newer one in a new
environment; an environment that crashes after starting is rolled back and the old
one serves again; the same upgrade twice restarts nothing; a deploy afterwards
keeps what the upgrade did."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from e2e_support import BIN, PROJECT, fab_logged, make_wheel, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner
from jupyterfab.stack import serving
from jupyterfab.verify.jupyterclient import JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-upgrade-password"
OLD_SPEC = "==4.2.*"
NOTEBOOK = "/home/jupyter/notebooks/keep-me.ipynb"
BROKEN = "jupyterfab-e2e-broken"
BROKEN_SPEC = f"{BROKEN}==2.0"
KERNEL_ENV = "/home/jupyter/.local/share/jupyterfab/kernel-env"
KEPT = "jupyterfab-e2e-kept"      # what the notebook user installed into their environment


def fab(*args, env_extra=None, check=True):
    return fab_logged(*args, env=env_extra, check=check)


def broken_extension_wheel(folder: Path) -> Path:
    """A Jupyter Server extension that enables itself (as real ones do, through
    etc/jupyter/jupyter_server_config.d in the environment) and takes the server
    down two seconds after it starts answering: the environment installs, the
    service starts, answers, and then crashes, over and over under Restart=."""
    module = '''
import os, socket, threading, time

def _jupyter_server_extension_points():
    return [{"module": "jupyterfab_e2e_broken"}]

def _crash_once_serving(path):
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(2.0)
    os._exit(3)

def _load_jupyter_server_extension(serverapp):
    serverapp.log.error("jupyterfab-e2e-broken: this environment is broken on purpose")
    threading.Thread(target=_crash_once_serving, args=(serverapp.sock,), daemon=True).start()
'''
    # 2.0 waits for the socket (1.0, for a port, never crashes now): a bundle built here
    # is kept by its requirements, so the inventory pins 2.0 (BROKEN_SPEC)
    return make_wheel(folder, BROKEN, {
        "jupyterfab_e2e_broken/__init__.py": module.encode(),
        "jupyterfab_e2e_broken-2.0.data/data/etc/jupyter/jupyter_server_config.d/jupyterfab_e2e_broken.json":
            json.dumps({"ServerApp": {"jpserver_extensions": {"jupyterfab_e2e_broken": True}}}).encode(),
    }, version="2.0")


@pytest.fixture(scope="module")
def stack(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    secret = secret_file(tmp_path_factory.mktemp("secret"), PASSWORD)
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    fab("-H", "sandbox1", "deploy", "--inventory", inventory, "--password-file", str(secret),
        "--set", f"jupyterlab_version={OLD_SPEC}")
    host = inv.hosts["sandbox1"]
    runner = open_runner(host)
    # Make it a host deployed before envs/ existed: the environment a real directory.
    legacy = runner.run("cd /opt/jupyterfab && t=$(readlink venv) && rm -f venv venv.previous "
                        "&& mv -T \"$t\" venv && rm -rf envs && systemctl restart jupyter")
    assert legacy.ok, legacy.stderr
    runner.put(b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n', NOTEBOOK)
    runner.run(f"chown jupyter: {NOTEBOOK}")
    # The notebook user installs a package of their own (as %pip would, as that user).
    wheel = make_wheel(tmp_path_factory.mktemp("kept"), KEPT,
                       {"jupyterfab_e2e_kept/__init__.py": b"KEPT = 'still here'\n"})
    runner.put(wheel.read_bytes(), f"/tmp/{wheel.name}")
    mine = runner.run(f"chmod 644 /tmp/{wheel.name} && runuser -u jupyter -- {KERNEL_ENV}/bin/python -m pip "
                      f"install --no-index --no-deps /tmp/{wheel.name}")
    assert mine.ok, mine.stderr
    return {"inv": inv, "host": host, "runner": runner, "inventory": inventory,
            "notebook": runner.run(f"sha256sum {NOTEBOOK}").stdout,
            "old": lab_version(runner), "kernel_env": kernel_env_identity(runner)}


def kernel_env_identity(runner):
    """The user's environment as the same directory (inode) with their package importable."""
    r = runner.run(f"stat -c %i {KERNEL_ENV}/pyvenv.cfg && runuser -u jupyter -- {KERNEL_ENV}/bin/python "
                   "-c 'import jupyterfab_e2e_kept as k; print(k.KEPT)'")
    assert r.ok, r.stderr
    return r.stdout


def assert_user_env_kept_and_server_env_roots(stack):
    runner = stack["runner"]
    assert kernel_env_identity(runner) == stack["kernel_env"]
    assert runner.run("find -L /opt/jupyterfab/venv ! -user root | head -3").stdout == ""
    assert "jupyterfab_e2e_kept" not in runner.run("ls /opt/jupyterfab/venv/lib/python3*/site-packages/").stdout


def lab_version(runner, env="/opt/jupyterfab/venv"):
    out = runner.run(f"{env}/bin/python -c 'import importlib.metadata as m; print(m.version(\"jupyterlab\"))'")
    return out.stdout.strip()


def main_pid(runner):
    return runner.run("systemctl show -p MainPID --value jupyter").stdout.strip()


def served_lab_version(host):
    """Log in through NGINX like a browser and read the version JupyterLab's page says."""
    session = JupyterSession(host.address, "jupyter.example.com", "http://jupyter.example.com")
    assert session.login(PASSWORD)
    page = session.get("/lab")
    assert page.status_code == 200
    return re.search(r'"appVersion":\s*"([^"]+)"', page.text).group(1)


def upgrade(stack, *args, **kw):
    return fab("-H", "sandbox1", "upgrade", "--inventory", stack["inventory"], *args, **kw)


def test_the_old_version_is_deployed_from_a_real_directory(stack):
    assert stack["old"].startswith("4.2.")
    assert stack["runner"].run("test -d /opt/jupyterfab/venv && ! test -L /opt/jupyterfab/venv").ok
    assert served_lab_version(stack["host"]) == stack["old"]


def test_dry_run_names_old_and_new_and_changes_nothing(stack):
    pid = main_pid(stack["runner"])
    out = upgrade(stack, "--dry-run").stdout
    assert re.search(rf"sandbox1: ok: would upgrade JupyterLab {re.escape(stack['old'])} -> 4\.\d+\.\d+", out)
    assert main_pid(stack["runner"]) == pid
    assert stack["runner"].run("test -d /opt/jupyterfab/venv && ! test -L /opt/jupyterfab/venv").ok


def broken_upgrade_args(stack, folder: Path) -> tuple[list[str], dict]:
    """fab's arguments and environment for an upgrade whose new environment crashes."""
    extra = folder / "wheels"
    extra.mkdir()
    broken_extension_wheel(extra)
    # The same sandbox inventory, plus the broken package in the environment.
    text = Path(stack["inventory"]).read_text()
    broken_inventory = folder / "hosts.yaml"
    broken_inventory.write_text(text.replace("  vars:\n", f"  vars:\n    server_packages: ['{BROKEN_SPEC}']\n", 1))
    # pip download (the wheelhouse) finds the local wheel beside PyPI's.
    return (["-H", "sandbox1", "upgrade", "--inventory", str(broken_inventory)],
            {"PIP_FIND_LINKS": str(extra)})


def test_an_environment_that_crashes_after_starting_is_rolled_back(stack, tmp_path):
    runner = stack["runner"]
    args, env = broken_upgrade_args(stack, tmp_path)
    proc = fab(*args, env_extra=env, check=False)
    stack["rollback_seconds"] = proc.seconds
    assert proc.returncode == 1
    assert "upgrade failed on: sandbox1" in proc.stderr
    assert "== sandbox1: FAILED" in proc.stdout and "rolled back: JupyterLab " in proc.stdout
    # it answered, then died: caught by systemd's state or by its port going silent
    assert re.search(r"did not serve \(jupyter (exited after answering for|stopped answering on "
                     r"/var/lib/jupyterfab/socket/jupyter.sock after) [\d.]+ s", proc.stdout)
    assert f"JupyterLab {stack['old']} is serving again" in proc.stdout
    assert "jupyterfab-e2e-broken: this environment is broken on purpose" in proc.stdout   # its log
    assert "code=exited, status=3" in proc.stdout          # the crash itself, from systemd
    downtime = re.search(r"\(([\d.]+) s after the first stop\)", proc.stdout)
    print(f"rollback: whole command {proc.seconds:.1f} s, stop -> old version answering again "
          f"{downtime.group(1)} s")

    # the old environment serves, migrated into envs/ and live again; the failed one is gone
    assert lab_version(runner) == stack["old"]
    assert served_lab_version(stack["host"]) == stack["old"]
    assert re.fullmatch(r"envs/migrated-\d{8}T\d{6}\n", runner.run("readlink /opt/jupyterfab/venv").stdout)
    assert runner.run("ls /opt/jupyterfab/envs").stdout.split() == [
        runner.run("readlink /opt/jupyterfab/venv").stdout.strip().removeprefix("envs/")]
    assert runner.run("systemctl is-active jupyter").stdout.strip() == "active"
    assert runner.run(f"sha256sum {NOTEBOOK}").stdout == stack["notebook"]
    assert_user_env_kept_and_server_env_roots(stack)


def test_kill_9_of_the_controller_just_after_the_switch_still_rolls_back_on_the_host(stack, tmp_path):
    runner = stack["runner"]
    old_target = runner.run("readlink /opt/jupyterfab/venv").stdout.strip()   # "" for a directory
    args, env = broken_upgrade_args(stack, tmp_path)
    fab_process = subprocess.Popen(
        [str(BIN / "fab"), *args], cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", **env})
    deadline = time.monotonic() + 900
    while runner.run("readlink /opt/jupyterfab/venv").stdout.strip() == old_target:
        assert fab_process.poll() is None, "fab ended before it switched"
        assert time.monotonic() < deadline, "no switch within 15 minutes"
        time.sleep(0.1)
    new_target = runner.run("readlink /opt/jupyterfab/venv").stdout.strip()
    fab_process.kill()                                        # SIGKILL: nobody is left to watch
    fab_process.wait()
    killed = time.monotonic()
    while time.monotonic() - killed < 30:
        back = runner.run("readlink /opt/jupyterfab/venv").stdout.strip() not in ("", new_target)
        if back and runner.run(f"{serving.CHECK} {serving.SOCKET} \"$(systemctl show -p MainPID --value jupyter)\"").ok:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the host did not roll back by itself within 30 s of the kill")
    print(f"kill -9 after the switch: rolled back and serving {time.monotonic() - killed:.1f} s later")
    assert served_lab_version(stack["host"]) == stack["old"]
    # the guard finished: the failed environment is gone, and the host takes a new run at once
    deadline = time.monotonic() + 30
    while new_target.removeprefix("envs/") in runner.run("ls /opt/jupyterfab/envs").stdout.split():
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # the dead controller's lock went with its connection; the guard's goes when it is done
    restart = fab("-H", "sandbox1", "restart", "--inventory", stack["inventory"])
    assert "sandbox1: ok" in restart.stdout
    assert runner.run(f"sha256sum {NOTEBOOK}").stdout == stack["notebook"]


@pytest.fixture(scope="module")
def upgraded(stack):
    """The upgrade to the newest, done once: each test after it asks for this fixture
    (no test leans on another having run), and it runs after the rollback test (file order)."""
    before = stack["runner"].run("readlink /opt/jupyterfab/venv").stdout.strip()
    proc = upgrade(stack)
    m = re.search(rf"JupyterLab {re.escape(stack['old'])} -> (4\.\d+\.\d+): serving "
                  r"\(Jupyter Server 2\.\d+\.\d+\) ([\d.]+) s after the stop, stable for 5 s", proc.stdout)
    assert m, proc.stdout
    print(f"upgrade: whole command {proc.seconds:.1f} s, stop -> new version answering {m.group(2)} s")
    return {"proc": proc, "new": m.group(1), "before": before}


def test_upgrade_to_the_newest_switches_and_serves_the_new_version(stack, upgraded):
    runner, proc, new = stack["runner"], upgraded["proc"], upgraded["new"]
    assert "== sandbox1: ok" in proc.stdout
    assert "hint: the inventory's jupyterlab_version '==4.4.*' does not admit" in proc.stdout
    assert lab_version(runner) == new and new != stack["old"]
    assert served_lab_version(stack["host"]) == new
    assert runner.run("readlink /opt/jupyterfab/venv.previous").stdout.strip() == upgraded["before"]
    assert lab_version(runner, "/opt/jupyterfab/venv.previous") == stack["old"]   # kept for rollback
    assert runner.run(f"sha256sum {NOTEBOOK}").stdout == stack["notebook"]
    assert_user_env_kept_and_server_env_roots(stack)
    session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com")
    assert session.login(PASSWORD)
    assert session.run_code("import jupyterfab_e2e_kept; jupyterfab_e2e_kept.KEPT") == "'still here'"


def test_the_same_upgrade_again_changes_nothing_and_restarts_nothing(stack, upgraded):
    runner = stack["runner"]
    pid = main_pid(runner)
    proc = upgrade(stack, "--jupyterlab", upgraded["new"], "--json")
    report = json.loads(proc.stdout)
    assert report["ok"] and report["hosts"][0]["action"] == "up-to-date"
    assert report["hosts"][0]["old"] == report["hosts"][0]["new"] == upgraded["new"]
    assert main_pid(runner) == pid


def test_a_deploy_whose_spec_admits_the_upgrade_changes_nothing(stack, upgraded):
    pid = main_pid(stack["runner"])
    proc = fab("-H", "sandbox1", "deploy", "--inventory", stack["inventory"],
               "--set", "jupyterlab_version=>=4.5")
    assert "sandbox1  ok, no changes" in proc.stdout
    assert f"keeping JupyterLab {upgraded['new']} from `fab upgrade`" in proc.stderr
    assert main_pid(stack["runner"]) == pid
    assert_user_env_kept_and_server_env_roots(stack)


def test_a_deploy_whose_spec_excludes_the_upgrade_says_it_would_replace_it(stack, upgraded):
    proc = fab("-H", "sandbox1", "deploy", "--inventory", stack["inventory"], "--dry-run")
    assert (f"JupyterLab {upgraded['new']} (from `fab upgrade`) is outside jupyterlab_version "
            "'==4.4.*': this deploy replaces it") in proc.stderr
    assert re.search(r"jupyter_env.*would", proc.stdout + proc.stderr, re.S)
    assert lab_version(stack["runner"]) == upgraded["new"]
