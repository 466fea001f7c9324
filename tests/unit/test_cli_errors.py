"""A user's mistake ends every task with one line and exit code 2, never a traceback:
run through the real ``fab`` and ``invoke`` commands (these fail before any connection)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# 192.0.2.1 (TEST-NET-1) is never contacted: every case fails before connecting.
INVENTORY = """\
hosts:
  web1:
    address: 192.0.2.1
    vars:
      server_name: jupyter.example.org
      cloudflare_zone: example.com
"""


def run(tool: str, *args: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd)})


@pytest.fixture
def outside_zone(tmp_path) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(INVENTORY)
    return path


@pytest.mark.parametrize("task", [["upgrade"], ["deploy", "--dry-run"], ["cloudflare", "--dry-run"]])
def test_a_server_name_outside_its_cloudflare_zone_ends_with_one_line(outside_zone, task):
    proc = run("fab", "-H", "web1", *task, "--inventory", str(outside_zone))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "example.com" in line and "server_name" in line, line


def test_an_unknown_host_ends_with_one_line(outside_zone):
    proc = run("fab", "-H", "nosuchhost", "status", "--inventory", str(outside_zone))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "nosuchhost" in line, line


def test_restore_without_an_archive_says_so_in_one_line(outside_zone):
    proc = run("fab", "-H", "web1", "restore", "--inventory", str(outside_zone))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: name the backup to restore with --archive"), line


@pytest.mark.parametrize("content", [b"garbage\n", b"", b"\x1f\x8b\x08\x00 cut short"])
def test_restore_of_a_file_that_is_no_backup_says_so_in_one_line_before_any_host(tmp_path, content):
    inventory = tmp_path / "hosts.yaml"     # nothing listens there, should a host be contacted
    inventory.write_text("defaults:\n  port: 1\n  vars: {allow_plain_http: true}\nhosts:\n"
                         "  web1: {address: 127.0.0.1}\n")
    archive = tmp_path / "web1-notebooks.tar.gz"
    archive.write_bytes(content)
    proc = run("fab", "-H", "web1", "restore", "--archive", str(archive), "--inventory", str(inventory))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line == f"error: {archive} is not a .tar.gz: restore takes an archive made by fab backup", line


def test_logs_follow_names_each_host_it_cannot_follow_and_ends(tmp_path):
    closed = []
    for _ in range(2):      # loopback ports nobody listens on: refused at once
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed.append(s.getsockname()[1])
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("defaults:\n  vars: {allow_plain_http: true}\nhosts:\n" + "".join(
        f"  web{i}:\n    address: 127.0.0.1\n    port: {port}\n" for i, port in enumerate(closed, 1)))
    proc = run("fab", "-H", "web1,web2", "logs", "--follow", "--inventory", str(inventory))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert sorted(lines[:2]) == [f"web{i}: FAILED: unreachable: web{i}: cannot connect: "
                                 f"[Errno 111] Connection refused" for i in (1, 2)], lines
    assert lines[2:] == ["logs failed on: web1, web2"], lines


def test_a_bad_version_for_upgrade_ends_with_one_line(tmp_path):
    plain = tmp_path / "hosts.yaml"
    plain.write_text(INVENTORY.replace("      cloudflare_zone: example.com\n", "      allow_plain_http: true\n"))
    proc = run("fab", "-H", "web1", "upgrade", "--jupyterlab", "not a version", "--inventory", str(plain))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: --jupyterlab 'not a version'"), line


def test_invoke_verify_with_a_missing_inventory_ends_with_one_line(tmp_path):
    proc = run("invoke", "verify", "--inventory", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "absent.yaml" in line, line


def test_every_jupyterfab_exception_derives_from_the_one_root():
    import importlib
    import inspect
    import pkgutil

    import jupyterfab
    from jupyterfab.engine.errors import JupyterfabError

    found = []
    for module in pkgutil.walk_packages(jupyterfab.__path__, "jupyterfab."):
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.name:
                found.append(cls)
    assert len(found) >= 16
    assert [c for c in found if not issubclass(c, JupyterfabError)] == []


def test_a_local_file_error_in_a_task_is_one_line_not_a_traceback(tmp_path):
    from invoke import Exit

    from jupyterfab.cli import one_line

    @one_line
    def writes_a_backup():
        (tmp_path / "no-such-folder" / "archive.tar.gz").write_bytes(b"")

    with pytest.raises(Exit) as ended:
        writes_a_backup()
    assert ended.value.code == 1
    assert ended.value.message == f"error: No such file or directory: {tmp_path}/no-such-folder/archive.tar.gz"


PRINTS_INTO_A_CLOSED_PIPE = """
from invoke import Exit
from jupyterfab.cli import one_line

@one_line
def report():
    for _ in range(20000):
        print("sandbox1  ok, no changes  " * 4)

try:
    report()
except Exit as ended:
    raise SystemExit(ended.code)
