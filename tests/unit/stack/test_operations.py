"""Day-2 tasks: their pure parts, and each task against a fake host, once per init
system (the Upstart path cannot be tried on a real host here: Debian has no Upstart)."""

from __future__ import annotations

import _thread
import hashlib
import io
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest
from fakehost import FakeHost, FakeRunner, FakeUnit
from unit_support import commands_on_path, fab_task, plans_counted

from jupyterfab.engine import fleet, initsys
from jupyterfab.engine.initsys.upstart import log_path
from jupyterfab.engine.shell import Secret
from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.stack import operations, passwords, serving
from jupyterfab.stack.envs import provider
from jupyterfab.stack.front import tlsplan

UPSTART_LOG = log_path("jupyter")

CONFIG = "/etc/jupyterfab/jupyter_server_config.py"
JOB = "/etc/init/jupyter.conf"
COOKIE_SECRET = "/home/jupyter/.local/share/jupyter/runtime/jupyter_cookie_secret"
PROBE = initsys.probe_command(operations.SERVICE).display


def test_sections_split_one_commands_output():
    out = "==props==\nActiveState=active\nMainPID=7\n==version==\n2.21.1\n==log==\na\nb\n"
    assert initsys.sections(out) == {"props": ["ActiveState=active", "MainPID=7"],
                                        "version": ["2.21.1"], "log": ["a", "b"]}
    assert initsys.sections("noise before any marker\n") == {}


def test_durations_read_like_uptime():
    assert operations._duration(59) == "00:00:59"
    assert operations._duration(3 * 86400 + 3661) == "3d 01:01:01"
    assert operations._duration(-5) == "00:00:00"


# --- the init probe ---------------------------------------------------------------------

def test_the_probe_reads_init_pid1_and_the_upstart_jobs_status():
    found = initsys.parse("init=upstart\npid1=init\nstatus=jupyter start/running, process 812\n", "jupyter")
    assert found.init == "upstart" and found.pid1 == "init"
    assert (found.job.goal, found.job.state, found.job.pid) == ("start", "running", 812)
    assert initsys.parse("init=upstart\npid1=init\nstatus=initctl: Unknown job: jupyter\n", "jupyter").job is None
    assert initsys.parse("init=systemd\npid1=systemd\n", "jupyter") == initsys.Found("systemd", "systemd")
    assert initsys.parse("init=none\npid1=openrc-init\n", "jupyter").init == "none"


def test_a_probe_that_could_not_run_is_not_mistaken_for_a_host_without_init():
    found = initsys.parse("", "jupyter")
    assert found.init == ""
    with pytest.raises(operations.Unsupported) as refused:
        initsys.supported("web1", found, "it changed nothing on this host",
                       "sudo: a password is required\n")
    assert str(refused.value) == ("web1: could not tell which init system runs it (sudo: a password "
                                  "is required), so it changed nothing on this host")


@pytest.mark.parametrize("initctl, expected", [
    ('case "$1" in version) echo "init (upstart 1.12.1)";; status) echo "$2 stop/waiting";; esac',
     {"init=upstart", "status=jupyter stop/waiting"}),
    ('echo "initctl (systemd shim)"', {"init=none"}),
])
def test_the_probe_script_itself_tells_upstart_from_neither(tmp_path, initctl, expected):
    env = commands_on_path(tmp_path / "bin", initctl=initctl)
    # This machine may run systemd itself: the probe looks for it in an empty folder instead.
    probe = initsys.PROBE.replace("/run/systemd/system", str(tmp_path / "no-systemd"))
    assert probe != initsys.PROBE
    done = subprocess.run(["sh", "-c", probe, "sh", "jupyter"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    lines = set(done.stdout.splitlines())
    assert expected <= lines and any(line.startswith("pid1=") for line in lines)
    if "init=none" in expected:
        assert not any(line.startswith("status=") for line in lines)


# --- the tasks on a fake host --------------------------------------------------------------

def host() -> Host:
    return Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS))


