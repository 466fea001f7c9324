"""restore's host script, run for real: what it would overwrite is listed, and saved
into the snapshot before the archive is unpacked."""

import hashlib
import io
import os
import subprocess
import tarfile

import pytest
from unit_support import LocalRunner

from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.stack import operations

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run(notebooks, data: bytes, snapshot: str):
    command = operations.restore_command(str(notebooks), hashlib.sha256(data).hexdigest(), "root", snapshot)
    return subprocess.run(["sh", "-c", command.text], input=data, capture_output=True)


def test_newer_work_is_saved_before_it_is_overwritten_and_a_dry_run_only_lists_it(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "a.ipynb").write_bytes(b"newer work")
    (notebooks / "untouched.ipynb").write_bytes(b"mine")
    data = archive({"a.ipynb": b"from the backup", "b.ipynb": b"only in the backup"})

    dry = run(notebooks, data, "")
    assert dry.returncode == 0 and dry.stdout.decode().splitlines() == ["overwrites=./a.ipynb"]
    assert (notebooks / "a.ipynb").read_bytes() == b"newer work" and not (notebooks / "b.ipynb").exists()

    snapshot = tmp_path / "snapshots" / "before.tar.gz"
    done = run(notebooks, data, str(snapshot))
    assert done.returncode == 0, done.stderr
    assert f"snapshot={snapshot}" in done.stdout.decode()
    assert (notebooks / "a.ipynb").read_bytes() == b"from the backup"
    assert (notebooks / "untouched.ipynb").read_bytes() == b"mine"
    with tarfile.open(snapshot) as tar:
        assert tar.getnames() == ["./a.ipynb"]
        assert tar.extractfile("./a.ipynb").read() == b"newer work"


def test_the_snapshot_reads_a_linked_subfolder_as_the_notebook_user(tmp_path):
    """A link in the notebook dir is the user's to make; through it, the snapshot (root's,
    on the host) gets only what the notebook user could read, never a root-only file."""
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    (private / "b.ipynb").write_bytes(b"root's secret")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "a.ipynb").write_bytes(b"newer work")
    (notebooks / "sub").symlink_to(private)
    os.chmod(tmp_path, 0o755)
    for path in (notebooks, notebooks / "a.ipynb"):
        os.lchown(path, 65534, 65534)
    os.lchown(notebooks / "sub", 65534, 65534)
    data = archive({"a.ipynb": b"from the backup", "sub/b.ipynb": b"from the backup"})
    snapshot = tmp_path / "snapshots" / "before.tar.gz"
    command = operations.restore_command(str(notebooks), hashlib.sha256(data).hexdigest(), "nobody", str(snapshot))
    done = subprocess.run(["sh", "-c", command.text], input=data, capture_output=True)
    assert done.stdout.decode().splitlines()[:1] == ["overwrites=./a.ipynb"], done
    with tarfile.open(snapshot) as tar:
        assert tar.getnames() == ["./a.ipynb"]
    assert (private / "b.ipynb").read_bytes() == b"root's secret"


@pytest.mark.parametrize("sidecar", [True, False])
def test_a_restore_without_the_sha256_beside_the_archive_says_it_is_unverified(tmp_path, sidecar):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    data = archive({"a.ipynb": b"from the backup"})
    tarball = tmp_path / "jupyter1-notebooks-20261201.tar.gz"
    tarball.write_bytes(data)
    if sidecar:
        tarball.with_name(tarball.name + ".sha256").write_text(
            f"{hashlib.sha256(data).hexdigest()}  {tarball.name}\n")
    host = Host("jupyter1", "203.0.113.10",
                vars={**VAR_DEFAULTS, "notebook_dir": str(notebooks), "jupyter_user": "root"})
    for dry_run in (True, False):
        out = operations.restore(tarball, "20261201", dry_run=dry_run)(host, LocalRunner())
        assert out.ok, out.text
        said = "unverified: no jupyter1-notebooks-20261201.tar.gz.sha256 beside it" in out.text
        assert said is not sidecar, out.text
    assert (notebooks / "a.ipynb").read_bytes() == b"from the backup"