"""


def test_output_into_a_closed_pipe_ends_quietly():
    # `fab deploy --json | head`: the reader is gone while the report is written.
    proc = subprocess.run(f"{sys.executable} -c '{PRINTS_INTO_A_CLOSED_PIPE}' | head -c 10",
                          shell=True, cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "sandbox1  "
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


PLAIN = "defaults:\n  vars: {allow_plain_http: true}\nhosts:\n  web1:\n    address: 192.0.2.1\n    groups: [lab]\n"


@pytest.mark.parametrize("args, said", [
    (["--set", "cloudflare_zone"], "error: --set takes key=value, got 'cloudflare_zone'"),
    (["--set", "=x"], "error: --set takes key=value, got '=x'"),    # was '--set.: unknown variable'
    (["--set", "origin_lockdown=maybe"], "error: --set origin_lockdown: must be true or false, not 'maybe'"),
    (["--ca-file", "/nonexistent/ca.pem"], "error: --ca-file /nonexistent/ca.pem: no such file"),
    (["--ca-file", "CA"], "error: --ca-file: web1 serve(s) no TLS by the inventory, so no certificate "
                          "would be checked; if the deploy had --set (e.g. cloudflare_zone), give "
                          "verify the same --set"),
    (["--group", "nosuchgroup"], "error: "),
])
def test_verify_refuses_a_host_selection_or_ca_file_it_cannot_use_in_one_line(tmp_path, args, said):
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(PLAIN)
    (tmp_path / "ca.pem").write_text("not read: refused first\n")
    args = [str(tmp_path / "ca.pem") if a == "CA" else a for a in args]
    proc = run("invoke", "verify", "--inventory", str(inventory), "--password-file", "/dev/null", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(said), line


def test_verify_takes_set_and_group_as_fab_does(tmp_path):
    # --set makes the host a Cloudflare one: --ca-file then has a certificate to check; --group
    # picks web1. (--collect-only: the checks are listed, none connects to the TEST-NET address;
    # tests/e2e/test_cloudflare.py runs them after a deploy with --set)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(PLAIN)
    (tmp_path / "ca.pem").write_text("a CA\n")
    proc = run("invoke", "verify", "--group", "lab", "--inventory", str(inventory), "--set",
               "cloudflare_zone=example.com", "--set", "server_name=jupyter.example.com",
               "--ca-file", str(tmp_path / "ca.pem"), "--pytest-args", "--collect-only -q")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert "test_origin.py: 7" in proc.stdout and proc.stdout.endswith("verified: web1\n"), proc.stdout


FAB_TASKS = ["deploy", "cloudflare", "restart", "stop", "start", "status", "logs", "rotate-password",
             "backup", "restore", "upgrade", "kernel-env"]


def test_the_task_list_is_every_fab_task():
    listed = run("fab", "--list").stdout
    names = {line.split()[0] for line in listed.splitlines()[1:] if line.startswith("  ") and line[2] != " "}
    assert names == set(FAB_TASKS), listed


@pytest.mark.parametrize("task", FAB_TASKS)
def test_every_fab_task_takes_the_same_host_selection(task, tmp_path):
    shown = run("fab", "--help", task).stdout
    for option in ("--group", "--set", "--inventory"):
        assert option in shown, (task, shown)
    plain = tmp_path / "hosts.yaml"
    plain.write_text(PLAIN)
    secret, archive = tmp_path / "password", tmp_path / "web1-notebooks.tar.gz"
    secret.write_text("a new password\n")
    secret.chmod(0o600)
    archive.write_bytes(b"")
    needs = {"rotate-password": ["--password-file", str(secret)], "restore": ["--archive", str(archive)]}
    # --set is checked as the deploy checks it, --group picks from the same inventory: both
    # fail before any connection, in one line, for every task
    proc = run("fab", "-H", "web1", task, *needs.get(task, []), "--set", "memory_max=lots",
               "--inventory", str(plain))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: --set.memory_max: "), line
    proc = run("fab", task, *needs.get(task, []), "--group", "nosuchgroup", "--inventory", str(plain))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"error: {plain}: no group named 'nosuchgroup'", proc.stderr


def test_the_fab_programs_modules_are_frozen_out_of_the_garbage_collectors_way():
    out = subprocess.run([sys.executable, "-c", "import gc, fabfile; print(gc.get_freeze_count())"],
                         cwd=PROJECT, capture_output=True, text=True, check=True).stdout
    assert int(out) > 10000         # fabric's, paramiko's, jinja2's and jupyterfab's objects


@pytest.mark.parametrize("mode, said", [(None, "error: cannot read password file"),
                                        (0o644, "error: password file")])
def test_verify_refuses_a_password_file_it_cannot_use_before_any_check(tmp_path, mode, said):
    """Before, pytest ran and every check that logs in failed or errored with the same
    PasswordError: 600-odd lines for one wrong path."""
    inventory = tmp_path / "hosts.yaml"     # nothing listens there, should a check run
    inventory.write_text("defaults:\n  port: 1\n  vars: {allow_plain_http: true}\nhosts:\n"
                         "  web1: {address: 127.0.0.1}\n")
    secret = tmp_path / "pw"
    if mode is not None:
        secret.write_text("a long enough password\n")
        secret.chmod(mode)
    proc = run("invoke", "verify", "--inventory", str(inventory), "--password-file", str(secret))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(said), line
    assert proc.stdout == ""


def test_sandbox_ssh_refuses_a_name_that_is_not_a_sandbox_host():
    """Before, ssh was run with it: "Can't open user config file ..." with no sandbox, and
    with one, a DNS lookup of the name and a connection to whatever answered."""
    proc = run("invoke", "sandbox.ssh", "jupyter1.invalid")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: no sandbox host named 'jupyter1.invalid'"), line