# host()'s Cloudflare/TLS plan: plain HTTP (its name is not a public one).
PLAN = tlsplan.plan_for("jupyter1", dict(VAR_DEFAULTS, allow_plain_http=True))


def deployed(init: str, running: bool = True) -> FakeRunner:
    """A host as the deploy leaves it: the service, its config, its environment and log."""
    h = FakeHost()
    h.init, h.pid1 = init, {"systemd": "systemd", "upstart": "init", "none": "openrc-init"}[init]
    h.os = "ubuntu 14.04" if init == "upstart" else "debian 12"
    h.add_file(f"{provider.env_dir(host().vars)}/bin/jupyter-server", "#!/bin/sh\n", 0o755)
    h.add_file(serving.CHECK, "#!/usr/bin/python3 -I\n", 0o755)
    h.users["jupyter"] = h.users["root"].__class__("jupyter", 999, 999, "/home/jupyter")
    h.groups["jupyter"] = 999
    old = passwords.hash_password(Secret("the old password"))
    h.add_file(CONFIG, f'c.ServerApp.sock = "{serving.SOCKET}"\nc.PasswordIdentityProvider.hashed_password = '
                       f'"{old}"\nc.ServerApp.cookie_secret_file = "{COOKIE_SECRET}"\n',
               0o640, "root", "jupyter")
    h.add_file(COOKIE_SECRET, "c2VjcmV0\n", 0o600, "jupyter", "jupyter")
    h.units["jupyter"] = FakeUnit(active=running, enabled=True)
    if init == "upstart":
        h.add_file(JOB, "respawn\n")
        h.units["jupyter"].loaded_job = h.files[JOB].data
        h.add_file(UPSTART_LOG, "".join(f"[I 2026-11-26 02:14:0{i} ServerApp] line {i}\n"
                                             for i in range(6)), 0o640)
    elif init == "systemd":
        h.add_file("/etc/systemd/system/jupyter.service", "[Service]\n")
    return FakeRunner(h, "jupyter1")


def test_upstart_restart_is_initctl_restart_and_says_where_the_job_is():
    runner = deployed("upstart")
    out = operations.control("restart")(host(), runner)
    assert out.ok and out.text == "restart: jupyter is start/running, pid 4242"
    assert runner.commands() == [PROBE, "initctl restart jupyter ; echo ==status== ; initctl status jupyter"]
    assert runner.fake.units["jupyter"].restarts == 1


def test_upstart_restart_of_a_stopped_job_starts_it_as_systemctl_restart_would():
    runner = deployed("upstart", running=False)
    out = operations.control("restart")(host(), runner)
    assert out.ok and "start/running" in out.text
    assert runner.commands()[1].startswith("initctl start jupyter ;")
    assert runner.fake.units["jupyter"].starts == 1


@pytest.mark.parametrize("running", [True, False], ids=["running", "already stopped"])
def test_upstart_stop_leaves_the_job_stopped(running):
    runner = deployed("upstart", running=running)
    out = operations.control("stop")(host(), runner)
    assert out.ok and out.text == "stop: jupyter is stop/waiting"
    assert runner.commands()[1] == "initctl stop jupyter ; echo ==status== ; initctl status jupyter"
    assert not runner.fake.units["jupyter"].active


def test_upstart_start_that_fails_says_so_with_initctls_words():
    runner = deployed("upstart", running=False)
    runner.fake.units["jupyter"].fails_to_start = True
    out = operations.control("start")(host(), runner)
    assert not out.ok
    assert out.text.startswith("start: jupyter is stop/waiting") and "Job failed to start" in out.text


