"""Fact parsers (pure) and the one-round-trip batch, on canned output and on the local shell."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from fakehost import FakeHost, FakeRunner, FakeUnit
from unit_support import LocalRunner

from jupyterfab.engine import facts
from jupyterfab.engine.facts import FactError, Failed, gather
from jupyterfab.engine.facts.commands import CommandRc
from jupyterfab.engine.facts.files import (
    MANIFEST_NAME,
    STAT_GROUP_SCRIPT,
    FileContent,
    FileInfo,
    PathExists,
    Stat,
    TreeHashes,
)
from jupyterfab.engine.facts.packages import AptListsStale, DebPackages
from jupyterfab.engine.facts.users import GroupInfo, UserInfo
from jupyterfab.engine.initsys.systemd import SystemdUnit
from jupyterfab.engine.initsys.upstart import UPSTART_SCRIPT, UpstartJob, UpstartJobState
from jupyterfab.engine.runner import CmdResult
from jupyterfab.stack import upgrade
from jupyterfab.stack.jupyter_versions import VERSIONS_SCRIPT, InstalledVersions
from jupyterfab.stack.probe import HostInfo

SHA = "a" * 64


# --- parsers --------------------------------------------------------------------

def test_stat_parse():
    assert Stat("/x").parse("absent\n%%stat\n%%sha256\n", 0) is None
    assert Stat("/x", checksum=True).parse(
        f"exists|sha256\n%%stat\nregular file|640|root|www-data\n%%sha256\n{SHA}  /x\n", 0) == \
        FileInfo("file", 0o640, "root", "www-data", SHA, False)
    # a link root may follow (its own, in a folder only it writes): read through, and said
    root_link = "@0|777|0|755|0|555|1\n"
    assert Stat("/x").parse(f"{root_link}exists|\n%%stat\nregular empty file|600|a|b\n%%sha256\n", 0) == \
        FileInfo("file", 0o600, "a", "b", None, True)
    assert Stat("/d").parse("exists|\n%%stat\ndirectory|2775|root|staff\n%%sha256\n", 0).is_dir
    assert Stat("/l").parse("broken-link\n%%stat\n%%sha256\n", 0).kind == "broken-link"
    with pytest.raises(FactError):
        Stat("/x").parse("stat: cannot statx\n", 1)
    with pytest.raises(FactError):
        Stat("/x", checksum=True).parse("exists|sha256\n%%stat\nregular file|640|root|root\n%%sha256\n"
                                        "not-a-hash\n", 0)
    with pytest.raises(FactError):
        Stat("/x").parse("@0|777|x|755|0|555|1\nabsent\n%%stat\n%%sha256\n", 0)


def test_stat_reports_the_first_link_root_must_not_follow():
    """A link someone else owns, or one in a folder others can write, is the answer,
    whatever is beyond it; the links before it that root may follow are not."""
    trusted = "@0|777|0|755|0|555|1\n"
    planted = "@1000|777|1000|750|0|555|3\n"
    in_shared = "@0|777|0|1777|0|555|2\n"
    dir_line = "exists|\n%%stat\ndirectory|755|root|root\n%%sha256\n"
    assert Stat("/home/u/nb/x").parse(trusted + planted + dir_line, 0) == \
        FileInfo("link", is_link=True, link="/home/u/nb")
    assert Stat("/home/u/nb").parse(planted + "absent\n%%stat\n%%sha256\n", 0).link == "/home/u/nb"
    assert Stat("/tmp/l/x").parse(in_shared + dir_line, 0).link == "/tmp/l"
    assert Stat("/home/u").parse(trusted + dir_line, 0) == FileInfo("directory", 0o755, "root", "root")


def test_dpkg_parse_many_packages_in_one_probe():
    out = ("nginx\tinstall ok installed\t1.22.1-9\n"
           "libc6:amd64\tinstall ok installed\t2.36-9\n"
           "apache2\tdeinstall ok config-files\t2.4.57-2\n")
    fact = DebPackages(("nginx", "libc6", "apache2", "nosuch"))
    assert fact.parse(out, 1) == {"nginx": "1.22.1-9", "libc6": "2.36-9", "apache2": None, "nosuch": None}
    assert "nginx" in fact.command().text and "nosuch" in fact.command().text
    with pytest.raises(FactError):
        fact.parse("", 127)


def test_apt_lists_stale_parse():
    fact = AptListsStale()
    assert fact.parse("", 0) is True                                  # no lists at all
    assert fact.parse("lists 200.5\nlists 100\nsources 150\n", 0) is False
    assert fact.parse("lists 100\nsources 150\nsources 90\n", 0) is True


def test_user_and_group_parse():
    user = UserInfo("jupyter").parse(
        "jupyter:x:999:996::/var/lib/jupyter:/usr/sbin/nologin\njupyter\njupyter docker users\n", 0)
    assert (user.uid, user.home, user.shell, user.primary_group, user.groups) == \
        (999, "/var/lib/jupyter", "/usr/sbin/nologin", "jupyter", ("docker", "users"))
    assert UserInfo("nobody2").parse("", 2) is None
    assert GroupInfo("docker").parse("docker:x:998:ann,bob\n", 0).members == ("ann", "bob")
    assert GroupInfo("none").parse("", 2) is None


def test_systemd_unit_parse():
    unit = SystemdUnit("nginx").parse("LoadState=loaded\nActiveState=active\nSubState=running\n"
                                      "UnitFileState=enabled\nNeedDaemonReload=yes\n", 0)
    assert unit.running and unit.enabled and unit.exists and unit.need_daemon_reload
    missing = SystemdUnit("x").parse("LoadState=not-found\nActiveState=inactive\nUnitFileState=\n", 0)
    assert not missing.exists and not missing.running and not missing.enabled
    assert "-p LoadState -p ActiveState" in SystemdUnit("nginx").command().text
    with pytest.raises(FactError):
        SystemdUnit("x").parse("", 1)   # e.g. "System has not been booted with systemd"


def test_upstart_job_parse_running_job():
    job = UpstartJob("jupyter").parse("kind=upstart\nstart_on=yes\n"
                                      "status=jupyter start/running, process 1234\n", 0)
    assert (job.kind, job.known, job.goal, job.state, job.pid) == ("upstart", True, "start", "running", 1234)
    assert job.running and job.enabled and job.exists


def test_upstart_job_parse_stopped_unknown_and_transitional_jobs():
    stopped = UpstartJob("jupyter").parse("kind=upstart\nstart_on=yes\nstatus=jupyter stop/waiting\n", 0)
    assert stopped.known and not stopped.running and stopped.status_text == "stop/waiting"
    # a job file Upstart has not loaded (just written, or invalid)
    unknown = UpstartJob("jupyter").parse(
        "kind=upstart\nstart_on=yes\nstatus=initctl: Unknown job: jupyter\n", 0)
    assert unknown.exists and not unknown.known and not unknown.running
    starting = UpstartJob("jupyter").parse(
        "kind=upstart\nstatus=jupyter start/post-start, process 77\n", 0)
    assert starting.pid == 77 and not starting.running
    # another job's status line is not this job's
    other = UpstartJob("jupyter").parse("kind=upstart\nstatus=jupyter-x start/running, process 1\n", 0)
    assert not other.known


def test_upstart_job_enabled_needs_start_on_and_no_manual():
    def parse(*lines):
        return UpstartJob("j").parse("kind=upstart\n" + "".join(f"{x}\n" for x in lines)
                                     + "status=j stop/waiting\n", 0)
    assert parse("start_on=yes").enabled
    assert not parse().enabled                                      # no start on: only by hand
    assert not parse("start_on=yes", "manual=override").enabled
    job = parse("start_on=yes", "manual=job")
    assert not job.enabled and job.manual_in_job and not job.manual_in_override


def test_upstart_probe_parse_sysv_script_and_missing():
    running = UpstartJob("nginx").parse("kind=sysv\nlinks=yes\nstatus_rc=0\n", 0)
    assert running.kind == "sysv" and running.running and running.enabled
    stopped = UpstartJob("nginx").parse("kind=sysv\nstatus_rc=3\n", 0)
    assert not stopped.running and not stopped.enabled
    assert not UpstartJob("nope").parse("kind=missing\n", 0).exists
    with pytest.raises(FactError):
        UpstartJob("x").parse("", 0)
    with pytest.raises(FactError):
        UpstartJob("x").parse("kind=sysv\n", 0)                     # no status exit code


def test_upstart_probe_script_runs_on_a_real_shell():
    # the parser's input comes from this script: it must at least run, and answer
    # "missing" for a name that has neither a job nor a SysV script
    values = gather(LocalRunner(), [UpstartJob("surely-not-a-job-xyz")])
    assert values[UpstartJob("surely-not-a-job-xyz")] == UpstartJobState("missing")


def test_upstart_probe_script_reads_job_override_and_sysv_files(tmp_path):
    # The real script against a fake /etc and fake initctl/service commands, so its
    # greps and globs are tested, not just the parser.
    etc, bin_dir = tmp_path / "etc", tmp_path / "bin"
    (etc / "init").mkdir(parents=True)
    (etc / "init.d").mkdir()
    (etc / "rc2.d").mkdir()
    bin_dir.mkdir()
    (bin_dir / "initctl").write_text('#!/bin/sh\necho "$2 start/running, process 99"\n')
    (bin_dir / "service").write_text('#!/bin/sh\nexit 3\n')
    for tool in ("initctl", "service"):
        os.chmod(bin_dir / tool, 0o755)
    (etc / "init" / "jupyter.conf").write_text("# start on nothing\n  start on runlevel [2345]\nexec x\n")
    (etc / "init" / "jupyter.override").write_text("manual  # disabled by hand\n")
    (etc / "init" / "other.conf").write_text("exec y\nmanual\n")
    (etc / "init.d" / "nginx").write_text("#!/bin/sh\n")
    os.chmod(etc / "init.d" / "nginx", 0o755)
    (etc / "rc2.d" / "S20nginx").symlink_to(etc / "init.d" / "nginx")

    class Rooted(UpstartJob):
        def command(self):
            script = UPSTART_SCRIPT.replace("/etc/", f"{etc}/")
            return facts.cmd("env", f"PATH={bin_dir}:{os.environ['PATH']}", "sh", "-c", script, "sh", self.name)

    values = gather(LocalRunner(), [Rooted("jupyter"), Rooted("other"), Rooted("nginx"), Rooted("none")])
    jupyter, other, nginx, none = (values[Rooted(n)] for n in ("jupyter", "other", "nginx", "none"))
    assert (jupyter.start_on, jupyter.manual_in_override, jupyter.manual_in_job) == (True, True, False)
    assert jupyter.running and jupyter.pid == 99 and not jupyter.enabled
    assert (other.start_on, other.manual_in_job) == (False, True)
    assert nginx.kind == "sysv" and nginx.enabled and nginx.sysv_status == 3 and not nginx.running
    assert none.kind == "missing"


def test_tree_hashes_parse():
    out = f"{SHA}  ./a.whl\n{'b' * 64}  ./sub/b.whl\n\\{SHA}  ./we\\\\ird\n"
    assert TreeHashes("/w").parse(out, 0) == {"a.whl": SHA, "sub/b.whl": "b" * 64}


def test_systemd_units_are_asked_by_one_systemctl_show():
    host = FakeHost()
    host.units["nginx"] = FakeUnit(active=True, enabled=True)
    wanted = [SystemdUnit("nginx"), SystemdUnit("jupyter"), SystemdUnit("ng*")]
    runner = FakeRunner(host)
    together = gather(runner, wanted)
    assert runner.batches[0][0].endswith("-- nginx jupyter") and runner.batches[0][1].endswith("-- 'ng*'")
    assert together == {fact: gather(runner, [fact])[fact] for fact in wanted}
    assert together[wanted[0]].running and not together[wanted[1]].exists
    group = wanted[0].group()
    answer = "LoadState=loaded\nActiveState=active\n\nLoadState=not-found\nActiveState=inactive\n"
    assert group.split(wanted[:2], answer, 0) == [("LoadState=loaded\nActiveState=active\n", 0),
                                                   ("LoadState=not-found\nActiveState=inactive\n", 0)]
    for broken, rc in [(answer, 1), (answer.replace("\n\n", "\n"), 0)]:
        for fact, (out, a_rc) in zip(wanted[:2], group.split(wanted[:2], broken, rc), strict=True):
            with pytest.raises(FactError):
                fact.parse(out, a_rc)


# --- the batch script -----------------------------------------------------------

def test_batch_output_round_trip_keeps_exact_stdout():
    marker = "JFAB-0123456789abcdef"
    out = (f"{marker} 0 begin\nno newline at end\n{marker} 0 rc 0\n"
           f"{marker} 1 begin\n\n{marker} 1 rc 3\n"
           f"{marker} 2 begin\ntwo\nlines\n\n{marker} 2 rc 0\n")
    assert facts.split_batch_output(out, marker, 3) == {
        0: ("no newline at end", 0), 1: ("", 3), 2: ("two\nlines\n", 0)}


def test_gather_is_one_round_trip_and_dedupes():
    runner = FakeRunner(FakeHost())
    runner.fake.add_file("/etc/a", "A")
    wanted = [Stat("/etc/a", True), Stat("/etc/a", True), PathExists("/etc/a"), Stat("/etc/b")]
    values = gather(runner, wanted)
    assert runner.calls == ["facts: 2 probes"]      # both paths' stats are one probe
    assert values[Stat("/etc/a", True)].sha256 == hashlib.sha256(b"A").hexdigest()
    assert values[PathExists("/etc/a")] is True and values[Stat("/etc/b")] is None
    assert gather(runner, []) == {} and runner.round_trips == 1


def test_a_probe_without_answer_fails_only_itself():
    class Truncating:
        host = "t"

        def run(self, command, *, stdin=None, timeout=None):
            marker = command.parts[2].split("'")[1].split()[0]
            return CmdResult(137, f"{marker} 0 begin\nabsent\n%%stat\n%%sha256\n{marker} 0 rc 0\n"
                                  f"{marker} 1 begin\n", "Killed")

    values = gather(Truncating(), [Stat("/a"), PathExists("/b")])
    assert values[Stat("/a")] is None
    assert isinstance(values[PathExists("/b")], Failed) and "Killed" in values[PathExists("/b")].error


# --- the same probes on the real local shell -----------------------------------

needs_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("stat", "sha256sum", "head", "find")),
                                 reason="needs GNU coreutils")


@needs_tools
def test_real_shell_batch(tmp_path):
    (tmp_path / "f").write_bytes(b"content without newline")
    os.chmod(tmp_path / "f", 0o640)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "w.whl").write_bytes(b"wheel")
    (tmp_path / "tree" / MANIFEST_NAME).write_text("manifest")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    (tmp_path / "odd dir; $(touch pwned)").mkdir()
    runner = LocalRunner()
    wanted = [Stat(str(tmp_path / "f"), True), Stat(str(tmp_path / "nope")), Stat(str(tmp_path)),
              Stat(str(tmp_path / "link")), Stat(str(tmp_path / "odd dir; $(touch pwned)")),
              FileContent(str(tmp_path / "f")), FileContent(str(tmp_path / "nope")),
              PathExists(str(tmp_path / "f")), CommandRc("exit 3"), CommandRc("echo out; true"),
              CommandRc("cat; exit 0"),      # reads stdin: must get EOF, not the script
              TreeHashes(str(tmp_path / "tree")), TreeHashes(str(tmp_path / "nope"))]
    values = gather(runner, wanted)
    assert len(runner.calls) == 1
    f = values[wanted[0]]
    assert (f.kind, f.mode, f.sha256) == ("file", 0o640, hashlib.sha256(b"content without newline").hexdigest())
    assert values[wanted[1]] is None and values[wanted[2]].is_dir
    assert values[wanted[3]].is_link and values[wanted[3]].is_file
    assert values[wanted[4]].is_dir and not (tmp_path / "pwned").exists()
    assert values[wanted[5]] == "content without newline" and values[wanted[6]] is None
    assert values[wanted[7]] is True
    assert [values[w] for w in wanted[8:11]] == [3, 0, 0]
    assert values[wanted[11]] == {"sub/w.whl": hashlib.sha256(b"wheel").hexdigest()}
    assert values[wanted[12]] == {}


@needs_tools
def test_real_shell_stat_group_answers_as_each_path_alone(tmp_path):
    """One stat and one sha256sum for every path give each Stat what its own probe gives."""
    (tmp_path / "f").write_bytes(b"data")
    (tmp_path / "empty").write_bytes(b"")
    os.chmod(tmp_path / "empty", 0o600)
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    odd = ["new\nline", "back\\slash", "pi|pe", "-dash", "sp ace; $(touch pwned)", "%%stat", "x\n%%stat"]
    for name in odd:
        (tmp_path / name).write_bytes(name.encode())
    names = ["f", "empty", "d", "fifo", "link", "dirlink", "broken", "nope", *odd]
    wanted = [Stat(str(tmp_path / n), checksum) for n in names for checksum in (True, False)]
    wanted += [Stat("/dev/null", True)]
    runner = LocalRunner()
    together = gather(runner, wanted, timeout=30)
    assert len(runner.calls) == 1 and STAT_GROUP_SCRIPT in runner.calls[0]
    alone = {fact: gather(runner, [fact], timeout=30)[fact] for fact in wanted}
    assert together == alone
    assert not any(isinstance(v, Failed) for v in together.values())
    assert together[Stat(str(tmp_path / "new\nline"), True)].sha256 == hashlib.sha256(b"new\nline").hexdigest()
    assert together[Stat(str(tmp_path / "fifo"), True)].kind == "other"
    assert together[Stat(str(tmp_path / "broken"), True)].kind == "broken-link"
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError):      # the walk starts at /; "-" would be sha256sum's stdin
        Stat("relative-path")


def test_stat_group_answer_that_cannot_be_read_fails_every_member():
    wanted = [Stat("/a", True), Stat("/b")]
    group = wanted[0].group()
    link = "@0|777|0|755|0|555|1"
    good = f"exists|sha256\n{link}\nabsent\n%%stat\nregular file|644|root|root\n%%sha256\n{SHA}  /a\n"
    assert group.split(wanted, good, 0) == [
        (f"exists|sha256\n%%stat\nregular file|644|root|root\n%%sha256\n{SHA}  /a\n", 0),
        (f"{link}\nabsent\n%%stat\n%%sha256\n", 0)]
    for broken, rc in [(good, 1), (good.replace(f"{SHA}  /a\n", ""), 0),
                       (good.replace("absent\n", ""), 0), (good[:-1], 0),
                       (good.partition("%%sha256")[0], 0), ("exists|sha256\nabsent\n", 0)]:
        answers = group.split(wanted, broken, rc)
        assert all(a_rc != 0 for _, a_rc in answers), (broken, rc)
        for fact, (out, a_rc) in zip(wanted, answers, strict=True):
            with pytest.raises(FactError):
                fact.parse(out, a_rc)


def test_engine_scripts_run_in_the_probe_subshell_and_deployer_text_in_its_own_sh():
    script = facts.batch_script([Stat("/a b").command(), CommandRc("exit 3").command()], "JFAB-x")
    assert f"( set -- - '/a b'\n{STAT_GROUP_SCRIPT}\n)" in script
    assert "( sh -c 'exit 3'\n)" in script


def test_real_shell_deployer_text_that_cannot_parse_fails_only_itself(tmp_path):
    wanted = [CommandRc("if then fi ("), Stat(str(tmp_path)), PathExists(str(tmp_path))]
    values = gather(LocalRunner(), wanted)
    assert values[wanted[0]] == 2 and values[wanted[1]].is_dir and values[wanted[2]] is True


@needs_tools
def test_real_shell_batch_over_stdin_when_large(tmp_path, monkeypatch):
    monkeypatch.setattr(facts, "_MAX_INLINE_SCRIPT", 0)
    runner = LocalRunner()
    wanted = [CommandRc("cat >/dev/null; exit 4"), PathExists(str(tmp_path)), CommandRc("exit 5")]
    values = gather(runner, wanted)
    assert runner.calls == ["sh -s"]
    assert [values[w] for w in wanted] == [4, True, 5]


@pytest.mark.skipif(not shutil.which("dpkg-query") or not shutil.which("getent"), reason="Debian tools")
def test_real_debian_probes():
    runner = LocalRunner()
    wanted = [DebPackages(("dpkg", "surely-not-a-package-xyz")), UserInfo("root"),
              UserInfo("surely-nobody-xyz"), GroupInfo("root"), AptListsStale()]
    values = gather(runner, wanted)
    assert values[wanted[0]]["dpkg"] and values[wanted[0]]["surely-not-a-package-xyz"] is None
    assert values[wanted[1]].uid == 0 and values[wanted[1]].primary_group == "root"
    assert values[wanted[2]] is None and values[wanted[3]].gid == 0
    # apt's lists are stale when missing or older than a sources file: read here with Python
    lists = [p.stat().st_mtime for p in Path("/var/lib/apt/lists").glob("*_Packages*") if p.is_file()]
    sources = [p.stat().st_mtime for p in [Path("/etc/apt/sources.list"),
                                           *Path("/etc/apt/sources.list.d").glob("*")]
               if p.is_file() and p.suffix in (".list", ".sources")]
    assert values[wanted[4]] is (not lists or max(sources, default=0.0) > max(lists))


# --- the installed JupyterLab and Jupyter Server: one probe, one parser -----------------

def test_installed_versions_read_from_dist_info_on_a_real_shell(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for dist in ("jupyterlab-4.5.11", "jupyter_server-2.17.0", "jupyterlab_server-2.27.3",
                 "jupyter_server_terminals-0.5.3"):
        (site / f"{dist}.dist-info").mkdir(parents=True)
    fact = InstalledVersions(str(tmp_path))
    assert gather(LocalRunner(), [fact])[fact] == {"jupyterlab": "4.5.11", "jupyter_server": "2.17.0"}
    empty = InstalledVersions(str(tmp_path / "none"))
    assert gather(LocalRunner(), [empty])[empty] == {"jupyterlab": None, "jupyter_server": None}


def test_the_version_probe_is_written_once_and_embedded_where_it_is_asked():
    package = Path(facts.__file__).resolve().parents[2]
    writing = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if "site-packages/jupyterlab-*" in p.read_text()]
    assert writing == ["stack/jupyter_versions.py"]
    assert VERSIONS_SCRIPT in HostInfo.SCRIPT and VERSIONS_SCRIPT in upgrade.PROBE
