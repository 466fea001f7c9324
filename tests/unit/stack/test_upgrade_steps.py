"""fab upgrade without a host: its decisions (pure), and the shell and watch scripts it
sends, run for real by the local /bin/sh and python3 in a temp directory."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from unit_support import LocalRunner, UnixHTTPServer, by_id, commands_on_path

from jupyterfab.engine import initsys
from jupyterfab.engine.errors import tool_output_tail
from jupyterfab.engine.initsys.upstart import LOG_WINDOW
from jupyterfab.inventory import Host
from jupyterfab.stack import upgrade
from jupyterfab.stack.envs import envlayout
from jupyterfab.stack.upgrade import UpgradeError

PROJECT = Path(__file__).resolve().parents[3]

# --- choosing the version ---------------------------------------------------------------

AVAILABLE = ["4.6.6", "4.6.5", "4.6.0rc1", "4.5.11", "4.4.10", "4.2.7"]


def test_without_a_spec_the_newest_final_release_is_the_target():
    assert upgrade.choose_target(None, AVAILABLE) == "4.6.6"
    assert upgrade.choose_target(None, ["5.0.0a1", "4.6.6"]) == "4.6.6"


def test_a_spec_picks_the_newest_version_it_admits():
    assert upgrade.choose_target(upgrade.normalize_spec("==4.5.*"), AVAILABLE) == "4.5.11"
    assert upgrade.choose_target(upgrade.normalize_spec(">=4.4,<4.6"), AVAILABLE) == "4.5.11"
    assert upgrade.choose_target(upgrade.normalize_spec("4.2.7"), AVAILABLE) == "4.2.7"


def test_a_spec_nothing_matches_names_what_there_is():
    with pytest.raises(UpgradeError, match=r"no JupyterLab matching ==9\.\* among .*4\.6\.6"):
        upgrade.choose_target(upgrade.normalize_spec("==9.*"), AVAILABLE)


def test_a_bare_version_means_exactly_that_version_and_garbage_is_refused():
    assert str(upgrade.normalize_spec("4.6.6")) == "==4.6.6"
    assert upgrade.exact_version(upgrade.normalize_spec("4.6.6")) == "4.6.6"
    assert upgrade.exact_version(upgrade.normalize_spec("==4.6.*")) is None
    assert upgrade.exact_version(upgrade.normalize_spec(">=4.6")) is None
    assert upgrade.normalize_spec(None) is None and upgrade.normalize_spec(" ") is None
    with pytest.raises(UpgradeError, match="not a version or a version specifier"):
        upgrade.normalize_spec("latest please")


def test_the_same_version_is_up_to_date_an_older_target_is_a_downgrade():
    assert upgrade.decide("4.6.6", "4.6.6") == "up-to-date"
    assert upgrade.decide("4.2.7", "4.6.6") == "upgrade"
    assert upgrade.decide("4.6.6", "4.5.11") == "downgrade"
    assert upgrade.decide(None, "4.6.6") == "upgrade"     # unreadable: build it


def test_versions_come_from_pip_index_or_from_the_wheel_names(tmp_path):
    out = "jupyterlab (4.6.6)\nAvailable versions: 4.6.6, 4.6.5, 4.5.11\n  INSTALLED: 4.5.11\n"
    assert upgrade.parse_pip_index_versions(out) == ["4.6.6", "4.6.5", "4.5.11"]
    assert upgrade.parse_pip_index_versions("ERROR: No matching distribution\n") == []
    for name in ("jupyterlab-4.2.7-py3-none-any.whl", "jupyterlab-4.10.0-py3-none-any.whl",
                 "jupyterlab_server-2.28.1-py3-none-any.whl", "jupyterlab-4.2.7-py3-none-any.whl.part"):
        (tmp_path / name).write_bytes(b"")
    assert upgrade.versions_in_wheelhouse(tmp_path) == ["4.10.0", "4.2.7"]


# --- the inventory and the deploy after an upgrade -----------------------------------

def test_upgrade_hints_at_the_inventory_when_its_spec_would_undo_the_upgrade():
    hint = upgrade.inventory_hint("==4.4.*", "4.6.6")
    assert "does not admit 4.6.6" in hint and "jupyterlab_version: '==4.6.6'" in hint
    assert upgrade.inventory_hint(">=4.4", "4.6.6") is None


def test_deploy_keeps_an_upgraded_environment_its_spec_admits():
    spec, note = envlayout.spec_for_deploy(">=4.4", "4.6.6", "4.6.6")
    assert spec == "==4.6.6" and "keeping JupyterLab 4.6.6" in note


def test_deploy_says_so_when_it_replaces_an_upgraded_environment():
    spec, note = envlayout.spec_for_deploy("==4.4.*", "4.6.6", "4.6.6")
    assert spec == "==4.4.*"
    assert "outside jupyterlab_version '==4.4.*': this deploy replaces it" in note


def test_deploy_ignores_environments_it_made_or_changed_since_the_upgrade():
    assert envlayout.spec_for_deploy("==4.4.*", None, "4.4.10") == ("==4.4.*", None)
    # pinned 4.6.6 but 4.4.10 inside: the deploy's pip changed it in place since
    assert envlayout.spec_for_deploy("==4.4.*", "4.6.6", "4.4.10") == ("==4.4.*", None)


def test_the_probe_reads_layout_versions_and_service():
    out = ("layout=link\nlive_target=envs/env-py3.11-abc\nprevious_target=envs/migrated-1\n"
           "jupyterlab=4.2.7\njupyter_server=2.21.1\npin=4.2.7\nlistens=socket\nservice=active\n")
    env = upgrade.parse_probe(out)
    assert env == {"layout": "link", "live_target": "envs/env-py3.11-abc",
                   "previous_target": "envs/migrated-1", "jupyterlab": "4.2.7",
                   "jupyter_server": "2.21.1", "pin": "4.2.7", "service": "active", "listens": "socket"}
    # a host deployed before the socket (its config has no ServerApp.sock)
    assert upgrade.parse_probe("layout=dir\nservice=inactive\n")["jupyterlab"] is None
    assert upgrade.parse_probe("layout=dir\nservice=inactive\n")["listens"] == "port"


def test_the_probe_tells_a_config_on_the_socket_from_an_earlier_one_on_a_port(tmp_path, monkeypatch):
    config = tmp_path / "jupyter_server_config.py"
    monkeypatch.setattr(upgrade, "PROBE", upgrade.PROBE.replace(upgrade.CONFIG_FILE, str(config)))
    probe = upgrade.probe_script(initsys.for_init("systemd"))

    def listens():
        said = subprocess.run(["sh", "-c", probe, "sh", str(tmp_path / "venv"), "jupyter"],
                              capture_output=True, text=True).stdout
        return upgrade.parse_probe(said)["listens"]

    config.write_text('c.ServerApp.ip = "127.0.0.1"\nc.ServerApp.port = 8888\n')
    assert listens() == "port"
    config.write_text('c.ServerApp.sock = "/var/lib/jupyterfab/socket/jupyter.sock"\n')
    assert listens() == "socket"


# --- the layout scripts, for real -----------------------------------------------------

def sh(script: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script, "sh", *args], input=stdin, capture_output=True)


def make_env(prefix: Path, env_id: str) -> Path:
    path = prefix / "envs" / env_id
    (path / "bin").mkdir(parents=True)
    (path / "bin/jupyter-lab").write_text(env_id)
    return path


def layout(prefix: Path) -> dict:
    venv, previous = prefix / "venv", prefix / "venv.previous"
    return {"venv": os.readlink(venv) if venv.is_symlink() else "dir" if venv.is_dir() else None,
            "previous": os.readlink(previous) if previous.is_symlink() else None,
            "envs": sorted(p.name for p in (prefix / "envs").iterdir())}


def test_the_first_switch_migrates_a_real_venv_directory_and_keeps_it_as_previous(tmp_path):
    (tmp_path / "venv/bin").mkdir(parents=True)
    (tmp_path / "venv/bin/jupyter-lab").write_text("legacy")
    make_env(tmp_path, "new")
    done = sh(envlayout.SWITCH, str(tmp_path / "venv"), "new")
    assert done.returncode == 0, done.stderr
    now = layout(tmp_path)
    assert now["venv"] == "envs/new"
    [migrated] = [e for e in now["envs"] if e.startswith("migrated-")]
    assert now["previous"] == f"envs/{migrated}" and done.stdout.decode() == f"old=envs/{migrated}\n"
    assert (tmp_path / "venv/bin/jupyter-lab").read_text() == "new"
    assert (tmp_path / "venv.previous/bin/jupyter-lab").read_text() == "legacy"


def test_switch_rollback_and_prune_keep_live_and_previous_only(tmp_path):
    venv = str(tmp_path / "venv")
    for env_id in ("a", "b", "c"):
        make_env(tmp_path, env_id)
        assert sh(envlayout.SWITCH, venv, env_id).returncode == 0
    assert layout(tmp_path) == {"venv": "envs/c", "previous": "envs/b", "envs": ["a", "b", "c"]}
    (tmp_path / "envs/.d.partial").mkdir()           # a build that died half way
    pruned = sh(envlayout.PRUNE, venv).stdout.decode().split()
    assert sorted(pruned) == ["pruned=envs/.d.partial", "pruned=envs/a"]
    assert layout(tmp_path) == {"venv": "envs/c", "previous": "envs/b", "envs": ["b", "c"]}

    # c fails to serve: back to b, the previous one as it was before c, c gone
    make_env(tmp_path, "a")
    assert sh(envlayout.SWITCH, venv, "a").returncode == 0   # pretend a was the one before
    assert sh(envlayout.SWITCH, venv, "d").returncode != 0  # no such environment: nothing moves
    assert layout(tmp_path)["venv"] == "envs/a"
    make_env(tmp_path, "d")
    assert sh(envlayout.SWITCH, venv, "d").returncode == 0
    back = sh(envlayout.ROLLBACK, venv, "envs/a", "envs/c", "d")
    assert back.returncode == 0, back.stderr
    assert layout(tmp_path) == {"venv": "envs/a", "previous": "envs/c", "envs": ["a", "b", "c"]}


def test_rollback_never_removes_the_environment_it_returns_to(tmp_path):
    venv = str(tmp_path / "venv")
    make_env(tmp_path, "a")
    make_env(tmp_path, "b")
    sh(envlayout.SWITCH, venv, "a")
    sh(envlayout.SWITCH, venv, "b")
    assert sh(envlayout.ROLLBACK, venv, "envs/a", "", "a").returncode == 0
    assert layout(tmp_path) == {"venv": "envs/a", "previous": None, "envs": ["a", "b"]}
    assert sh(envlayout.ROLLBACK, venv, "envs/a", "", "../..").returncode == 0
    assert tmp_path.exists() and layout(tmp_path)["envs"] == ["a", "b"]


def bundle_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_unpack_builds_beside_the_live_environment_and_refuses_to_overwrite_it(tmp_path):
    venv = str(tmp_path / "venv")
    data = bundle_bytes({"bin/jupyter-lab": b"#!/bin/sh\n", "lib/site.txt": b"x"})
    done = sh(envlayout.UNPACK, venv, "env-1", sys.executable, ".marker", "env-1.tar.gz", stdin=data)
    assert done.returncode == 0, done.stderr
    env = tmp_path / "envs/env-1"
    assert (env / "lib/site.txt").read_bytes() == b"x" and (env / "pyvenv.cfg").exists()
    assert (env / ".marker").read_text() == "env-1.tar.gz\n"
    assert not (tmp_path / "venv").exists()          # built, not switched
    sh(envlayout.SWITCH, venv, "env-1")
    again = sh(envlayout.UNPACK, venv, "env-1", sys.executable, ".marker", "x", stdin=data)
    assert again.returncode != 0 and b"envs/env-1 is live" in again.stderr


def test_env_unpacked_switches_bundles_keeps_the_previous_and_goes_back_without_resending(
        project, tmp_path):
    prefix = tmp_path / "opt"
    prefix.mkdir()
    (prefix / "venv").mkdir()                         # a host deployed before envs/
    (prefix / "venv/old.txt").write_text("legacy")
    bundles = {}
    for n in (1, 2):
        bundles[n] = tmp_path / f"env-py3.11-{n}.tar.gz"
        bundles[n].write_bytes(bundle_bytes({"bin/jupyter-lab": b"x", "which": str(n).encode()}))

    def deploy(n):
        project.sls(f"env:\n  env.unpacked:\n    - name: {prefix}/venv\n    - bundle: {bundles[n]}\n"
                    f"    - python: {sys.executable}\n")
        runner = LocalRunner()
        return by_id(project.apply(runner))["env"], runner

    result, _ = deploy(1)
    assert result.ok and result.changed, result.comment
    assert layout(prefix)["venv"] == "envs/env-py3.11-1"
    assert (prefix / "venv.previous/old.txt").read_text() == "legacy"
    result, _ = deploy(2)
    assert layout(prefix) == {"venv": "envs/env-py3.11-2", "previous": "envs/env-py3.11-1",
                              "envs": ["env-py3.11-1", "env-py3.11-2"]}    # migrated one pruned
    result, runner = deploy(1)                        # back: it is still there
    assert "switched" in result.comment and "back to the kept environment" in result.comment
    assert (prefix / "venv/which").read_text() == "1"
    result, runner = deploy(1)
    assert result.ok and not result.changed


# --- watching the service -----------------------------------------------------------

class FakeJupyter(http.server.BaseHTTPRequestHandler):
    answering = True
    answered = threading.Event()    # the watcher has seen it answer

    def do_GET(self):
        if not FakeJupyter.answering:
            self.send_error(503)
            return
        FakeJupyter.answered.set()
        body = json.dumps({"version": "2.99.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# The Unix socket answers as this process: the service's "main pid" in these tests.
ME = os.getpid()


@contextlib.contextmanager
def jupyter_answering(folder: Path):
    """A Unix socket that answers /api like Jupyter Server (as long as FakeJupyter.answering),
    and the deploy's serving check (files/jupyter/serving.py.j2) to ask it: (socket, check)."""
    sock = folder / "jupyter.sock"
    server = UnixHTTPServer(str(sock), FakeJupyter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    check = folder / "jupyterfab-serving"
    check.write_text(f"#!{sys.executable} -I\n" + (PROJECT / "files/jupyter/serving.py.j2").read_text())
    check.chmod(0o755)
    FakeJupyter.answering = True
    FakeJupyter.answered.clear()
    try:
        yield str(sock), str(check)
    finally:
        server.shutdown()
        server.server_close()


def run_watch(init: str, served: tuple[str, str], env: dict[str, str], limit: float, stable: float,
              during=None) -> dict:
    """upgrade's watch script for ``init``, run here against ``served`` (socket, check);
    ``during``: what happens meanwhile."""
    sock, check = served
    proc = subprocess.Popen([sys.executable, "-c", upgrade.watch_script(initsys.for_init(init), check),
                             "jupyter", sock, str(limit), str(stable)],
                            stdout=subprocess.PIPE, text=True, env=env)
    if during:
        during()
    return json.loads(proc.communicate(timeout=30)[0])


@pytest.fixture
def fake_service(tmp_path):
    """A systemctl on PATH that reports what a test writes into a file, and a socket
    that answers /api like Jupyter Server, as this process."""
    props = tmp_path / "props"
    env = commands_on_path(tmp_path / "bin", systemctl=f"cat {props}")

    def set_props(state="active", sub="running", pid=ME, restarts=0):
        props.write_text(f"ActiveState={state}\nSubState={sub}\nMainPID={pid}\nNRestarts={restarts}\n"
                         "Result=success\nExecMainStatus=0\n")

    with jupyter_answering(tmp_path) as served:
        def watch(limit=3.0, stable=1.0, during=None):
            return run_watch("systemd", served, env, limit, stable, during)

        set_props()
        yield set_props, watch


def test_a_server_that_answers_and_stays_up_is_serving(fake_service):
    set_props, watch = fake_service
    verdict = watch()
    assert verdict["ok"] and verdict["version"] == "2.99.0" and f"pid {ME}" in verdict["why"]


def test_something_else_answering_on_the_socket_is_not_the_service(fake_service):
    set_props, watch = fake_service
    set_props(pid=ME + 1)         # the unit's main process is another than the one listening
    verdict = watch(limit=1.5)
    assert not verdict["ok"] and "did not answer on" in verdict["why"], verdict
    assert not FakeJupyter.answered.is_set()     # it never even asked the impostor for /api


def test_a_server_that_answers_then_crashes_is_caught(fake_service):
    set_props, watch = fake_service

    def crash():
        # after the watcher saw it answer, however slow this machine is
        assert FakeJupyter.answered.wait(20)
        time.sleep(0.3)
        set_props(state="activating", sub="auto-restart", pid=0, restarts=1)

    verdict = watch(stable=3.0, during=crash)
    assert not verdict["ok"] and "exited after answering for" in verdict["why"]
    assert "activating/auto-restart" in verdict["why"]


def test_a_server_replaced_by_another_pid_is_caught(fake_service):
    set_props, watch = fake_service

    def restarted():
        assert FakeJupyter.answered.wait(20)
        time.sleep(0.3)
        set_props(pid=ME + 1)     # systemd restarted it between two looks

    verdict = watch(stable=3.0, during=restarted)
    assert not verdict["ok"] and "exited after answering" in verdict["why"]


def test_a_server_that_never_answers_times_out_and_one_that_fails_says_so(fake_service):
    set_props, watch = fake_service
    FakeJupyter.answering = False
    verdict = watch(limit=1.0)
    assert not verdict["ok"] and "did not answer on " in verdict["why"]
    set_props(state="failed", sub="failed", pid=0)
    verdict = watch(limit=5.0)
    assert not verdict["ok"] and "exited before answering (failed/failed" in verdict["why"]


def test_a_host_built_environment_uses_the_deploys_states_aimed_at_its_own_directory():
    v = {"requirements": ["jupyterlab==4.6.6", "jupyter-server>=2.14,<3", "ipykernel"],
         "pip_installer": "uv", "pip_index_url": "", "wheelhouse_local": "/tmp",
         "wheelhouse_dir": "/opt/jupyterfab/wheelhouse",
         "extensions_local": "/tmp", "extensions_dir": "/opt/jupyterfab/extensions"}
    decls = upgrade._host_build_declarations(v, "/opt/jupyterfab/envs/pip-py3.13-abc")
    assert [(d.fun, d.name) for d in decls] == [("file.recurse", "/opt/jupyterfab/extensions"),
                                                ("file.recurse", "/opt/jupyterfab/wheelhouse"),
                                                ("pip.installed", "jupyter_env")]
    pip = decls[2].args
    assert pip["bin_env"] == "/opt/jupyterfab/envs/pip-py3.13-abc"      # never the live venv
    assert pip["find_links"] == "/opt/jupyterfab/wheelhouse" and pip["no_index"] is True
    assert list(pip["pkgs"]) == v["requirements"]


def test_a_server_that_stops_answering_but_stays_active_is_caught(fake_service):
    set_props, watch = fake_service

    def hang():
        time.sleep(0.6)
        FakeJupyter.answering = False

    verdict = watch(limit=20.0, stable=8.0, during=hang)
    assert not verdict["ok"] and "stopped answering on " in verdict["why"]


# --- on Upstart: the same switch and watch, with initctl ----------------------------------

@pytest.fixture
def fake_job(tmp_path):
    """An initctl on PATH whose `status` says what a test writes into a file (and
    which records every call), and a socket that answers /api like Jupyter Server."""
    status, calls = tmp_path / "status", tmp_path / "calls"
    env = commands_on_path(
        tmp_path / "bin",
        initctl=f'echo "$*" >> {calls}\ncase "$1" in status) cat {status};; stop) echo "$2 stop/waiting";; esac',
        systemctl=f'echo "systemctl $*" >> {calls}\nexit 1')

    def set_status(line=f"jupyter start/running, process {ME}"):
        status.write_text(line + "\n")

    def called() -> list[str]:
        return calls.read_text().splitlines() if calls.exists() else []

    with jupyter_answering(tmp_path) as served:
        def watch(limit=3.0, stable=1.0, during=None):
            return run_watch("upstart", served, env, limit, stable, during)

        set_status()
        watch.sock, watch.check = served
        yield set_status, watch, called, env


def test_upstart_a_job_that_answers_and_stays_up_is_serving(fake_job):
    set_status, watch, called, _ = fake_job
    verdict = watch()
    assert verdict["ok"] and verdict["version"] == "2.99.0" and f"pid {ME}" in verdict["why"]
    assert called() and set(called()) == {"status jupyter"}       # it only ever looks


def test_upstart_a_respawn_after_answering_is_caught(fake_job):
    set_status, watch, called, _ = fake_job

    def respawned():
        assert FakeJupyter.answered.wait(20)
        time.sleep(0.3)
        set_status(f"jupyter start/running, process {ME + 1}")      # Upstart respawned it

    verdict = watch(stable=3.0, during=respawned)
    assert not verdict["ok"] and "exited after answering for" in verdict["why"]
    assert "start/running, 1 respawn" in verdict["why"] and "/var/log/upstart/jupyter.log" in verdict["why"]


def test_upstart_a_job_that_gives_up_or_is_unknown_fails_before_answering(fake_job):
    set_status, watch, called, _ = fake_job
    FakeJupyter.answering = False
    set_status("jupyter stop/waiting")                         # respawn limit reached
    verdict = watch(limit=5.0)
    assert not verdict["ok"] and "exited before answering (stop/waiting" in verdict["why"]
    set_status("initctl: Unknown job: jupyter")
    verdict = watch(limit=5.0)
    assert not verdict["ok"] and "initctl: Unknown job: jupyter" in verdict["why"]


def test_upstart_a_job_still_in_post_start_is_not_serving_yet(fake_job):
    set_status, watch, called, _ = fake_job
    set_status(f"jupyter start/post-start, process {ME}")
    verdict = watch(limit=1.0)
    assert not verdict["ok"] and "did not answer on " in verdict["why"]
    assert "(start/post-start)" in verdict["why"]


def test_upstart_switch_stops_with_initctl_runs_the_step_and_starts_without_waiting(fake_job, tmp_path):
    set_status, watch, called, env = fake_job
    venv = str(tmp_path / "venv")
    make_env(tmp_path, "new")
    done = subprocess.run(["sh", "-c", upgrade.stop_step_start_script(initsys.for_init("upstart")), "sh", "jupyter", venv, "new"],
                          capture_output=True, text=True, env={**env, "STEP": envlayout.SWITCH})
    assert done.returncode == 0, done.stderr
    said = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert said["at"].isdigit() and said["log_size"] == "0" and said["old"] == ""
    assert called() == ["stop jupyter", "start --no-wait jupyter"]
    assert os.readlink(venv) == "envs/new"
    # a step that fails still starts the job again (the old environment stays live)
    failed = subprocess.run(["sh", "-c", upgrade.stop_step_start_script(initsys.for_init("upstart")), "sh", "jupyter", venv, "gone"],
                            capture_output=True, text=True, env={**env, "STEP": envlayout.SWITCH})
    assert failed.returncode != 0 and called()[-1] == "start --no-wait jupyter"
    assert not [c for c in called() if c.startswith("systemctl")]


def test_upstart_the_guard_switches_and_watches_on_the_host_with_initctl_only(fake_job, tmp_path,
                                                                             monkeypatch):
    set_status, watch, called, env = fake_job
    monkeypatch.setenv("PATH", env["PATH"])
    runner = LocalRunner()
    venv = str(tmp_path / "venv")
    make_env(tmp_path, "new")
    host = Host("h", "127.0.0.1")
    options = upgrade.Options(answer_timeout=5.0, stable_seconds=0.5)
    out = upgrade.start_guard(host, runner, options, initsys.for_init("upstart"), venv, "new", "",
                              watch_lock=str(tmp_path / "watch.lock"), results=str(tmp_path / "run"),
                              sock=watch.sock, check=watch.check)
    guard = upgrade.follow_guard(runner, options, out)
    assert guard["switch"]["rc"] == "0" and guard["health"]["ok"], guard
    assert guard["rollback"] is None and guard["health"]["downtime"] >= 0
    assert os.readlink(venv) == "envs/new" and not os.path.exists(out)
    assert called()[:2] == ["stop jupyter", "start --no-wait jupyter"]
    assert set(called()[2:]) == {"status jupyter"}          # no systemctl anywhere


def test_the_guard_rolls_back_by_itself_when_nobody_follows(fake_job, tmp_path, monkeypatch):
    set_status, watch, called, env = fake_job
    monkeypatch.setenv("PATH", env["PATH"])
    runner = LocalRunner()
    venv = tmp_path / "venv"
    make_env(tmp_path, "old")
    make_env(tmp_path, "new")
    os.symlink("envs/old", venv)
    FakeJupyter.answering = False                  # the new environment never serves
    host = Host("h", "127.0.0.1")
    options = upgrade.Options(answer_timeout=1.0, stable_seconds=0.5)
    lock = tmp_path / "watch.lock"
    out = upgrade.start_guard(host, runner, options, initsys.for_init("upstart"), str(venv), "new", "",
                              watch_lock=str(lock), results=str(tmp_path / "run"),
                              sock=watch.sock, check=watch.check)
    # the controller is gone: nobody follows. The guard holds the watch lock while it judges.
    time.sleep(0.3)
    held = subprocess.run(["flock", "-n", str(lock), "true"])
    assert held.returncode != 0
    deadline = time.monotonic() + 20
    while not os.path.exists(f"{out}/done") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert os.readlink(venv) == "envs/old"                     # rolled back, by the host alone
    assert not (tmp_path / "envs" / "new").exists()            # the failed environment removed
    said = (tmp_path / "run").glob("upgrade-*/rollback")
    assert any("rc=0" in p.read_text() for p in said)
    assert subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0


def test_upstart_probe_reads_the_jobs_state_from_initctl(fake_job, tmp_path):
    set_status, watch, called, env = fake_job
    (tmp_path / "venv").mkdir()

    def probe():
        out = subprocess.run(["sh", "-c", upgrade.probe_script(initsys.for_init("upstart")), "sh", str(tmp_path / "venv"),
                              "jupyter"],
                             capture_output=True, text=True, env=env).stdout
        return upgrade.parse_probe(out)["service"]

    assert probe() == "start/running"
    set_status("jupyter stop/waiting")
    assert probe() == "stop/waiting"
    set_status("initctl: Unknown job: jupyter")
    assert probe() == "unknown"           # never deployed as a job: upgrade says deploy first


def test_upstart_failed_attempts_log_is_what_it_wrote_between_switch_and_rollback(tmp_path):
    log = tmp_path / "jupyter.log"
    old, failed, after = b"old server line\n", b"new server starts\nTraceback: boom\n", b"old again\n"
    log.write_bytes(old + failed + after)
    window = sh(LOG_WINDOW, str(log), str(len(old)), str(len(old + failed)))
    assert window.stdout == failed
    # rotated in between (the file is shorter than the window): its last lines instead
    log.write_bytes(b"after rotation\n")
    assert sh(LOG_WINDOW, str(log), "10", "60").stdout == b"after rotation\n"


# --- the dry run resolves the target as the real run will --------------------------------

@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A PEP 503 index with JupyterLab 4.5.11 and 4.6.6, read by the real `pip index`
    (this machine's pip configuration and its extra indexes left out)."""
    page = tmp_path / "simple" / "jupyterlab" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text("".join(f'<a href="jupyterlab-{v}-py3-none-any.whl">jupyterlab-{v}-py3-none-any.whl</a>\n'
                            for v in ("4.5.11", "4.6.6")))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setattr(upgrade, "_available", {})
    return {"pip_index_url": (tmp_path / "simple").as_uri(), "wheelhouse": "build"}


def test_an_exact_version_the_index_lacks_is_refused_dry_run_or_not(local_index):
    with pytest.raises(UpgradeError, match=r"no JupyterLab matching ==4\.99 among the available "
                                           r"versions \(4\.6\.6, 4\.5\.11\)"):
        upgrade.resolve_target(upgrade.normalize_spec("4.99"), local_index, "3.11")
    assert upgrade.resolve_target(upgrade.normalize_spec("4.5.11"), local_index, "3.11") == "4.5.11"
    assert upgrade.resolve_target(None, local_index, "3.11") == "4.6.6"


def test_an_exact_version_the_wheelhouse_lacks_is_refused(tmp_path):
    (tmp_path / "jupyterlab-4.5.11-py3-none-any.whl").write_bytes(b"")
    host_vars = {"wheelhouse": str(tmp_path)}
    with pytest.raises(UpgradeError, match=r"no JupyterLab matching ==4\.6\.6 .*\(4\.5\.11\)"):
        upgrade.resolve_target(upgrade.normalize_spec("4.6.6"), host_vars, "3.11")
    assert upgrade.resolve_target(upgrade.normalize_spec("4.5.11"), host_vars, "3.11") == "4.5.11"


def test_an_exact_version_is_taken_on_trust_only_when_the_index_cannot_be_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setattr(upgrade, "_available", {})
    unlisted = {"pip_index_url": (tmp_path / "nothing-here").as_uri(), "wheelhouse": "build"}
    assert upgrade.resolve_target(upgrade.normalize_spec("4.99"), unlisted, "3.11") == "4.99"
    with pytest.raises(UpgradeError, match="cannot list JupyterLab's versions"):
        upgrade.resolve_target(upgrade.normalize_spec("==4.*"), unlisted, "3.11")


def test_an_installer_failure_shows_its_last_lines_not_the_whole_version_list():
    versions = ", ".join(f"4.{minor}.{patch}" for minor in range(7) for patch in range(40))
    stderr = ("Looking in indexes: https://pypi.org/simple\n"
              f"ERROR: Could not find a version that satisfies the requirement jupyterlab==4.99 "
              f"(from versions: {versions})\n"
              "ERROR: No matching distribution found for jupyterlab==4.99\n")
    tail = tool_output_tail(stderr)
    assert len(stderr) > 2000 and len(tail) < 700
    assert tail.endswith("ERROR: No matching distribution found for jupyterlab==4.99")
    assert "4.6.39)" in tail and "4.0.0," not in tail


def test_a_host_whose_jupyter_still_listens_on_a_port_is_told_to_deploy_first(monkeypatch):
    # its watcher would look for the socket and roll back a good upgrade
    env = upgrade.parse_probe("layout=link\nlive_target=envs/a\njupyterlab=4.4.1\nservice=active\n")
    monkeypatch.setattr(upgrade, "_probe", lambda host, runner: ({"init": "systemd", "python": "3.11"}, env))
    monkeypatch.setattr(upgrade, "resolve_target", lambda *a: pytest.fail("got past the refusal"))
    out = upgrade.upgrade_host(Host("h", "127.0.0.1", vars={"prefix": "/opt/jupyterfab"}), None,
                               upgrade.Options())
    assert out.failed and out.text == ("Jupyter listens on a TCP port there (deployed by an earlier "
                                       "jupyterfab): deploy first, which moves it to its socket")