def test_upstart_status_reads_initctl_then_the_pids_age_the_version_and_the_log():
    runner = deployed("upstart")
    out = operations.status(host(), runner, PLAN, lines=2)
    assert out.ok, out.text
    lines = out.text.splitlines()
    assert lines[0] == "service:  jupyter start/running (Upstart job), pid 4242, restarts unknown"
    assert lines[1] == "serving:  yes, process 4242 serves /var/lib/jupyterfab/socket/jupyter.sock"
    assert lines[2] == "uptime:   01:02:03 (since Thu Nov 26 02:13:58 2026)"
    assert lines[3] == "jupyter:  JupyterLab 4.5.11, Jupyter Server 2.17.0"
    assert lines[4] == "env:      /opt/jupyterfab/venv"
    assert lines[5] == "url:      http://jupyter.example.com"
    assert lines[6:8] == ["kernels:  1 running", "  pid 4300: 64.0 MiB resident, up 00:10:00"]
    assert lines[8] == "memory:   164.0 MiB (no memory limit)"    # the user's processes together
    assert lines[9:11] == ["disk:     /home/jupyter: 6.0 GiB free of 10.0 GiB (60%)",
                           "disk:     /opt/jupyterfab: 6.0 GiB free of 10.0 GiB (60%)"]
    assert lines[11:] == ["log:", "  [I 2026-11-26 02:14:04 ServerApp] line 4",
                         "  [I 2026-11-26 02:14:05 ServerApp] line 5"]
    assert len(runner.calls) == 2 and "ps -o etimes=,lstart= -p 4242" in runner.calls[1]
    assert "systemctl" not in " ".join(runner.calls[1:]) and "journalctl" not in runner.calls[1]


def test_upstart_status_of_a_stopped_job_is_a_failure_without_uptime():
    runner = deployed("upstart", running=False)
    out = operations.status(host(), runner, PLAN)
    assert not out.ok
    assert out.text.splitlines()[:3] == [
        "service:  jupyter stop/waiting (Upstart job), pid -, restarts unknown",
        "serving:  NO: nothing listens on /var/lib/jupyterfab/socket/jupyter.sock", "uptime:   - (since -)"]
    assert "ps -o etimes=" not in runner.calls[1]     # no pid to ask about


def test_upstart_logs_are_the_jobs_log_file():
    runner = deployed("upstart")
    out = operations.logs(host(), runner, lines=3)
    assert out.ok and out.text.splitlines()[0].endswith("line 3") and len(out.text.splitlines()) == 3
    assert runner.commands() == [PROBE, f"tail -n {3 + operations.CHATTER_MARGIN} {UPSTART_LOG}"]


def test_following_the_log_tails_the_file_on_upstart_and_the_journal_as_before_on_systemd():
    upstart = initsys.Found("upstart", "init")
    assert upstart.system.log("jupyter", 50, follow=True).text == f"tail -n 50 -F {UPSTART_LOG}"
    # the journal with the same timestamps as plain `logs`
    systemd = initsys.Found("systemd").system
    assert systemd.log("jupyter", 50, follow=True).text == "journalctl -u jupyter -n 50 -f --no-pager -o short-iso"
    assert systemd.log("jupyter", 50).text == "journalctl -u jupyter -n 50 --no-pager -o short-iso"


CHATTER_LINE = ("[W 2026-11-26 02:14:01.123 ServerApp] Skipped non-installed server(s): "
                "bash-language-server, dockerfile-language-server-nodejs, javascript-typescript-"
                "langserver, jedi-language-server, julia-language-server, pyright, python-language-"
                "server, python-lsp-server, r-languageserver, sql-language-server, texlab, "
                "typescript-language-server, unified-language-server, vscode-css-languageserver-bin")


def test_fab_status_works_out_each_hosts_edge_plan_once(monkeypatch, tmp_path, capsys):
    """The fabfile's status task checks every host's plan before connecting (as deploy and
    upgrade do) and reports with that plan: each host's is worked out once."""
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("defaults:\n  vars: {allow_plain_http: true}\nhosts:\n"
                         "  jupyter1: {address: 203.0.113.10}\n  jupyter2: {address: 203.0.113.11}\n")
    asked = plans_counted(monkeypatch)
    monkeypatch.setattr(fleet, "open_runner", lambda h: deployed("systemd"))
    fab_task("status")(["jupyter1", "jupyter2"], inventory=str(inventory))
    assert sorted(asked) == ["jupyter1", "jupyter2"]
    assert capsys.readouterr().out.count("url:      http://jupyter.example.com") == 2


