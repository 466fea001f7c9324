"""Notebook code is the notebook user (issue 28): whatever a step runs as that user runs
inside the Jupyter unit's own confinement, whose settings are one list for the unit and
the steps (``confinement``); and the account has no login unless the inventory asks
(``login``). Facts in, commands out; the probe and the sshd check run for real against
stand-ins of systemd-run and sshd."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

sys.path.insert(0, __import__("os").path.dirname(__file__))
from fakehost import FakeHost, FakeRunner, FakeUser  # noqa: E402
from test_states import drive, make_call  # noqa: E402
from unit_support import commands_on_path  # noqa: E402

from jupyterfab import confinement, deploy, engine, login, sls  # noqa: E402
from jupyterfab.errors import SlsError  # noqa: E402
from jupyterfab.facts.commands import RunAs  # noqa: E402
from jupyterfab.facts.packages import EnvironmentState, UnsatisfiedRequirements  # noqa: E402
from jupyterfab.inventory import VAR_DEFAULTS, Host  # noqa: E402
from jupyterfab.shell import Command, Folded  # noqa: E402
from jupyterfab.states import REGISTRY  # noqa: E402
from jupyterfab.states.base import Context, Run  # noqa: E402
from jupyterfab.states.file import CANDIDATE_CHECK, check_command_for, render_source  # noqa: E402

ENV = "/home/jupyter/.local/share/jupyterfab/kernel-env"
BOX = (("Group", "jupyter"), ("ProtectSystem", "strict"), ("RestrictAddressFamilies", "AF_UNIX AF_INET"))


def plan(**overrides) -> dict:
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, allow_plain_http=True, **overrides))
    return {**deploy.plan_host(host).vars, "hashed_password": "argon2:placeholder", "wheelhouse_local": "",
            "env_bundle": "", "kernel_bundle": "", "extensions_local": "/nonexistent"}


def context(v: dict, init: str = "systemd") -> Context:
    return Context("jupyter1", vars=v, files_dir=deploy.PROJECT / "files", init=init,
                   confinement=confinement.confinement(v))


# --- the engine's one way to run as a user -------------------------------------------

def test_a_confined_user_runs_in_a_transient_service_with_the_settings_given():
    command = RunAs("jupyter", "systemd", BOX).command(["python3", "-c", "print(1)"], 120)
    assert command.parts == (
        "systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec",
        "--description=jupyterfab: a step as jupyter, confined",
        "-p", "User=jupyter", "-p", "RuntimeMaxSec=120", "-p", "KillMode=control-group",
        "-p", "Group=jupyter", "-p", "ProtectSystem=strict", "-p", "RestrictAddressFamilies=AF_UNIX AF_INET",
        "--", "python3", "-c", "print(1)")
    # a person sees who it runs as and the command; the box's settings fold to "..."
    assert command.display == ("systemd-run --quiet --wait --pipe --collect --service-type=exec "
                               "'--description=jupyterfab: a step as jupyter, confined' -p User=jupyter "
                               "... -- python3 -c 'print(1)'")
    # no bound given: an hour; a User= among the settings is the one named, once
    again = RunAs("jupyter", "systemd", (("User", "other"), *BOX)).command(["true"]).parts
    assert "RuntimeMaxSec=3600" in again and again.count("-p") == 6 and "User=other" not in again


def test_a_dollar_in_a_command_reaches_it_as_written():
    # systemd expands $NAME in a service's command line and reads $$ as $
    script = 'dest="$1"; echo "${dest%/*}" $$'
    confined = RunAs("jupyter", "systemd", BOX).command(["sh", "-c", script, "sh", "/a/$b"]).parts
    assert confined[confined.index("--") + 1:] == ("sh", "-c", 'dest="$$1"; echo "$${dest%/*}" $$$$', "sh", "/a/$$b")
    assert RunAs("jupyter", "upstart").command(["sh", "-c", script]).parts[-1] == script
    assert RunAs("jupyter").command(["sh", "-c", script]).parts[-1] == script


def test_on_upstart_it_runs_as_the_user_with_a_clean_environment_for_a_bounded_time():
    assert RunAs("jupyter", "upstart", BOX).command(["pip", "list"], 60).text == (
        "timeout -k 10 60 env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
        "runuser -u jupyter -- pip list")


def test_a_user_without_a_box_is_runusers_and_root_is_no_one_in_particular():
    ctx = Context("h", init="systemd", confinement={"jupyter": BOX})
    assert ctx.run_as("jupyter") == RunAs("jupyter", "systemd", BOX)
    assert ctx.run_as("www-data") == RunAs("www-data")
    assert ctx.run_as("www-data").command(["id"]).text == "runuser -u www-data -- id"
    assert ctx.run_as(None) is None and ctx.run_as("") is None


def test_folded_parts_show_as_one_ellipsis_per_run():
    c = Command(("a", Folded("-p"), Folded("X=1"), "b", Folded("y"), "c"))
    assert c.display == "a ... b ... c" and c.text == "a -p X=1 b y c"


def test_the_probe_starts_the_interpreter_only_through_the_box(tmp_path):
    """UNSATISFIED_PROBE for real, with a systemd-run on PATH that notes its arguments
    and runs the command after ``--``."""
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    noted = tmp_path / "noted"
    path = commands_on_path(tmp_path / "bin", **{"systemd-run": (
        f'printf "%s\\n" "$@" > {noted}\nwhile [ "$1" != -- ]; do shift; done; shift\nexec "$@"')})
    fact = UnsatisfiedRequirements(str(env), ("surely-not-here>=1",), RunAs("jupyter", "systemd", BOX))
    done = subprocess.run(["sh", "-c", fact.command().text], capture_output=True, text=True, env=path)
    assert fact.parse(done.stdout, done.returncode) == EnvironmentState("ok", ("surely-not-here>=1",))
    argv = noted.read_text().splitlines()
    assert argv[argv.index("--") + 1:argv.index("--") + 3] == [f"{env}/bin/python", "-I"]
    assert {"User=jupyter", "RuntimeMaxSec=60", "RestrictAddressFamilies=AF_UNIX AF_INET"} <= set(argv)


def test_the_kernel_environments_state_runs_every_step_in_the_box(tmp_path):
    ctx = context(plan())
    call = make_call("pip.installed", "kernel_env", {"env": EnvironmentState("absent")}, ctx=ctx,
                     bin_env=ENV, pkgs=["ipykernel"], user="jupyter", only_missing=True, installer="uv",
                     find_links="/opt/jupyterfab/wheelhouse", no_index=True)
    ops, result = drive(call)
    runs = [op.command for op in ops if isinstance(op, Run)]
    assert result.ok and len(runs) == 3
    for command in runs:       # every piece of a chain, too
        starts = [i for i, p in enumerate(command.parts) if p == "systemd-run"]
        assert starts and "runuser" not in command.parts
        assert all("RuntimeMaxSec=3600" in command.parts[i:] for i in starts)
    spec = REGISTRY["pip.installed"]
    name, args = spec.normalize("kernel_env", {"bin_env": ENV, "pkgs": ["ipykernel"], "user": "jupyter",
                                               "only_missing": True})
    assert spec.facts(name, args, ctx)["env"].runas == RunAs("jupyter", "systemd", confinement.properties(ctx.vars))


def test_a_deployers_runas_and_its_conditions_run_in_the_same_box():
    ctx = Context("h", init="systemd", confinement={"jupyter": BOX})
    ops, _ = drive(make_call("cmd.run", "pip list", {}, ctx=ctx, runas="jupyter"))
    assert ops[0].command.parts[:1] == ("systemd-run",) and "Group=jupyter" in ops[0].command.parts
    host = FakeHost()
    host.users["jupyter"] = FakeUser("jupyter", 998, 998, "/home/jupyter")
    runner = FakeRunner(host)
    decl = sls.Declaration("pip_list", "cmd", "run", "pip list", args={
        "runas": "jupyter", "unless": ("true",), "cwd": None, "env": {}, "stdin": None})
    [result] = engine.apply([decl], runner, test=False, context=ctx)
    assert result.ok and result.comment.startswith("unless condition is true: `systemd-run ")
    assert [p["User"] for p in host.confined_runs] == ["jupyter"] and runner.commands() == []


# --- one list for the unit and the steps ------------------------------------------------

def unit_text(v: dict) -> str:
    text, _ = render_source("jupyter/jupyter.service.j2", context(v))
    return text


@pytest.mark.parametrize("overrides", [{}, {"memory_max": 0, "tasks_max": 0}, {"memory_max": "2G"}])
def test_the_unit_renders_exactly_the_settings_the_steps_get(overrides):
    v = plan(**overrides)
    lines = set(unit_text(v).splitlines())
    given = {f"{key}={value}" for key, value in confinement.properties(v)}
    assert given <= lines
    hardening = unit_text(v).split("# Hardening", 1)[1].split("[Install]")[0]
    assert {line for line in hardening.splitlines() if "=" in line and not line.startswith("#")} <= given
    assert ("MemoryMax=2G" in given) == (overrides.get("memory_max") == "2G")


def test_notebooks_outside_the_home_are_bound_back_for_the_steps_too():
    v = plan(notebook_dir="/srv/notebooks")       # an inventory refuses it; the unit would bind it
    props = dict(confinement.properties(v))
    assert props["BindPaths"] == props["ReadWritePaths"] == "/home/jupyter /srv/notebooks"
    assert "BindPaths=/home/jupyter /srv/notebooks" in unit_text(v)


# --- no login for the notebook account ----------------------------------------------

def states_of(**overrides) -> dict:
    v = plan(**overrides)
    return {d.id: d for d in sls.load_states(deploy.PROJECT / "states", context(v))}


def test_by_default_the_account_has_nologin_and_sshd_refuses_it():
    states = states_of()
    assert VAR_DEFAULTS["jupyter_user_login"] is False
    assert states["jupyter_user"].args["shell"] == "/usr/sbin/nologin"
    drop_in = states["notebook_user_sshd"]
    assert drop_in.fun == "file.managed" and drop_in.name == login.DROP_IN
    assert drop_in.args["check_tree"] == "/etc/ssh" and "sshd -t -f {tree}/sshd_config" in drop_in.args["check_cmd"]
    sshd = states["sshd_service"]
    assert sshd.fun == "service.running" and sshd.args["reload"] is True
    assert sshd.args["start"] is False                      # reloaded, never started
    assert [(r.kind, list(r.targets)) for r in sshd.requisites] == [("watch", [("file", "notebook_user_sshd")])]


def test_asked_for_the_account_keeps_bash_and_the_drop_in_goes():
    states = states_of(jupyter_user_login=True)
    assert states["jupyter_user"].args["shell"] == "/bin/bash"
    assert states["notebook_user_sshd"].fun == "file.absent"
    assert states["notebook_user_sshd"].name == login.DROP_IN


def test_the_drop_in_says_deny_the_notebook_user_and_writes_no_other_keyword():
    v = plan(jupyter_user="lab")
    text, _ = render_source("ssh/deny_notebook_user.conf.j2", context(v))
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["DenyUsers lab"]
    with pytest.raises(SlsError, match="cannot be written into an sshd config safely"):
        render_source("ssh/deny_notebook_user.conf.j2", context({**v, "jupyter_user": "lab\nPermitRootLogin yes"}))


@pytest.mark.parametrize("reads, listed, ok", [
    (True, "denyusers jupyter", True),
    (True, "denyusers lab jupyter other", True),
    (True, "denyusers jupyterx", False),           # another user is not this one
    (False, "", False),                             # sshd_config has no Include
])
def test_the_drop_in_goes_live_only_where_sshd_would_refuse_the_user(tmp_path, reads, listed, ok):
    """The check_cmd for real, on a copy of a tree, with an sshd on PATH that reads the
    drop-ins only when told to (an Include), and lists denyusers as sshd -T does."""
    tree = tmp_path / "ssh"
    (tree / "sshd_config.d").mkdir(parents=True)
    (tree / "sshd_config").write_text("Include /x/sshd_config.d/*.conf\n" if reads else "UsePAM yes\n")
    candidate = tmp_path / "candidate"
    candidate.write_text("DenyUsers jupyter\n")
    path = commands_on_path(tmp_path / "bin", sshd=(
        'case "$1" in -t) exit 0;; esac\n'
        f'grep -q Include "$5" && echo "{listed}"\n'
        'echo "port 22"'))
    check = check_command_for(login.drop_in_check("jupyter"), str(candidate),
                              str(tree / "sshd_config.d" / "00-x.conf"), str(tree))
    assert check.parts[2] == CANDIDATE_CHECK
    done = subprocess.run(["sh", "-c", check.text], capture_output=True, text=True, env=path)
    assert (done.returncode == 0) == ok, done.stderr
    if not ok:
        assert re.fullmatch(r"sshd would not read \S+ \(.*\), so it would not refuse jupyter: add 'DenyUsers "
                            r"jupyter' to /etc/ssh/sshd_config yourself, or set jupyter_user_login: true\n",
                            done.stderr), done.stderr
