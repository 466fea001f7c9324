"""Notebook code is the notebook user: a symbolic link it plants under its home never
leads a root-run task anywhere else. One sandbox host, one first deploy; the attacker
works through a real kernel (login, REST, kernel WebSocket), as anyone with the
password or a malicious package in the kernel would. The link points into a root-owned
canary tree made over SSH; after every task its owners, modes and contents are the
same, and no archive (a backup, restore's safety snapshot) holds any of it."""

import io
import re
import tarfile

import pytest
from e2e_support import PROJECT, fab_logged, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.engine.runner import open_runner
from jupyterfab.verify.jupyterclient import JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-planted-links-password"
HOME = "/home/jupyter"
NOTEBOOKS = f"{HOME}/notebooks"
CANARY = "/srv/canary"
SNAPSHOTS = "/var/backups/jupyterfab"
# Root's own tree: what the user must never change or read through a task. Its files
# share names with the user's notebooks, so a task that follows a link finds them.
MAKE_CANARY = f"""set -e
rm -rf {CANARY}; mkdir -p {CANARY}/sub
printf 'canary-top\\n' > {CANARY}/a.txt; printf 'canary-deep\\n' > {CANARY}/sub/b.txt
chmod 0751 {CANARY}; chmod 0600 {CANARY}/a.txt; chmod 0700 {CANARY}/sub; chmod 0640 {CANARY}/sub/b.txt
chown -R root:root {CANARY}"""
FINGERPRINT = (f"find {CANARY} -printf '%p %u:%g %m %y %l\\n' | sort; "
               f"find {CANARY} -type f -exec sha256sum {{}} + | sort")


def fab(stack, *args, check=True):
    return fab_logged("-H", "sandbox1", *args[:1], "--inventory", stack["inventory"], *args[1:], check=check)