def test_status_shows_the_jupyterlab_version_and_the_environment_in_use():
    runner = deployed("systemd")
    runner.fake.symlinks["/opt/jupyterfab/venv"] = "/opt/jupyterfab/envs/pip-py3.11-0123456789abcdef"
    runner.fake.jupyterlab = "4.6.6"
    lines = operations.status(host(), runner, PLAN).text.splitlines()
    assert "jupyter:  JupyterLab 4.6.6, Jupyter Server 2.17.0" in lines
    assert "env:      /opt/jupyterfab/venv -> /opt/jupyterfab/envs/pip-py3.11-0123456789abcdef" in lines


def test_jupyterlabs_startup_chatter_is_left_out_of_status_and_logs():
    runner = deployed("upstart")
    runner.fake.files[UPSTART_LOG].data += f"{CHATTER_LINE}\n[I 2026-11-26 02:14:09 ServerApp] after\n".encode()
    status, logs = operations.status(host(), runner, PLAN, lines=3).text, operations.logs(host(), runner, lines=3).text
    for text in (status, logs):
        assert "Skipped non-installed" not in text
        assert "[I 2026-11-26 02:14:09 ServerApp] after" in text
        assert "line 5" in text


def test_following_the_log_leaves_the_chatter_out_and_passes_lines_whole():
    sink = io.StringIO()
    stream = operations.ChatterFilter(sink)
    for piece in ["[I 1] fir", "st\r\n", CHATTER_LINE[:40], CHATTER_LINE[40:] + "\r\n[I 2] sec", "ond\r\n[I 3"]:
        stream.write(piece)
    assert sink.getvalue() == "[I 1] first\r\n[I 2] second\r\n"


def test_several_hosts_following_into_one_sink_write_whole_lines_after_their_names():
    sink, lock = io.StringIO(), threading.Lock()
    one, two = operations.ChatterFilter(sink, "web1: ", lock), operations.ChatterFilter(sink, "web2: ", lock)
    one.write("[I 1] fir")
    two.write("[I 2] second\n" + CHATTER_LINE + "\n")
    one.write("st\n")
    assert sink.getvalue() == "web2: [I 2] second\nweb1: [I 1] first\n"


def test_follow_streams_every_host_until_ctrl_c_then_closes_each_connection(monkeypatch):
    class Following(FakeRunner):
        """A deployed host whose log stream goes on until its connection closes."""

        def __init__(self, name):
            super().__init__(deployed("systemd").fake, name)
            self.closed, self.followed = threading.Event(), []

        def stream(self, command):
            self.followed.append(command.text)
            yield f"2026-12-01T18:00:00+0000 {self.host} jupyter[7]: started"
            yield CHATTER_LINE
            self.closed.wait(30)

        def close(self):
            self.closed.set()

    runners = {name: Following(name) for name in ("web1", "web2")}
    monkeypatch.setattr(operations, "open_runner", lambda h: runners[h.name])
    sink = io.StringIO()

    def ctrl_c_once_both_said_something():
        while sink.getvalue().count("\n") < 2:
            time.sleep(0.01)
        _thread.interrupt_main()

    threading.Thread(target=ctrl_c_once_both_said_something, daemon=True).start()
    hosts = [Host(name, "203.0.113.10", vars=dict(VAR_DEFAULTS)) for name in runners]
    assert operations.follow_logs(hosts, 5, sink=sink) == []
    assert sorted(sink.getvalue().splitlines()) == [
        f"{n}: 2026-12-01T18:00:00+0000 {n} jupyter[7]: started" for n in ("web1", "web2")]
    for runner in runners.values():
        assert runner.closed.is_set()
        assert runner.followed == ["journalctl -u jupyter -n 5 -f --no-pager -o short-iso"]


def rotate(runner: FakeRunner):
    chooser = passwords.HashChooser(Secret("a brand new password"))
    return operations.rotate_password(CONFIG, chooser)(host(), runner)


