"""State functions on their own: given facts (and scripted answers), which
operations they yield and what they report. No host, no runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyterfab.facts.files import FileInfo
from jupyterfab.facts.users import UserAccount
from jupyterfab.initsys import upstart
from jupyterfab.initsys.systemd import UnitState
from jupyterfab.initsys.upstart import UpstartJobState
from jupyterfab.result import Result
from jupyterfab.runner import CmdResult
from jupyterfab.shell import Secret
from jupyterfab.sls import SlsError
from jupyterfab.states import REGISTRY
from jupyterfab.states.base import ArgError, Call, Context, Probe, Put, Run

OK = CmdResult(0, "", "")


def make_call(fun: str, name, facts: dict, *, test=False, ctx=None, requisites=(), watched=(),
              prepared=None, **args) -> Call:
    spec = REGISTRY[fun]
    name, args = spec.normalize(name, args)
    ctx = ctx or Context("h", files_dir=Path("/nonexistent"))
    if spec.prepare and prepared is None:
        prepared = spec.prepare(name, args, ctx)
    return Call("sid", fun, name, args, ctx, test, facts, prepared, list(requisites), list(watched))


def drive(call: Call, answers=()) -> tuple[list, Result]:
    """Run the state, answering each Run/Probe from ``answers`` in order
    (default: success / no value); returns (operations yielded, result)."""
    ops, answers = [], list(answers)
    gen = REGISTRY[call.function].apply(call)
    reply = None
    while True:
        try:
            op = gen.send(reply)
        except StopIteration as stop:
            return ops, stop.value
        ops.append(op)
        reply = answers.pop(0) if answers else (OK if isinstance(op, Run) else None)


def texts(ops) -> list[str]:
    return [op.command.display if isinstance(op, Run) else
            f"put {op.path}" if isinstance(op, Put) else f"probe {op.fact.describe()}" for op in ops]


def unit(active="active", enabled="enabled", load="loaded", need_reload=False) -> UnitState:
    return UnitState(load, active, "running" if active == "active" else "dead", enabled, need_reload)


# --- pkg.installed -----------------------------------------------------------------

def test_pkg_installed_nothing_to_do_yields_nothing():
    call = make_call("pkg.installed", "nginx", {"installed": {"nginx": "1.22"}, "lists_stale": True})
    ops, result = drive(call)
    assert ops == [] and result.ok is True and result.comment == "nginx is installed"


def test_pkg_update_first_when_lists_are_stale_with_proxy():
    ctx = Context("h", apt_proxy="http://198.18.0.1:3142")
    call = make_call("pkg.installed", "p", {"installed": {"a": None, "b": "1"}, "lists_stale": True},
                     ctx=ctx, pkgs=["a", "b"])
    ops, result = drive(call, [OK, OK, {"a": "2.0"}])
    assert texts(ops) == [
        "env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::http::Proxy=http://198.18.0.1:3142 update",
        "env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::http::Proxy=http://198.18.0.1:3142 "
        "-o Dpkg::Options::=--force-confold install -y --no-install-recommends a",
        "probe dpkg-query a"]
    assert result.ok and result.changes == {"a": {"old": "", "new": "2.0"}}


def test_pkg_no_update_retry_for_other_errors():
    call = make_call("pkg.installed", "nginx", {"installed": {"nginx": None}, "lists_stale": False})
    ops, result = drive(call, [CmdResult(100, "", "E: Could not get lock /var/lib/dpkg/lock")])
    assert len(ops) == 1 and result.ok is False and "Could not get lock" in result.stderr


def test_pkg_version_pin_mismatch_installs_pinned():
    call = make_call("pkg.installed", "curl", {"installed": {"curl": "7.0"}, "lists_stale": False},
                     version="7.88.1-10")
    ops, result = drive(call, [OK, {"curl": "7.88.1-10"}])
    assert texts(ops)[0].endswith("install -y --no-install-recommends curl=7.88.1-10")
    assert result.changes == {"curl": {"old": "7.0", "new": "7.88.1-10"}}


def test_pkg_reports_failure_when_apt_succeeds_but_package_is_absent():
    call = make_call("pkg.installed", "nginx", {"installed": {"nginx": None}, "lists_stale": False})
    _, result = drive(call, [OK, {"nginx": None}])
    assert result.ok is False and "not installed" in result.comment


# --- service.running ---------------------------------------------------------------

def changed_file(name: str) -> Result:
    return Result(name, {"diff": "..."}, state_id="f", function="file.managed")


@pytest.mark.parametrize("reload_, verb", [(False, "restart"), (True, "reload")])
def test_service_watch_restarts_or_reloads_a_running_service(reload_, verb):
    watched = [changed_file("/etc/nginx/x.conf")]
    call = make_call("service.running", "nginx", {"unit": unit()}, requisites=watched,
                     watched=watched, reload=reload_)
    ops, result = drive(call)
    assert texts(ops) == [f"systemctl {verb} -- nginx"]
    assert result.changes == {f"{verb}ed": ["file: f"]}


def test_service_watch_does_not_restart_a_service_it_starts():
    watched = [changed_file("/etc/nginx/x.conf")]
    call = make_call("service.running", "nginx", {"unit": unit(active="inactive")},
                     requisites=watched, watched=watched)
    ops, result = drive(call, [OK, unit()])
    assert texts(ops) == ["systemctl start -- nginx", "probe systemd unit nginx"]
    assert "restarted" not in result.changes and result.ok


def test_service_without_watch_change_is_a_no_op():
    call = make_call("service.running", "nginx", {"unit": unit()}, enable=True)
    ops, result = drive(call)
    assert ops == [] and result.comment == "nginx is running and enabled"


def test_service_daemon_reload_for_changed_unit_file_or_systemd_request():
    unit_file = changed_file("/etc/systemd/system/jupyter.service")
    call = make_call("service.running", "jupyter", {"unit": unit()}, requisites=[unit_file],
                     watched=[unit_file])
    assert texts(drive(call)[0]) == ["systemctl daemon-reload && systemctl restart -- jupyter"]
    call = make_call("service.running", "jupyter", {"unit": unit(need_reload=True, active="inactive")})
    assert texts(drive(call, [OK, unit()])[0])[0] == "systemctl daemon-reload && systemctl start -- jupyter"


def test_service_started_but_dead_fails_with_journal():
    call = make_call("service.running", "jupyter", {"unit": unit(active="inactive")})
    ops, result = drive(call, [OK, unit(active="failed"), CmdResult(0, "jupyter: bad config\n", "")])
    assert texts(ops)[-1] == "journalctl --no-pager -n 20 -u jupyter"
    assert result.ok is False and "failed" in result.comment and "bad config" in result.stderr


def test_service_dry_run_yields_nothing():
    call = make_call("service.running", "nginx", {"unit": unit(active="inactive", enabled="disabled")},
                     test=True, enable=True)
    ops, result = drive(call)
    assert ops == [] and result.ok is None and result.comment == "would enable, start nginx"


def test_service_dead_and_enabled():
    call = make_call("service.dead", "apache2", {"unit": unit()}, enable=False)
    ops, result = drive(call)
    assert texts(ops) == ["systemctl disable -- apache2 && systemctl stop -- apache2"]
    assert result.comment == "disabled, stopped apache2"
    call = make_call("service.enabled", "nginx", {"unit": unit(enabled="disabled")})
    assert texts(drive(call)[0]) == ["systemctl enable -- nginx"]


# --- service.running on Upstart hosts ----------------------------------------------

UPSTART = Context("h", files_dir=Path("/nonexistent"), init="upstart")


def job(state="running", known=True, manual_in_override=False, start_on=True) -> UpstartJobState:
    goal = "start" if state == "running" else "stop"
    return UpstartJobState("upstart", known=known, goal=goal if known else "", state=state if known else "",
                           start_on=start_on, manual_in_override=manual_in_override)


def sysv(running=True, links=True) -> UpstartJobState:
    return UpstartJobState("sysv", sysv_links=links, sysv_status=0 if running else 3)


def test_upstart_new_job_file_is_loaded_then_started():
    job_file = changed_file("/etc/init/jupyter.conf")
    call = make_call("service.running", "jupyter", {"unit": job(known=False)}, ctx=UPSTART,
                     requisites=[job_file], watched=[job_file], enable=True)
    ops, result = drive(call, [OK, job()])
    assert texts(ops) == ["initctl reload-configuration && initctl start jupyter", "probe Upstart job jupyter"]
    assert result.ok and result.comment == "reloaded Upstart's job configuration, started jupyter"


def test_upstart_changed_job_file_restarts_by_stop_and_start():
    # `initctl restart` would keep running the old job definition
    job_file = changed_file("/etc/init/jupyter.conf")
    call = make_call("service.running", "jupyter", {"unit": job()}, ctx=UPSTART,
                     requisites=[job_file], watched=[job_file])
    ops, result = drive(call)
    assert texts(ops) == ["initctl reload-configuration && initctl stop jupyter && initctl start jupyter"]
    assert result.changes == {"reload-configuration": True, "restarted": ["file: f"]}


def test_upstart_changed_config_restarts_with_initctl_restart():
    config = changed_file("/etc/jupyterfab/jupyter_server_config.py")
    call = make_call("service.running", "jupyter", {"unit": job()}, ctx=UPSTART,
                     requisites=[config], watched=[config], enable=True)
    ops, result = drive(call)
    assert texts(ops) == ["initctl restart jupyter"]
    assert result.changes == {"restarted": ["file: f"]}


def test_upstart_running_enabled_job_is_a_no_op():
    call = make_call("service.running", "jupyter", {"unit": job()}, ctx=UPSTART, enable=True)
    ops, result = drive(call)
    assert ops == [] and result.ok and result.comment == "jupyter is running and enabled"


def test_upstart_enable_removes_manual_from_the_override():
    call = make_call("service.running", "jupyter", {"unit": job(manual_in_override=True)}, ctx=UPSTART,
                     enable=True)
    ops, result = drive(call)
    assert texts(ops) == ["sed -i -E '/^[[:space:]]*manual[[:space:]]*(#.*)?$/d' -- /etc/init/jupyter.override"]
    assert result.changes == {"enabled": {"old": "manual", "new": "enabled"}}
    call = make_call("service.dead", "jupyter", {"unit": job()}, ctx=UPSTART, enable=False)
    assert texts(drive(call)[0]) == ["sh -c 'echo manual >> \"$1\"' sh /etc/init/jupyter.override"
                                     " && initctl stop jupyter"]


def test_upstart_job_without_start_on_cannot_be_enabled():
    call = make_call("service.running", "jupyter", {"unit": job(start_on=False)}, ctx=UPSTART, enable=True)
    ops, result = drive(call)
    assert ops == [] and result.ok is False and "no `start on` stanza" in result.comment


def test_upstart_started_but_stopped_fails_with_the_upstart_log():
    call = make_call("service.running", "jupyter", {"unit": job(state="waiting")}, ctx=UPSTART)
    ops, result = drive(call, [OK, job(state="waiting"), CmdResult(0, "ImportError: jupyterlab\n", "")])
    assert texts(ops) == ["initctl start jupyter", "probe Upstart job jupyter",
                          "tail -n 20 /var/log/upstart/jupyter.log"]
    assert result.ok is False and "stop/waiting" in result.comment and "ImportError" in result.stderr


def test_upstart_dry_run_yields_nothing_even_before_the_job_file_exists():
    call = make_call("service.running", "jupyter", {"unit": UpstartJobState("missing")}, ctx=UPSTART,
                     test=True, enable=True)
    ops, result = drive(call)
    assert ops == [] and result.ok is None and "would start jupyter" in result.comment
    call = make_call("service.running", "jupyter", {"unit": UpstartJobState("missing")}, ctx=UPSTART)
    ops, result = drive(call)
    assert ops == [] and result.ok is False and "/etc/init/jupyter.conf" in result.comment


def test_sysv_service_on_upstart_host_reloads_through_service():
    site = changed_file("/etc/nginx/sites-enabled/jupyter.conf")
    call = make_call("service.running", "nginx", {"unit": sysv()}, ctx=UPSTART, requisites=[site],
                     watched=[site], enable=True, reload=True)
    # NGINX through jupyterfab's waiting reload where it is installed, else `service nginx reload`
    assert texts(drive(call)[0]) == [
        f"sh -c '{upstart.RELOAD_VIA}' sh /usr/local/sbin/jupyterfab-nginx-reload service nginx reload"]
    call = make_call("service.running", "cron", {"unit": sysv()}, ctx=UPSTART, requisites=[site],
                     watched=[site], enable=True, reload=True)
    assert texts(drive(call)[0]) == ["service cron reload"]
    call = make_call("service.running", "nginx", {"unit": sysv(running=False, links=False)}, ctx=UPSTART,
                     enable=True)
    ops, result = drive(call, [OK, sysv()])
    assert texts(ops)[0] == "update-rc.d nginx defaults && update-rc.d nginx enable && service nginx start"
    assert result.ok and result.comment == "enabled, started nginx"


def test_service_facts_follow_the_init_system():
    spec = REGISTRY["service.running"]
    name, args = spec.normalize("jupyter", {})
    assert spec.facts(name, args, UPSTART)["unit"].describe() == "Upstart job jupyter"
    assert spec.facts(name, args, Context("h"))["unit"].describe() == "systemd unit jupyter"
    with pytest.raises(ValueError, match="need systemd or Upstart; h runs none"):
        spec.facts(name, args, Context("h", init="none"))


# --- file.managed ------------------------------------------------------------------

ROOT_DIR = FileInfo("directory", 0o755, "root", "root")


def file_facts(info: FileInfo | None, parent=ROOT_DIR):
    return {"path": info, "parent": parent}


def test_managed_same_content_and_mode_is_a_no_op():
    import hashlib
    sha = hashlib.sha256(b"x\n").hexdigest()
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("file", 0o644, "root", "root", sha)),
                     contents="x", mode="0644")
    ops, result = drive(call)
    assert ops == [] and result.ok and not result.changes


def test_managed_mode_or_owner_only_is_chmod_chown_without_upload():
    import hashlib
    sha = hashlib.sha256(b"x\n").hexdigest()
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("file", 0o600, "root", "root", sha)),
                     contents="x", mode="0640", group="www-data")
    ops, result = drive(call)
    assert texts(ops) == ["python3 -I -S -c <nofollow> meta /etc/x 0640 '' www-data"]
    assert result.changes == {"mode": {"old": "0600", "new": "0640"},
                              "group": {"old": "root", "new": "www-data"}}


def test_managed_new_file_is_atomic_and_inherits_nothing():
    call = make_call("file.managed", "/etc/x", file_facts(None), contents="x", user="jupyter")
    ops, result = drive(call)
    [op] = ops          # one command: written beside it, owner and mode set, renamed over it
    tmp = op.command.parts[6]
    assert tmp.startswith("/etc/.x.jupyterfab-") and tmp.endswith(".tmp") and op.stdin == b"x\n"
    assert texts(ops) == [f"python3 -I -S -c <nofollow> put {tmp} 0644 jupyter '' '' "
                          f"mv {tmp} /etc/x rm /etc/.x.rejected"]
    assert result.changes == {"diff": "New file"}


def test_managed_replacement_keeps_old_owner_and_mode_when_not_set():
    call = make_call("file.managed", "/etc/x",
                     file_facts(FileInfo("file", 0o640, "jupyter", "www-data", "0" * 64)), contents="new")
    ops, result = drive(call, ["old\n"])
    assert isinstance(ops[0], Probe)          # the old content, for the diff
    assert f"put {ops[1].command.parts[6]} 0640 jupyter www-data '' mv" in texts(ops)[1]
    assert result.changes["diff"].splitlines()[2:] == ["@@ -1 +1 @@", "-old", "+new"]


def test_managed_hides_diff_for_show_changes_false_and_secrets():
    info = FileInfo("file", 0o600, "root", "root", "0" * 64)
    call = make_call("file.managed", "/etc/hash", file_facts(info), contents="h", show_changes=False,
                     test=True)
    ops, result = drive(call)
    assert ops == [] and result.ok is None and "not shown" in result.changes["diff"]
    call = make_call("file.managed", "/etc/token", file_facts(info), contents=Secret("s3cr3t"), test=True)
    ops, result = drive(call)
    assert ops == [] and "not shown" in result.changes["diff"] and "s3cr3t" not in str(result)


def test_managed_refuses_symlinks_and_directories():
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("file", 0o644, "r", "r", "0" * 64,
                                                                   is_link=True)), contents="x")
    assert drive(call)[1].ok is False
    call = make_call("file.managed", "/etc/x", file_facts(FileInfo("directory", 0o755, "r", "r")),
                     contents="x")
    assert "not a regular file" in drive(call)[1].comment


def test_managed_missing_parent():
    call = make_call("file.managed", "/etc/app/x", file_facts(None, parent=None), contents="x")
    ops, result = drive(call)
    assert ops == [] and result.ok is False and "makedirs" in result.comment
    call = make_call("file.managed", "/etc/app/x", file_facts(None, parent=None), contents="x",
                     makedirs=True)
    assert " put /etc/app/.x.jupyterfab-" in texts(drive(call)[0])[0]
    assert texts(drive(call)[0])[0].split(" mv ")[0].endswith(" p")       # the folders above it too
    call = make_call("file.managed", "/etc/app/x", file_facts(None, parent=None), contents="x", test=True)
    assert drive(call)[1].ok is None     # an earlier state may create it


def test_managed_template_render_error_names_template_and_line(tmp_path):
    (tmp_path / "site.j2").write_text("a\n{{ port }}\n")
    ctx = Context("h", files_dir=tmp_path)
    spec = REGISTRY["file.managed"]
    name, args = spec.normalize("/etc/x", {"source": "site.j2"})
    with pytest.raises(SlsError, match=rf"^{tmp_path.name}/site.j2, line 2: undefined variable"):
        spec.prepare(name, args, ctx)


def test_managed_template_with_secret_renders_it_and_hides_diff(tmp_path):
    (tmp_path / "cfg.j2").write_text("token = {{ token }}\nport = {{ port }}\n")
    ctx = Context("h", vars={"token": Secret("t0k"), "port": 1}, files_dir=tmp_path)
    call = make_call("file.managed", "/etc/cfg", file_facts(FileInfo("file", 0o600, "r", "r", "0" * 64)),
                     ctx=ctx, source="cfg.j2", context={"port": 2})
    assert call.prepared.data == b"token = t0k\nport = 2\n"
    ops, result = drive(call)
    assert not any(isinstance(op, Probe) for op in ops) and "not shown" in result.changes["diff"]


# --- file.directory / absent -------------------------------------------------------

def test_directory_create_and_fix():
    call = make_call("file.directory", "/srv/d", file_facts(None), mode="0750", user="j", group="j")
    assert texts(drive(call)[0]) == ["python3 -I -S -c <nofollow> dir /srv/d 0750 j j ''"]
    call = make_call("file.directory", "/srv/d", file_facts(FileInfo("directory", 0o755, "j", "j")),
                     mode="0750", user="j", group="j")
    assert texts(drive(call)[0]) == ["python3 -I -S -c <nofollow> dir /srv/d 0750 '' '' ''"]
    call = make_call("file.directory", "/srv/d", file_facts(FileInfo("file", 0o644, "j", "j")))
    assert drive(call)[1].ok is False


def test_absent():
    call = make_call("file.absent", "/etc/nginx/sites-enabled/default", {"path": None})
    ops, result = drive(call)
    assert ops == [] and result.comment == "/etc/nginx/sites-enabled/default is absent"
    call = make_call("file.absent", "/etc/nginx/sites-enabled/default",
                     {"path": FileInfo("file", 0o644, "r", "r")})
    assert texts(drive(call)[0]) == ["python3 -I -S -c <nofollow> rm /etc/nginx/sites-enabled/default"]


# --- user.present -----------------------------------------------------------------

def test_user_append_groups_when_not_removing():
    account = UserAccount("ann", 1000, 1000, "/home/ann", "/bin/bash", "ann", ("docker",))
    call = make_call("user.present", "ann", {"user": account}, groups=["jupyter"], remove_groups=False)
    assert texts(drive(call)[0]) == ["usermod --append --groups jupyter -- ann"]
    call = make_call("user.present", "ann", {"user": account}, groups=["docker"])
    assert drive(call)[0] == []


# --- pip.installed -----------------------------------------------------------------

def test_pip_marker_decides_without_calling_pip():
    from jupyterfab.states.pip import install_hash
    facts = {"marker": None, "python": True, "wheelhouse": FileInfo("file", 0o644, "r", "r", "1" * 64)}
    call = make_call("pip.installed", "jupyterlab", facts, bin_env="/opt/v", find_links="/opt/w")
    wanted = install_hash(call)
    ops, result = drive(call)
    assert [type(op) for op in ops] == [Run, Put] and ops[1].data.startswith(wanted.encode())
    call.facts["marker"] = wanted + "\n# jupyterlab\n"
    assert drive(call)[0] == []
    # a different wheelhouse manifest means a different hash
    call.facts["wheelhouse"] = FileInfo("file", 0o644, "r", "r", "2" * 64)
    assert install_hash(call) != wanted and len(drive(call)[0]) == 2


def test_pip_failure_leaves_marker_alone():
    call = make_call("pip.installed", "jupyterlab", {"marker": None, "python": False}, bin_env="/opt/v")
    ops, result = drive(call, [OK, CmdResult(1, "", "ERROR: No matching distribution")])
    assert texts(ops) == ["python3 -m venv /opt/v",
                          "/opt/v/bin/python -m pip install --disable-pip-version-check --no-input jupyterlab"]
    assert result.ok is False and "No matching distribution" in result.stderr


# --- cmd.run ----------------------------------------------------------------------

def test_cmd_run_with_secret_shows_no_secret():
    call = make_call("cmd.run", Secret("register --token s3"), {}, env={"A": Secret("s3")})
    ops, result = drive(call, [CmdResult(1, "token s3 rejected", "bad token s3")])
    assert texts(ops) == ["env *** sh -c ***"]
    assert result.ok is False and "s3" not in str(result)
    assert ops[0].command.text == "env A=s3 sh -c 'register --token s3'"


def test_cmd_run_dry_run_runs_nothing():
    call = make_call("cmd.run", "make install", {}, test=True, cwd="/srv/app")
    ops, result = drive(call)
    assert ops == [] and result.ok is None and result.comment == "would run `env -C /srv/app sh -c 'make install'`"


def test_pip_index_url_is_passed_and_part_of_the_hash():
    from jupyterfab.states.pip import install_hash
    plain = make_call("pip.installed", "ipykernel", {"marker": None, "python": True}, bin_env="/opt/v")
    mirror = make_call("pip.installed", "ipykernel", {"marker": None, "python": True}, bin_env="/opt/v",
                       index_url="http://198.18.0.1:3141/root/pypi/+simple/")
    assert install_hash(plain) != install_hash(mirror)
    assert "--index-url http://198.18.0.1:3141/root/pypi/+simple/ ipykernel" in texts(drive(mirror)[0])[0]


# --- pip.installed with uv, env.unpacked -------------------------------------------

def test_pip_with_uv_takes_uv_from_the_wheelhouse_then_installs_with_it():
    facts = {"marker": None, "python": False, "uv": False,
             "wheelhouse": FileInfo("file", 0o644, "r", "r", "3" * 64)}
    call = make_call("pip.installed", "jupyterlab", facts, bin_env="/opt/v", find_links="/opt/w",
                     no_index=True, installer="uv")
    ops, result = drive(call)
    commands = texts([op for op in ops if isinstance(op, Run)])
    assert commands[0] == "python3 -m venv --without-pip /opt/v"
    assert commands[1].startswith("python3 -c ") and commands[1].endswith(" /opt/w /opt/v/bin/uv")
    assert commands[2] == ("env UV_NO_CONFIG=1 /opt/v/bin/uv pip install --quiet --python /opt/v/bin/python "
                           "--compile-bytecode --no-index --find-links /opt/w pip jupyterlab"
                           " && chmod -R go-w -- /opt/v")
    assert result.ok and result.changed


def test_env_unpacked_sends_the_bundle_once(tmp_path):
    bundle = tmp_path / "env-py3.11-abc.tar.gz"
    bundle.write_bytes(b"tarball bytes")
    call = make_call("env.unpacked", "/opt/v", {"marker": None}, bundle=str(bundle))
    ops, result = drive(call)
    assert len(ops) == 1 and ops[0].stdin == b"tarball bytes"
    # unpacked beside the live one (staging), then switched: one round trip
    unpack_args = ops[0].staged_by.parts[4:9]
    assert unpack_args == ("/opt/v", "env-py3.11-abc", "python3", ".jupyterfab-env", bundle.name)
    assert ops[0].command.parts[:2] == ("sh", "-c") and ops[0].command.parts[4:6] == ("/opt/v", "env-py3.11-abc")
    assert result.changes == {"environment": {"old": "", "new": bundle.name}}
    call = make_call("env.unpacked", "/opt/v", {"marker": bundle.name + "\n"}, bundle=str(bundle))
    ops, result = drive(call)
    assert ops == [] and result.ok and not result.changed
    call = make_call("env.unpacked", "/opt/v", {"marker": "env-old"}, test=True, bundle=str(bundle))
    ops, result = drive(call)
    assert ops == [] and result.ok is None and "would unpack" in result.comment


def test_env_unpacked_switches_back_to_a_kept_environment_without_sending_it(tmp_path):
    bundle = tmp_path / "env-py3.11-abc.tar.gz"
    bundle.write_bytes(b"tarball bytes")
    call = make_call("env.unpacked", "/opt/v", {"marker": "env-new.tar.gz\n", "kept": bundle.name + "\n"},
                     bundle=str(bundle))
    ops, result = drive(call)
    assert len(ops) == 1 and not ops[0].stdin
    assert ops[0].command.parts[4:6] == ("/opt/v", "env-py3.11-abc")
    assert result.ok and "switched /opt/v back to the kept environment" in result.comment


# --- the pending-restart marker (an interrupted run's watched change) --------------

MARKER = "/var/lib/jupyterfab/pending/jupyter"


@pytest.mark.parametrize("init_ctx, facts, want", [
    (None, {"unit": unit()}, "systemctl restart -- jupyter"),
    # Upstart: the marker cannot say whether the job file changed, so stop + start
    (UPSTART, {"unit": job()}, "initctl stop jupyter && initctl start jupyter"),
    (UPSTART, {"unit": sysv()}, "service jupyter restart"),
])
def test_service_restarts_for_a_pending_marker_alone_and_clears_it(init_ctx, facts, want):
    call = make_call("service.running", "jupyter", {**facts, "pending": True}, ctx=init_ctx)
    ops, result = drive(call)
    assert texts(ops) == [f"{want} && rm -f -- {MARKER}"]
    assert result.ok and result.changes == {"restarted": [f"pending: {MARKER}"]}
    dry = make_call("service.running", "jupyter", {**facts, "pending": True}, ctx=init_ctx, test=True)
    ops, result = drive(dry)
    assert ops == [] and result.ok is None and result.changes == {"restarted": [f"pending: {MARKER}"]}
    quiet = make_call("service.running", "jupyter", {**facts, "pending": False}, ctx=init_ctx)
    assert drive(quiet)[0] == []


def test_upstart_start_of_a_stopped_job_clears_the_marker():
    call = make_call("service.running", "jupyter", {"unit": job(state="waiting"), "pending": True},
                     ctx=UPSTART)
    ops, _ = drive(call, [OK, job()])
    assert texts(ops)[0] == f"initctl start jupyter && rm -f -- {MARKER}"


# A state's name and required arguments, for trying one more argument on it.
MINIMAL = {"pip.installed": ("jupyterlab", {"bin_env": "/opt/env"}),
           "conda.env_present": ("/opt/env", {"conda": "/opt/conda/bin/conda", "file": "/srv/env.yml"}),
           "env.unpacked": ("/opt/env", {})}


def normalized(fun: str, **args) -> dict:
    name, required = MINIMAL[fun]
    return REGISTRY[fun].normalize(name, {**required, **args})[1]


@pytest.mark.parametrize("fun", ["pip.installed", "conda.env_present"])
def test_an_index_url_is_http_https_or_file(fun):
    assert normalized(fun, index_url="file:///srv/wheels")["index_url"] == "file:///srv/wheels"
    with pytest.raises(ArgError, match=r"^index_url: 'ftp://mirror' is not an http\(s\) or file URL$"):
        normalized(fun, index_url="ftp://mirror")


@pytest.mark.parametrize("fun", ["pip.installed", "env.unpacked"])
def test_a_bundle_is_a_file_on_this_machine(fun, tmp_path):
    (tmp_path / "env.tar.gz").write_bytes(b"")
    assert normalized(fun, bundle=str(tmp_path / "env.tar.gz"))["bundle"] == str(tmp_path / "env.tar.gz")
    with pytest.raises(ArgError, match=rf"^bundle: bundle {tmp_path}/gone.tar.gz is not a file on this machine$"):
        normalized(fun, bundle=str(tmp_path / "gone.tar.gz"))
