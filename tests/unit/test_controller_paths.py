"""The ways onto a controller the docs promise, without root where they say so: `./run`
stops a non-root user only for the Debian packages the task needs; what `sudo ./run
demo` writes into .sandbox belongs to the user; `pip install .` of a checkout installs
every package of the project, and fab finds the fabfile from anywhere with -r; the host
key `ssh` stored is the one the deploy checks; --help shows the value --set takes."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from jupyterfab.dev import sandbox
from jupyterfab.engine import runner
from jupyterfab.inventory import Host

PROJECT = Path(__file__).resolve().parents[2]
NOBODY = 65534
SANDBOX_ONLY = ("debootstrap", "chromium", "pebble")


@pytest.fixture
def run_copy():
    """``run`` in a folder of its own, a fake .venv/bin/invoke that says what it was
    given, and a fake dpkg-query: installed are all but $MISSING. Readable by nobody."""
    folder = Path(tempfile.mkdtemp(prefix="jupyterfab-run-"))
    try:
        shutil.copy(PROJECT / "run", folder / "run")
        shutil.copy(PROJECT / "pyproject.toml", folder / "pyproject.toml")
        bin_dir = folder / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        stamp = hashlib.sha256((PROJECT / "pyproject.toml").read_bytes()).hexdigest()[:16]
        (folder / ".venv" / f".installed-{stamp}").touch()
        (bin_dir / "invoke").write_text('#!/bin/sh\necho "invoke $*"\n')
        fakes = folder / "fakes"
        fakes.mkdir()
        (fakes / "dpkg-query").write_text(
            '#!/bin/sh\nfor a; do package=$a; done\n'
            'for p in $MISSING; do [ "$p" = "$package" ] && exit 1; done\n'
            'printf "install ok installed"\n')
        (fakes / "apt-get").write_text('#!/bin/sh\necho "apt-get $*" >> "$APT_LOG"\n')
        for tool in (fakes / "dpkg-query", fakes / "apt-get", bin_dir / "invoke"):
            tool.chmod(0o755)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
        yield folder
    finally:
        shutil.rmtree(folder)


def run(folder: Path, *args: str, missing: tuple[str, ...], as_root: bool = False):
    env = {"PATH": f"{folder / 'fakes'}:/usr/bin:/bin", "MISSING": " ".join(missing),
           "APT_LOG": str(folder / "apt.log"), "LANG": "C.UTF-8"}
    drop = [] if as_root else (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
                               if os.geteuid() == 0 else [])
    if as_root and os.geteuid() != 0:
        pytest.skip("needs root")       # tests/conftest.py: CI runs as root
    return subprocess.run([*drop, "bash", str(folder / "run"), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [["--list"], ["test", "--no-e2e"], ["verify", "--hosts", "jupyter1"],
                                  ["docs", "--build"]])
def test_a_user_without_root_runs_what_needs_no_sandbox_package(run_copy, args):
    proc = run(run_copy, *args, missing=SANDBOX_ONLY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"invoke {' '.join(args)}\n" and proc.stderr == ""


@pytest.mark.parametrize("args, named", [(["demo"], "debootstrap chromium pebble"),
                                         (["test"], "debootstrap chromium pebble"),
                                         (["sandbox.up"], "debootstrap chromium pebble"),
                                         (["verify", "--browser"], "chromium")])
def test_a_user_without_root_is_told_the_packages_the_task_needs(run_copy, args, named):
    proc = run(run_copy, *args, missing=SANDBOX_ONLY)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"run: missing Debian packages: {named}; run with sudo, or: "
                           f"sudo apt-get install -y {named}\n")


def test_a_user_without_root_still_needs_python3_venv(run_copy):
    proc = run(run_copy, "--list", missing=("python3-venv",))
    assert proc.returncode == 1 and "missing Debian packages: python3-venv;" in proc.stderr


def test_root_installs_everything_missing_whatever_the_task(run_copy):
    proc = run(run_copy, "--list", missing=("python3-venv", *SANDBOX_ONLY), as_root=True)
    assert proc.returncode == 0 and proc.stdout == "invoke --list\n", proc.stderr
    installed = (run_copy / "apt.log").read_text().splitlines()[-1]
    assert installed.startswith("apt-get install") and all(p in installed.split()
                                                           for p in ("python3-venv", *SANDBOX_ONLY))


# ----- what the demo leaves in .sandbox is the user's --------------------------------------

@pytest.fixture(scope="module")
def tasks_module():
    spec = importlib.util.spec_from_file_location("jupyterfab_local_tasks", PROJECT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sandbox_files_are_given_back_to_the_projects_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")       # tests/conftest.py: CI runs as root
    project, work = tmp_path / "project", tmp_path / "project" / ".sandbox"
    work.mkdir(parents=True)
    os.chown(project, 4321, 4322)
    password = work / "password"
    password.touch(mode=0o600)
    (work / "demo.json").write_text("{}\n")
    sandbox.give_back(work)
    for path in (password, work / "demo.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)
    assert stat.S_IMODE(password.stat().st_mode) == 0o600


def test_the_demos_password_file_is_given_back(tasks_module, tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root")       # tests/conftest.py: CI runs as root
    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, 4321, 4322)
    monkeypatch.setattr(tasks_module, "PROJECT", project)
    path = tasks_module._sandbox_password_file()
    assert path == project / ".sandbox" / "password"
    assert (path.stat().st_uid, stat.S_IMODE(path.stat().st_mode)) == (4321, 0o600)
    assert len(path.read_text().strip()) >= 8


# ----- pip install . of a checkout -----------------------------------------------------------

def test_pip_install_of_a_checkout_installs_every_package_and_its_data(tmp_path):
    # a copy: the build leaves build/ in the tree it builds, which a later build would reuse
    checkout = tmp_path / "checkout"
    shutil.copytree(PROJECT, checkout, ignore=shutil.ignore_patterns(
        ".*", "site", "artifacts", "backups", "build", "__pycache__", "*.egg-info", "tests", "docs"))
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin/python"), "install",
                           "-q", "--no-deps", str(checkout)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [site] = target.glob("lib/python*/site-packages")
    packages = sorted(p.parent.relative_to(PROJECT).as_posix()
                      for p in (PROJECT / "jupyterfab").rglob("__init__.py"))
    missing = [p for p in packages if not (site / p / "__init__.py").is_file()]
    assert not missing, missing
    data = site / "jupyterfab" / "dev" / "doubles" / "data"
    assert {p.name for p in data.iterdir()} >= {"openapi-subset.json", "LICENSE", "README.md"}


def test_fab_finds_the_fabfile_from_anywhere_with_r(tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "fab"), "-r", str(PROJECT), "--list"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "deploy" in proc.stdout, proc.stderr


# ----- the host key the page's `ssh` stored is the one the deploy checks ----------------------

def test_without_a_known_hosts_in_the_inventory_the_users_own_is_read(tmp_path, monkeypatch):
    (tmp_path / ".ssh").mkdir()
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode().split()[1]
    (tmp_path / ".ssh" / "known_hosts").write_text(f"203.0.113.10 ssh-ed25519 {key}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = runner.connection_for(Host("jupyter1", "203.0.113.10", user="admin"))
    assert conn.client.get_host_keys().lookup("203.0.113.10")["ssh-ed25519"].get_base64() == key
    pinned = tmp_path / "pinned"
    pinned.write_text("")
    conn = runner.connection_for(Host("jupyter1", "203.0.113.10", known_hosts=str(pinned)))
    assert conn.client.get_host_keys().lookup("203.0.113.10") is None     # the inventory's only


# ----- --set shows the value it takes -------------------------------------------------------

@pytest.mark.parametrize("program, task", [("fab", "deploy"), ("invoke", "verify")])
def test_set_shows_its_value_in_help(program, task):
    proc = subprocess.run([str(Path(sys.executable).parent / program), "--help", task], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)
    assert "-s KEY=VALUE, --set=KEY=VALUE" in proc.stdout, proc.stdout + proc.stderr