@pytest.mark.parametrize("init, restart", [("upstart", "initctl restart jupyter"),
                                           ("systemd", "systemctl restart -- jupyter")])
def test_rotate_password_swaps_the_hash_atomically_then_restarts_the_inits_way(init, restart):
    runner = deployed(init)
    before = runner.fake.text(CONFIG)
    out = rotate(runner)
    assert out.ok, out.text
    after = runner.fake.files[CONFIG]
    assert after.data.decode() != before and f'c.ServerApp.sock = "{serving.SOCKET}"\n' in after.data.decode()
    assert passwords.matches(operations.HASH_LINE.search(after.data.decode()).group(1),
                             Secret("a brand new password"))
    # notebook code (the jupyter user) can read it but never rewrite it
    assert (after.mode, after.user, after.group) == (0o640, "root", "jupyter")
    assert len(runner.calls) == 2                      # one read (with the probe), one write
    assert runner.calls[1].endswith(f"&& mv -f -- /etc/jupyterfab/.jupyter_server_config.py.rotate "
                                    f"{CONFIG} && echo ==swapped== && sh -c {shlex.quote(operations.FORGET_SECRET)} sh jupyter "
                                    f"{COOKIE_SECRET} && {restart}")
    assert COOKIE_SECRET not in runner.fake.files     # Jupyter signs sessions with a new one
    assert runner.fake.units["jupyter"].restarts == 1
    assert out.text == f"new password hash in {CONFIG}; jupyter restarted, every earlier session ended"


@pytest.mark.parametrize("init", ["systemd", "upstart"])
def test_rotate_password_says_the_new_password_is_in_place_when_only_the_restart_failed(init):
    runner = deployed(init)
    if init == "upstart":
        runner.fake.units["jupyter"].fails_to_start = True
    else:   # the fake's systemctl models a failed start of a Type=simple unit as success
        runner.fake.units["jupyter"].exists = False
    out = rotate(runner)
    assert not out.ok
    assert out.text.startswith(f"new password hash in {CONFIG}, but restarting jupyter failed")
    assert passwords.matches(operations.HASH_LINE.search(runner.fake.text(CONFIG)).group(1),
                             Secret("a brand new password"))


def test_rotate_password_that_could_not_swap_says_the_old_password_still_works():
    runner = deployed("systemd")
    before = runner.fake.text(CONFIG)
    runner.fake.dirs.pop("/etc/jupyterfab")           # the temp file cannot be written
    out = rotate(runner)
    assert not out.ok and out.text.startswith("rotating the password failed, the old one still works")
    assert runner.fake.text(CONFIG) == before and runner.fake.units["jupyter"].restarts == 0


def test_rotate_password_on_upstart_starts_a_stopped_job():
    runner = deployed("upstart", running=False)
    assert rotate(runner).ok
    assert runner.calls[1].endswith("&& initctl start jupyter") and runner.fake.units["jupyter"].active


def test_systemd_commands_are_the_ones_sent_before_upstart():
    runner = deployed("systemd")
    assert operations.control("restart")(host(), runner).ok
    assert runner.commands() == [PROBE, "systemctl restart -- jupyter ; systemctl is-active -- jupyter"]
    runner.calls.clear()
    operations.logs(host(), runner, lines=7)
    assert runner.commands()[1] == f"journalctl -u jupyter -n {7 + operations.CHATTER_MARGIN} --no-pager -o short-iso"
    runner.calls.clear()
    out = operations.status(host(), runner, PLAN)
    assert runner.calls[1].startswith("echo ==props== ; systemctl show -p ActiveState")
    assert out.ok and out.text.splitlines()[:3] == [
        "service:  jupyter active (running), pid 4242, restarts 1",      # the restart above
        "serving:  yes, process 4242 serves /var/lib/jupyterfab/socket/jupyter.sock",
        "uptime:   01:02:03 (since Thu 2026-11-26 02:13:58 UTC)"]
    assert "initctl" not in " ".join(runner.calls[1:])


