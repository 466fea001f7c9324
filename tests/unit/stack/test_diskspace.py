"""The free-space preflight: the probe's script for real, and the rule (pure)."""

import gzip
import io
import subprocess
import tarfile

from fakehost import FakeHost, FakeRunner

from jupyterfab import inventory
from jupyterfab.engine.shell import Secret
from jupyterfab.stack import deploy, diskspace


def test_the_probe_measures_the_nearest_existing_ancestor_and_lists_environments(tmp_path):
    (tmp_path / "prefix" / "envs" / "env-a").mkdir(parents=True)
    wanted = f"{tmp_path}/prefix\n{tmp_path}/not/yet/there"
    out = subprocess.run(["sh", "-c", diskspace.SCRIPT, "sh", wanted, str(tmp_path / "prefix")],
                         capture_output=True, text=True, check=True).stdout
    free, envs = diskspace.parse(out.splitlines())
    assert set(free) == {f"{tmp_path}/prefix", f"{tmp_path}/not/yet/there"}
    assert all(kb > 0 for kb in free.values()) and envs == {"env-a"}


def test_a_new_environment_needs_its_unpacked_size_in_the_prefix(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("big")
        info.size = 4 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    bundle = tmp_path / "env-py3.11-abc.tar.gz"
    bundle.write_bytes(gzip.compress(buffer.getvalue()))
    assert diskspace.unpacked_kb(bundle) >= 4096
    need = diskspace.needs("/opt/jf/", str(bundle), set())
    assert need["/opt/jf"] >= diskspace.MIN_PREFIX_KB + 4096 and need["/etc/nginx"] == 1024
    assert diskspace.needs("/opt/jf", str(bundle), {"env-py3.11-abc"})["/opt/jf"] == diskspace.MIN_PREFIX_KB
    message = diskspace.shortfall("h1", {"/opt/jf": 2048, "/etc/nginx": 10 ** 6}, need)
    assert message.startswith("h1: not enough disk space: /opt/jf has 2.0 MB free, needs ")
    assert "/etc/nginx" not in message
    assert diskspace.shortfall("h1", {"/opt/jf": 10 ** 7}, need) is None


def test_a_full_config_dir_is_refused_up_front_naming_the_path_and_its_free_space():
    fake = FakeHost()
    fake.free_kb["/etc/nginx"] = 100
    runner = FakeRunner(fake)
    host = inventory.Host("web1", "203.0.113.5", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True})
    report = deploy.deploy_host(host, deploy.Options(password=Secret("pw"), log=lambda _: None), runner)
    assert report.text == ("web1: not enough disk space: /etc/nginx has 0.1 MB free, needs 1.0 MB; "
                            "nothing was changed (free some space and run again)")
    assert runner.calls == [] and len(runner.under_lock) == 1    # the probe (with the lock) only


def test_disk_space_refusal_can_fail(monkeypatch):
    """The preflight is what refuses: without it the same host gets past the probe."""
    fake = FakeHost()
    fake.free_kb["/etc/nginx"] = 100
    monkeypatch.setattr(diskspace, "shortfall", lambda *a: None)
    host = inventory.Host("web1", "203.0.113.5", vars={**inventory.VAR_DEFAULTS, "allow_plain_http": True})
    report = deploy.deploy_host(host, deploy.Options(password=Secret("pw"), log=lambda _: None),
                                FakeRunner(fake))
    assert "not enough disk space" not in report.text


def test_a_df_that_skips_a_path_gives_no_figures_rather_than_shifted_ones(tmp_path, monkeypatch):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "df").write_text("#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
                              "echo '/dev/x 100 50 50 50% /'\n")
    (stubs / "df").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}:/usr/bin:/bin")
    out = subprocess.run(["sh", "-c", diskspace.SCRIPT, "sh", f"{tmp_path}\n/etc", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert diskspace.parse(out.splitlines())[0] == {}
    (stubs / "df").write_text((stubs / "df").read_text() + "echo '/dev/y 100 50 77 50% /etc'\n")
    out = subprocess.run(["sh", "-c", diskspace.SCRIPT, "sh", f"{tmp_path}\n/etc", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert diskspace.parse(out.splitlines())[0] == {str(tmp_path): 50, "/etc": 77}
