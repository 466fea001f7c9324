"""The README's own commands, run as a new user runs them, on one sandbox host; and the
sandbox keeps that host (and its notebook) through `sandbox.up`, `demo` and `bench`.

The new user: a copy of the project (sharing this checkout's .venv, as a second `./run`
would find it), whose `hosts.yaml` describes their server `jupyter1` (here a sandbox
host), a password in `~/.jupyter-password` (mode 0600), and each command typed as the
README shows it: no option added. Every one must exit 0 with no traceback anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e_support import PROJECT, secret_file

from jupyterfab.dev import demo_record, sandbox
from jupyterfab.engine.runner import open_runner

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-readme-password"

# Every command of the README's ```sh blocks, in its order: None runs it here, a text is
# why it does not (test_the_list_is_the_readmes_commands keeps the two the same).
README_COMMANDS: dict[str, str | None] = {
    "./run demo": "boots a host of its own and an ACME CA (minutes); what it runs (fab deploy, "
                       "./run verify) is run below, and a running demo's reuse by "
                       "test_the_sandbox_keeps_a_host_with_a_notebook",
    "./run test": "is this test suite",
    "./run": None,
    "./run --list": None,
    ".venv/bin/fab -H jupyter1 deploy --password-file ~/.jupyter-password": None,
    "./run verify --hosts jupyter1 --inventory hosts.yaml --password-file ~/.jupyter-password": None,
    "./run docs": "serves the site until Ctrl-C; `./run docs --build` below builds the same site",
    "./run docs --build": None,
}


def readme_commands(text: str) -> list[str]:
    """The commands of the ```sh blocks (less their comments) and those quoted in the
    text (`./run --list`), in the README's order."""
    found = []
    for block in re.finditer(r"^```sh\n(.*?)^```", text, re.M | re.S):
        found += [(block.start() + i, re.split(r"\s+#", line)[0].strip())
                  for i, line in enumerate(block[1].splitlines())
                  if line.strip() and not line.lstrip().startswith("#")]
    prose = re.sub(r"^```.*?^```", lambda m: " " * len(m[0]), text, flags=re.M | re.S)
    found += [(m.start(), m[1]) for m in re.finditer(r"`((?:sudo |\./run|\.venv/bin/)[^`]*)`", prose)]
    return [command for _, command in sorted(found)]


def test_the_list_is_the_readmes_commands():
    assert readme_commands((PROJECT / "README.md").read_text()) == list(README_COMMANDS)


@pytest.fixture(scope="module")
def new_user(sandbox_factory, tmp_path_factory):
    """A project copy with jupyter1 in its hosts.yaml, and a home with the password."""
    inv = sandbox_factory(1)
    tmp = tmp_path_factory.mktemp("readme")
    clone = tmp / "jupyterfab"
    shutil.copytree(PROJECT, clone, ignore=shutil.ignore_patterns(
        ".venv", ".sandbox", ".git", "site", "artifacts", "backups", "__pycache__", "*.egg-info",
        ".pytest_cache"))
    (clone / ".venv").symlink_to(PROJECT / ".venv")
    sandboxed = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
    sandboxed["hosts"] = {"jupyter1": {"address": inv.hosts["sandbox1"].address}}
    (clone / "hosts.yaml").write_text(yaml.safe_dump(sandboxed))
    home = tmp / "home"
    home.mkdir()
    secret_file(home, PASSWORD, ".jupyter-password")
    return {"clone": clone, "home": home, "host": inv.hosts["sandbox1"]}


def typed(command: str, cwd: Path, home: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``command`` as typed in a shell (as root, where the README's `sudo` is not needed)."""
    if os.geteuid() == 0:
        command = command.removeprefix("sudo ")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           # the test session holds the sandbox lock: the commands it runs use it
           **({sandbox.LOCK_HOLDER_ENV: os.environ[sandbox.LOCK_HOLDER_ENV]}
              if sandbox.LOCK_HOLDER_ENV in os.environ else {})}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.mark.parametrize("command", [c for c, why in README_COMMANDS.items() if why is None])
def test_each_readme_command_exits_0_without_a_traceback(new_user, command):
    proc = typed(command, new_user["clone"], new_user["home"])
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{said[-3000:]}"
    assert "Traceback" not in said, f"{command}:\n{said[-3000:]}"
    print(f"{command}: {len(said.splitlines())} lines of output")   # the note's figures (pytest -s)


def test_a_second_deploy_changes_nothing_and_says_so_in_a_few_lines(new_user):
    command = ".venv/bin/fab -H jupyter1 deploy --password-file ~/.jupyter-password"
    proc = typed(command, new_user["clone"], new_user["home"])
    said = (proc.stdout + proc.stderr).splitlines()
    print(f"no-op deploy: {len(said)} lines of output")    # the note's figures (pytest -s)
    assert proc.returncode == 0 and "jupyter1  ok, no changes" in proc.stdout, "\n".join(said)
    assert len(said) <= 5, "\n".join(said)


def test_the_sandbox_keeps_a_host_with_a_notebook(new_user):
    host = new_user["host"]
    runner = open_runner(host)
    notebook = "/home/jupyter/notebooks/keep.ipynb"
    runner.put(b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n', notebook)
    runner.run(f"chown jupyter: {notebook}")
    kept = runner.run(f"sha256sum {notebook}").stdout
    runner.close()
    home = new_user["home"]
    work = sandbox.workdir_for(PROJECT)

    def still_there():
        assert sandbox.is_running(host.name) and (work / "hosts.yaml").is_file()
        check = open_runner(host)
        try:
            assert check.run(f"sha256sum {notebook}").stdout == kept
        finally:
            check.close()

    up = typed("./run sandbox.up", PROJECT, home)
    assert up.returncode == 1 and "Traceback" not in up.stderr, up.stderr
    assert f"sandbox hosts are running: {host.name}" in up.stderr and "--replace" in up.stderr
    still_there()

    demo = typed("./run demo", PROJECT, home)    # no demo made this host: refused, not replaced
    assert demo.returncode == 1 and "Traceback" not in demo.stderr, demo.stderr
    assert f"sandbox hosts are running: {host.name}" in demo.stderr
    still_there()

    bench = typed("./run bench --sizes 1 --no-warm", PROJECT, home)
    assert bench.returncode == 0 and "Traceback" not in bench.stdout + bench.stderr, \
        bench.stdout + bench.stderr
    assert re.search(r"^\s+1\s+[\d.]+ s\s+[\d.]+ s", bench.stdout, re.M), bench.stdout
    still_there()
    assert [h.name for h in sandbox.list_hosts()] == [host.name] and not (work / "bench").exists()

    # as if the last demo had deployed this host: the next demo reuses it
    demo_record.remember_demo(PROJECT, work / "hosts.yaml", kind="acme", host=host.name,
                                 password_file=str(home / ".jupyter-password"), ca_file="")
    again = typed("./run demo", PROJECT, home)
    said = again.stdout + again.stderr
    assert again.returncode == 0 and "Traceback" not in said, said
    assert f"{host.name} already runs the demo" in said and f"verified: {host.name}" in said, said
    assert "Again:" in said and "Verify:" in said
    still_there()