@pytest.mark.parametrize("task", ["restart", "stop", "start", "status", "logs", "rotate-password"])
def test_a_host_with_neither_init_is_refused_in_the_deploys_words_before_anything_changes(task):
    runner = deployed("none")
    files = {p: f.data for p, f in runner.fake.files.items()}
    action = {"restart": operations.control("restart"), "stop": operations.control("stop"),
              "start": operations.control("start"), "logs": operations.logs,
              "status": lambda h, r: operations.status(h, r, PLAN),
              "rotate-password": lambda h, r: rotate(r)}[task]
    out = action(host(), runner)
    assert not out.ok
    assert out.text.startswith("jupyter1 runs neither systemd nor Upstart (PID 1 is 'openrc-init';")
    assert "a systemd service or an Upstart job" in out.text
    assert ("changed nothing" if task not in ("status", "logs") else "no jupyter") in out.text
    assert len(runner.calls) == 1                      # the read-only probe, nothing else
    assert {p: f.data for p, f in runner.fake.files.items()} == files


@pytest.mark.parametrize("init", ["systemd", "upstart"])
def test_status_fails_when_the_socket_answers_as_another_process_than_the_services(init):
    runner = deployed(init)
    runner.fake.socket_holder = 31337          # something took the socket's place
    out = operations.status(host(), runner, PLAN)
    assert not out.ok, out.text
    assert ("serving:  NO: /var/lib/jupyterfab/socket/jupyter.sock is held by process 31337, not by "
            "the service's main process (4242)") in out.text.splitlines()
    # (the fake answers only the check that asks the host's own init for the main pid)


def test_status_of_a_host_deployed_before_the_socket_says_to_deploy_again():
    runner = deployed("systemd")
    del runner.fake.files[serving.CHECK]
    out = operations.status(host(), runner, PLAN)
    assert not out.ok and f"serving:  NO: {serving.CHECK} is missing" in out.text


def test_status_shows_memory_against_the_limit_and_warns_when_a_disk_is_nearly_full():
    runner = deployed("systemd")
    runner.fake.disk["/opt/jupyterfab"] = (10 << 30, 900 << 20)      # under 10 % free
    out = operations.status(host(), runner, PLAN)
    assert out.ok
    assert "disk:     /opt/jupyterfab: 900.0 MiB free of 10.0 GiB (9%)  WARNING: under 10% free" in out.text
    assert "disk:     /home/jupyter: 6.0 GiB free of 10.0 GiB (60%)" in out.text
    assert "kernels:  1 running" in out.text
    assert len(runner.calls) == 2                      # the init probe, then one command


def test_usage_lines_read_memory_against_memorymax():
    sections = {"kernels": ["  7 2048 65 /k/bin/python -m ipykernel_launcher -f x.json"],
                "disk:/home/jupyter": ["Filesystem 1-blocks Used Available Capacity Mounted on",
                                       "/dev/a 1000 950 50 95% /"]}
    sections["memory"] = [f"MemoryCurrent={300 << 20}", f"MemoryMax={1 << 30}"]
    lines, low = operations.usage_lines(sections)
    assert lines[:2] == ["kernels:  1 running\n  pid 7: 2.0 MiB resident, up 00:01:05",
                         "memory:   300.0 MiB of 1.0 GiB (MemoryMax, 29%)"]
    assert low and lines[2].endswith("WARNING: under 10% free")
    lines, low = operations.usage_lines({"memory": ["MemoryCurrent=[not set]", "MemoryMax=infinity"]})
    assert lines == ["kernels:  0 running", "memory:   0 B (no memory limit)"] and not low


# --- backups ------------------------------------------------------------------------------

# runuser needs root, the unit tests do not: a stand-in runs the command as this user
RUNUSER = 'shift 3; exec "$@"'


def _as_host_runs(command, tmp_path: Path, **kw) -> subprocess.CompletedProcess:
    """A day-2 command as the host runs it (a private /var/tmp stand-in for mktemp)."""
    (tmp_path / "var").mkdir(exist_ok=True)
    env = commands_on_path(tmp_path / "bin", runuser=RUNUSER) if not (tmp_path / "bin").exists() \
        else {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", command.text.replace("/var/tmp/", f"{tmp_path}/var/")],
                          capture_output=True, env=env, **kw)


