"""service.running, .dead and .enabled on their own, on systemd, Upstart and SysV
init scripts: given the unit's state (and the init system's answers), the commands
they yield and what they report. A watched change restarting or reloading, a new or
changed unit or job file, and the pending-restart marker's round trips are
scenarios (scenarios/watch.yaml, systemd_unit.yaml, upstart_job.yaml,
pending_reload.yaml, nginx_stack.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_support import OK, drive, make_call, texts

from jupyterfab.engine.initsys import upstart
from jupyterfab.engine.initsys.systemd import UnitState
from jupyterfab.engine.initsys.upstart import UpstartJobState
from jupyterfab.engine.result import Result
from jupyterfab.engine.runner import CmdResult
from jupyterfab.engine.states import REGISTRY
from jupyterfab.engine.states.base import Context


def unit(active="active", enabled="enabled", load="loaded", need_reload=False) -> UnitState:
    return UnitState(load, active, "running" if active == "active" else "dead", enabled, need_reload)


def changed_file(name: str) -> Result:
    return Result(name, {"diff": "..."}, state_id="f", function="file.managed")


# --- service.running ---------------------------------------------------------------

def test_service_daemon_reload_when_systemd_asks_for_one():
    # after a changed unit file it is scenarios/systemd_unit.yaml's case
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


def test_upstart_disable_writes_manual_into_the_override():
    # enabling again (manual removed) is scenarios/upstart_job.yaml's last step
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