@pytest.fixture(scope="module")
def stack(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    work = tmp_path_factory.mktemp("links")
    inventory = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    secret = secret_file(work, PASSWORD)
    stack = {"host": inv.hosts["sandbox1"], "inventory": inventory, "work": work}
    fab(stack, "deploy", "--password-file", str(secret))
    runner = open_runner(inv.hosts["sandbox1"])
    assert runner.run(MAKE_CANARY).ok
    stack["runner"] = runner
    stack["canary"] = runner.run(FINGERPRINT).stdout
    # The user's own notebooks, by the same names as the canary's files; a backup of
    # them taken while nothing is planted is what restore puts back later.
    as_user(stack, f"import os; os.makedirs('{NOTEBOOKS}/sub', exist_ok=True)\n"
                   f"open('{NOTEBOOKS}/a.txt', 'w').write('mine-top\\n')\n"
                   f"open('{NOTEBOOKS}/sub/b.txt', 'w').write('mine-deep\\n')")
    fab(stack, "backup", "--dest", str(work / "good"))
    [stack["archive"]] = (work / "good").glob("*.tar.gz")
    return stack


def as_user(stack, code: str) -> str:
    """``code`` run in a kernel of the deployed server: the notebook user, confined."""
    session = JupyterSession(stack["host"].address, "jupyter.example.com", "http://jupyter.example.com",
                             timeout=30)
    assert session.login(PASSWORD)
    return session.run_code(code)


def plant(stack, link: str, target: str):
    """In a kernel: move what is at ``link`` aside, put a link to ``target`` there."""
    as_user(stack, f"import os; os.rename({link!r}, {link!r} + '.real'); os.symlink({target!r}, {link!r})")


def put_back(stack, link: str):
    as_user(stack, f"import os; os.remove({link!r}); os.rename({link!r} + '.real', {link!r})")


def canary_unchanged(stack):
    assert stack["runner"].run(FINGERPRINT).stdout == stack["canary"]


def no_canary_in(archive_bytes: bytes, what: str):
    with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""
            assert b"canary" not in data, f"{what} holds {member.name}: {data!r}"


def snapshots_hold_no_canary(stack):
    listed = stack["runner"].run(f"ls {SNAPSHOTS}/*.tar.gz 2>/dev/null").stdout.split()
    for path in listed:
        no_canary_in(stack["runner"].get(path), path)


def one_line_naming(proc, link: str, target: str):
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    said = [line for line in text.splitlines() if f"{link} is a symbolic link (to {target})" in line]
    assert said, text
    return said


def test_deploy_refuses_a_linked_notebook_dir_and_changes_nothing_through_it(stack):
    plant(stack, NOTEBOOKS, CANARY)
    try:
        dry = fab(stack, "deploy", "--dry-run", check=False)
        assert dry.returncode != 0      # the dry run predicts the refusal
        one_line_naming(dry, NOTEBOOKS, CANARY)
        canary_unchanged(stack)
        proc = fab(stack, "deploy", check=False)
        assert proc.returncode != 0
        [line] = [x for x in one_line_naming(proc, NOTEBOOKS, CANARY) if "notebook_dir" in x]
        assert line.rstrip().endswith("not changing it"), line
        canary_unchanged(stack)
        # the read-only tasks, with the link still there: root reads nothing through it
        for task in ("status", "kernel-env"):
            proc = fab(stack, task, check=False)
            assert "Traceback" not in proc.stdout + proc.stderr and "canary" not in proc.stdout
            canary_unchanged(stack)
    finally:
        put_back(stack, NOTEBOOKS)


def test_backup_refuses_a_linked_notebook_dir(stack, tmp_path):
    plant(stack, NOTEBOOKS, CANARY)
    try:
        proc = fab(stack, "backup", "--dest", str(tmp_path), check=False)
        assert proc.returncode != 0
        one_line_naming(proc, NOTEBOOKS, CANARY)
        for archive in tmp_path.glob("*.tar.gz"):
            no_canary_in(archive.read_bytes(), archive.name)
        canary_unchanged(stack)
    finally:
        put_back(stack, NOTEBOOKS)


def test_restore_refuses_a_linked_notebook_dir(stack):
    plant(stack, NOTEBOOKS, CANARY)
    try:
        proc = fab(stack, "restore", "--archive", str(stack["archive"]), check=False)
        assert proc.returncode != 0
        one_line_naming(proc, NOTEBOOKS, CANARY)
        canary_unchanged(stack)
        snapshots_hold_no_canary(stack)
    finally:
        put_back(stack, NOTEBOOKS)


def test_backup_and_restore_read_a_linked_subfolder_as_the_user(stack, tmp_path):
    """A link inside the notebook dir is the user's to make: backup stores it as a link,
    and restore's safety snapshot reads through it only what the user could read."""
    plant(stack, f"{NOTEBOOKS}/sub", f"{CANARY}/sub")
    try:
        fab(stack, "backup", "--dest", str(tmp_path))
        [archive] = tmp_path.glob("*.tar.gz")
        no_canary_in(archive.read_bytes(), archive.name)
        proc = fab(stack, "restore", "--archive", str(stack["archive"]), check=False)
        assert "Traceback" not in proc.stdout + proc.stderr
        canary_unchanged(stack)
        snapshots_hold_no_canary(stack)
    finally:
        stack["runner"].run(f"rm -rf {NOTEBOOKS}/sub")
        as_user(stack, f"import os; os.rename('{NOTEBOOKS}/sub.real', '{NOTEBOOKS}/sub')")


def test_with_the_link_put_back_a_deploy_converges_then_changes_nothing(stack):
    assert stack["runner"].run(f"test -d {NOTEBOOKS} && test ! -L {NOTEBOOKS}").ok
    fab(stack, "deploy")
    again = fab(stack, "deploy")
    assert "sandbox1  ok, no changes" in again.stdout, again.stdout
    canary_unchanged(stack)
    assert stack["runner"].run(f"stat -c '%U:%G %a' {NOTEBOOKS}").stdout.strip() == "jupyter:jupyter 750"
    assert re.search(r"mine-top", stack["runner"].run(f"cat {NOTEBOOKS}/a.txt").stdout)