def _remote_backup(notebooks: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return _as_host_runs(operations.backup_command(str(notebooks), "someone", str(os.getuid())), tmp_path,
                         text=True)


def test_the_remote_archive_is_private_and_kept_only_after_success(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "a.ipynb").write_text("{}")
    done = _remote_backup(notebooks, tmp_path)
    assert done.returncode == 0, done.stderr
    digest, _, path = done.stdout.strip().partition("  ")
    assert Path(path).parent == tmp_path / "var" and len(digest) == 64
    assert Path(path).stat().st_mode & 0o777 == 0o600


def test_a_failed_tar_leaves_no_remote_archive(tmp_path):
    failed = _remote_backup(tmp_path / "missing", tmp_path)
    assert failed.returncode != 0 and failed.stdout == ""
    assert list((tmp_path / "var").iterdir()) == []


def test_a_linked_notebook_dir_is_neither_archived_nor_restored_into(tmp_path):
    """~/notebooks -> /etc/letsencrypt: backup would archive root's files, restore unpack
    into them. Both refuse in one line and leave no archive; the tree is untouched."""
    elsewhere = tmp_path / "letsencrypt"
    elsewhere.mkdir()
    (elsewhere / "privkey.pem").write_text("key")
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)          # the notebook user's to write, as a home is
    (home / "notebooks").symlink_to(elsewhere)
    line = f"{home}/notebooks is a symbolic link (to {elsewhere}); not "
    backup = _remote_backup(home / "notebooks", tmp_path)
    assert backup.returncode != 0 and backup.stdout == ""
    assert backup.stderr == line + "archiving it\n"
    assert list((tmp_path / "var").iterdir()) == []
    data = subprocess.run(["tar", "-czf", "-", "-C", str(tmp_path / "var"), "."], capture_output=True).stdout
    restore = _as_host_runs(operations.restore_command(str(home / "notebooks"), hashlib.sha256(data).hexdigest(),
                                                 "someone", str(tmp_path / "snapshot.tar.gz")),
                            tmp_path, input=data)
    assert restore.returncode != 0 and restore.stderr.decode() == line + "restoring into it\n"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["privkey.pem"]
    assert not (tmp_path / "snapshot.tar.gz").exists() and list((tmp_path / "var").iterdir()) == []


def test_local_archives_are_written_private_even_over_a_readable_file(tmp_path):
    target = tmp_path / "web1-notebooks.tar.gz"
    target.write_bytes(b"old")
    target.chmod(0o644)
    operations.write_private(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o600


def test_the_last_lines_are_as_many_as_asked_once_the_chatter_is_gone():
    log = ["a", "[W] Skipped non-installed server(s): bash-language-server", "b", "c"]
    assert operations.last_lines(log, 3) == ["a", "b", "c"]
    assert operations.last_lines(log, 2) == ["b", "c"]
    assert operations.last_lines(log, 0) == []


def test_a_restore_leaves_the_notebook_dirs_mode_as_it_was(tmp_path):
    # an archive from another machine whose "./" is 0755: the 0750 notebook dir stays 0750
    made = tmp_path / "elsewhere"
    (made / "sub").mkdir(parents=True)
    (made / "sub" / "n.ipynb").write_text("{}")
    made.chmod(0o755)
    data = subprocess.run(["tar", "-czf", "-", "-C", str(made), "."], capture_output=True).stdout
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebooks.chmod(0o750)
    (tmp_path / "var").mkdir()
    done = _as_host_runs(operations.restore_command(str(notebooks), hashlib.sha256(data).hexdigest(), "someone",
                                              str(tmp_path / "snapshots" / "before.tar.gz")),
                         tmp_path, input=data)
    assert done.returncode == 0, done.stderr
    assert (notebooks / "sub" / "n.ipynb").read_text() == "{}"
    assert notebooks.stat().st_mode & 0o777 == 0o750
