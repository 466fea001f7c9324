"""The real deploy (probe, checks, states/ and files/ of this project) against a
fake host, once per init system: which init file lands where, which commands
start and restart Jupyter, and that a host with neither init is refused before
anything changes."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import re
import subprocess
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fakehost import FakeHost, FakeRunner, FakeUnit
from support.faults import CutAfter
from unit_support import by_id, fab_task, plans_counted

from jupyterfab import deploy, fleet, kernelenv, login
from jupyterfab.fleet import HostResult
from jupyterfab.initsys import upstart
from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.runner import CmdResult
from jupyterfab.shell import Secret

PASSWORD = Secret("correct horse battery staple")
UPSTART_JOB = "/etc/init/jupyter.conf"
SYSTEMD_UNIT = "/etc/systemd/system/jupyter.service"


def fake_host(init: str) -> FakeHost:
    """A fresh Debian/Ubuntu host as the deploy finds it: apt can install the
    stack, NGINX comes with its init script (SysV on Upstart-era Ubuntu)."""
    h = FakeHost()
    h.init = init
    h.os, h.pid1, h.python = {"systemd": ("debian 12", "systemd", "3.11"),
                              # stock 14.04 has 3.4 (refused): this one got a newer python3
                              "upstart": ("ubuntu 14.04", "init", "3.10"),
                              "none": ("debian 12", "openrc-init", "3.11")}[init]
    h.available.update({"python3": "3", "python3-venv": "3", "nginx": "1.4.6"})
    h.add_dir("/etc/nginx/sites-enabled")
    h.add_file("/etc/nginx/sites-enabled/default", "server { listen 80 default_server; }\n")
    if init == "upstart":
        h.add_dir("/etc/init")
        h.add_file("/etc/init.d/nginx", "#!/bin/sh\n", 0o755)
        h.units["nginx"] = FakeUnit(enabled=True)            # the package made the rc links
        h.add_file("/etc/init/ssh.conf", "start on runlevel [2345]\n")
        h.units["ssh"] = FakeUnit(active=True, enabled=True, loaded_job=b"start on runlevel [2345]\n")
    else:
        h.units["nginx"] = FakeUnit(enabled=True)
    h.shell_patterns += [(re.compile(r"^python3 -c .import ast"), (0, "", "")),
                         (re.compile(r"^nginx -t -q -c /etc/nginx/nginx.conf$"), (0, "", "syntax is ok")),
                         (re.compile(r"systemd-analyze verify"), (0, "", "")),
                         (re.compile(r"^! grep -Evn "), check_locally)]
    return h


def check_locally(h: FakeHost, env: dict, script: str) -> tuple[int, str, str]:
    """A check_cmd that needs only the candidate file, run for real here on its content."""
    [candidate] = re.findall(r"/\S*\.jupyterfab-[0-9a-f]+\.tmp", script)
    with tempfile.NamedTemporaryFile("wb") as copy:
        copy.write(h.files[candidate].data)
        copy.flush()
        done = subprocess.run(["sh", "-c", script.replace(candidate, copy.name)],
                              capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def deploy_to(runner: FakeRunner | CutAfter, password=PASSWORD, **host_vars) -> HostResult:
    host = Host("jupyter1", "203.0.113.10",
                vars=dict(VAR_DEFAULTS, pip_installer="pip", allow_plain_http=True, **host_vars))
    if isinstance(runner, FakeRunner):
        runner.calls.clear()
        runner.under_lock.clear()
    return deploy.deploy_host(host, deploy.Options(password=password, log=lambda _: None,
                                                   progress=False), runner=runner)


def state_commands(runner: FakeRunner) -> str:
    """What the states sent (the deploy's host probe, which mentions both inits, went
    with the host lock)."""
    assert runner.under_lock[0].startswith("sh -c") and "init=upstart" in runner.under_lock[0]
    return "\n".join(runner.commands())


def changed(report: HostResult) -> list[str]:
    return sorted(r.state_id for r in report.results if r.changed)


def test_upstart_host_gets_an_upstart_job_started_with_initctl():
    runner = FakeRunner(fake_host("upstart"))
    report = deploy_to(runner)
    assert report.ok, report.text or [r.comment for r in report.results if r.ok is False]
    host = runner.fake
    assert host.text(UPSTART_JOB).startswith("# Jupyter Server for jupyter.example.com")
    assert "setuid jupyter\n" in host.text(UPSTART_JOB)
    assert SYSTEMD_UNIT not in host.files
    commands = state_commands(runner)
    assert "initctl reload-configuration && initctl start jupyter" in commands
    assert "service nginx start" in commands
    assert "systemctl" not in commands and "journalctl" not in commands
    assert host.units["jupyter"].active and host.units["jupyter"].running_job == host.files[UPSTART_JOB].data
    assert host.units["nginx"].active


def test_upstart_host_second_deploy_is_a_no_op():
    runner = FakeRunner(fake_host("upstart"))
    assert deploy_to(runner).ok
    report = deploy_to(runner, password=None)       # keeps the deployed hash, as a redeploy does
    assert report.ok and changed(report) == []
    # two round trips: the host lock with the probe, and one fact batch; nothing is
    # started, stopped or written
    assert len(runner.under_lock) == 1 and len(runner.calls) == 1 and runner.calls[0].startswith("facts:")
    assert runner.fake.units["jupyter"].starts == 1 and runner.fake.units["jupyter"].restarts == 0


def test_upstart_host_config_change_restarts_with_initctl():
    runner = FakeRunner(fake_host("upstart"))
    assert deploy_to(runner).ok
    report = deploy_to(runner, password=None, public_url="https://notebooks.example.org")
    assert report.ok and changed(report) == ["jupyter_config", "jupyter_service"]
    assert ("initctl restart jupyter && rm -f -- /var/lib/jupyterfab/pending/jupyter"
            in runner.commands())
    assert runner.fake.units["jupyter"].restarts == 1
    assert "/var/lib/jupyterfab/pending/jupyter" not in runner.fake.files


def test_upstart_host_job_change_reloads_upstart_and_runs_the_new_job():
    runner = FakeRunner(fake_host("upstart"))
    assert deploy_to(runner).ok
    report = deploy_to(runner, password=None, notebook_dir="/srv/notebooks")
    assert report.ok, [r.comment for r in report.results if r.ok is False]
    assert {"jupyter_unit", "jupyter_service"} <= set(changed(report))
    assert ("initctl reload-configuration && initctl stop jupyter && initctl start jupyter"
            " && rm -f -- /var/lib/jupyterfab/pending/jupyter" in runner.commands())
    jupyter = runner.fake.units["jupyter"]
    assert b"chdir /srv/notebooks\n" in jupyter.running_job
    assert jupyter.running_job == runner.fake.files[UPSTART_JOB].data


def test_upstart_host_reloads_nginx_through_the_wait_script_as_systemd_does():
    """NGINX on 14.04 is a SysV script whose reload only signals: the deploy installs
    the same wait script systemd's drop-in runs, and every reload goes through it."""
    runner = FakeRunner(fake_host("upstart"))
    assert deploy_to(runner).ok
    waiter = runner.fake.files[upstart.WAITING_RELOADS["nginx"]]
    assert waiter.mode == 0o755 and waiter.data.startswith(b"#!/usr/bin/python3\n")
    assert "nginx.service.d" not in "".join(runner.fake.files)
    nginx = runner.fake.units["nginx"]
    report = deploy_to(runner, password=None, client_max_body_size="77m")     # the site alone
    assert report.ok and changed(report) == ["nginx_service", "nginx_site"]
    assert nginx.reloads == nginx.waited_reloads == 1
    assert "service nginx reload" not in runner.commands()
    # and the re-run after a cut between the site and the reload, through the marker
    cut = CutAfter(ClosingRunner(runner.fake), len(deploy_commands(runner.fake, client_max_body_size="88m")) - 1)
    assert not deploy_to(cut, password=None, client_max_body_size="88m").ok
    assert b"88m" in runner.fake.files["/etc/nginx/sites-enabled/jupyter.conf"].data and nginx.reloads == 1
    assert deploy_to(FakeRunner(runner.fake), password=None, client_max_body_size="88m").ok
    assert nginx.reloads == nginx.waited_reloads == 2


def test_the_wait_script_is_plain_python_3_4_for_ubuntu_1404s_own_python3():
    """Upstart hosts run it with their python3: 3.4 on a stock 14.04 (a conda host keeps
    it). So no f-string, no annotation, no subprocess.run (3.5)."""
    tree = ast.parse((deploy.PROJECT / "files/nginx/reload.py.j2").read_text())
    newer = [type(node).__name__ for node in ast.walk(tree)
             if isinstance(node, (ast.JoinedStr, ast.AnnAssign))
             or isinstance(node, ast.arg) and node.annotation is not None
             or isinstance(node, ast.FunctionDef) and node.returns is not None
             or isinstance(node, ast.Attribute) and node.attr == "run"]
    assert newer == []


def deploy_commands(h: FakeHost, **host_vars) -> list[str]:
    """The round trips a deploy would take on a copy of ``h``."""
    runner = FakeRunner(copy.deepcopy(h))
    deploy_to(runner, password=None, **host_vars)
    return runner.calls


def test_systemd_host_still_gets_the_systemd_unit():
    runner = FakeRunner(fake_host("systemd"))
    report = deploy_to(runner)
    assert report.ok, report.text or [r.comment for r in report.results if r.ok is False]
    assert SYSTEMD_UNIT in runner.fake.files and UPSTART_JOB not in runner.fake.files
    commands = state_commands(runner)
    assert "systemctl daemon-reload && systemctl enable -- jupyter && systemctl start -- jupyter" in commands
    assert "initctl" not in commands


@pytest.mark.parametrize("test", [False, True], ids=["deploy", "dry-run"])
def test_host_with_neither_init_is_refused_before_any_change(test):
    runner = FakeRunner(fake_host("none"))
    host = Host("web3", "203.0.113.30", vars=dict(VAR_DEFAULTS, allow_plain_http=True))
    report = deploy.deploy_host(host, deploy.Options(test=test, password=PASSWORD, log=lambda _: None),
                                runner=runner)
    assert not report.ok and report.results == []
    assert report.text.startswith("web3 runs neither systemd nor Upstart (PID 1 is 'openrc-init';")
    assert "systemd service or an Upstart job" in report.text
    assert "changed nothing" in report.text
    # only the read-only host probe went out (with the lock unless a dry run): no fact
    # batch, no command, no upload
    [probe] = runner.calls + runner.under_lock
    assert probe.startswith("sh -c")
    assert runner.fake.files.keys() == fake_host("none").files.keys()


def test_upstart_host_dry_run_predicts_the_start_and_changes_nothing():
    runner = FakeRunner(fake_host("upstart"))
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, pip_installer="pip", allow_plain_http=True))
    report = deploy.deploy_host(host, deploy.Options(test=True, password=PASSWORD, log=lambda _: None),
                                runner=runner)
    assert report.ok
    service = by_id(report.results)["jupyter_service"]
    assert service.ok is None and service.comment.startswith("would start jupyter")
    assert by_id(report.results)["jupyter_unit"].name == UPSTART_JOB
    assert runner.commands()[1:] == [] and UPSTART_JOB not in runner.fake.files


def test_stock_ubuntu_1404_python_is_refused_before_any_change_naming_what_was_found():
    h = fake_host("upstart")
    h.python = "3.4"                                  # what 14.04's python3 is
    runner = FakeRunner(h)
    report = deploy_to(runner)
    assert not report.ok and report.results == []
    assert report.text.startswith("jupyter1 has Python 3.4 as python3 (ubuntu 14.04); "
                                   "JupyterLab 4 needs Python 3.9 or later")
    assert "changed nothing" in report.text and "env_provider: conda" in report.text
    assert runner.calls == [] and runner.fake.files.keys() == fake_host("upstart").files.keys()


@pytest.mark.parametrize("python, env_provider, refused", [
    ("3.4", "venv", True), ("3.8", "venv", True), ("3.9", "venv", False), ("3.13", "venv", False),
    ("3.4", "conda", False),                         # conda brings its own Python
    ("", "venv", False),                             # not known: nothing to go on
])
def test_python_older_than_3_9_is_refused_unless_conda(python, env_provider, refused):
    host = Host("h", "203.0.113.9", vars=dict(VAR_DEFAULTS, env_provider=env_provider, allow_plain_http=True))
    info = {"init": "upstart", "pid1": "init", "os_id": "ubuntu", "os_version": "14.04", "python": python}
    if refused:
        with pytest.raises(deploy.DeployError, match=f"has Python {re.escape(python)} as python3"):
            deploy.check_supported(host, info)
    else:
        deploy.check_supported(host, info)


def test_a_fresh_ubuntu_without_python3_is_judged_by_the_python3_apt_would_install():
    probe = deploy.HostInfo()
    assert probe.parse("os=ubuntu 14.04\ninit=upstart\n", 0)["python"] == "3.4"
    assert probe.parse("os=debian 12\ninit=systemd\n", 0)["python"] == "3.11"
    assert probe.parse("os=ubuntu 14.04\ninit=upstart\npython=3.10\n", 0)["python"] == "3.10"


# --- the notebook user: jupyterfab's own account, or nothing is done ----------------

def with_account(h: FakeHost, name: str, uid: int, groups=(), marked=False) -> FakeHost:
    from fakehost import FakeUser
    h.users[name] = FakeUser(name, uid, uid, f"/home/{name}", "/bin/bash", list(groups))
    h.groups[name] = uid
    if marked:
        h.add_file(f"{deploy.USER_MARKERS}/{name}", "")
    return h


@pytest.mark.parametrize("uid, groups, why", [
    (1000, (), "exists and jupyterfab did not create it"),
    (0, (), "has uid 0"),
])
def test_an_account_jupyterfab_did_not_create_is_refused_after_the_probe_alone(uid, groups, why):
    h = with_account(fake_host("systemd"), "alice", uid, groups)
    runner = FakeRunner(h)
    report = deploy_to(runner, jupyter_user="alice", notebook_dir="/home/alice/notebooks")
    assert not report.ok and why in report.text and "alice" in report.text
    assert "jupyter_user" in report.text
    assert runner.calls == [] and len(runner.under_lock) == 1   # the probe: no facts, no useradd
    assert "usermod" not in "\n".join(runner.calls)


def test_a_marked_account_in_an_admin_group_is_refused():
    h = with_account(fake_host("systemd"), "jupyter", 998, groups=("sudo",), marked=True)
    runner = FakeRunner(h)
    report = deploy_to(runner)
    assert not report.ok and "in the group sudo" in report.text
    assert runner.calls == []


def test_the_account_jupyterfab_created_is_deployed_and_marked():
    h = fake_host("systemd")
    runner = FakeRunner(h)
    assert deploy_to(runner).ok                              # creates it, and marks it
    assert f"{deploy.USER_MARKERS}/jupyter" in h.files
    again = deploy_to(runner)                                # its own account: fine
    assert again.ok and again.changed == 0


def test_an_account_from_before_the_marker_is_known_by_the_config_it_owns():
    h = with_account(fake_host("systemd"), "jupyter", 998)
    h.add_file(deploy.CONFIG_FILE, "c = get_config()\n", 0o600, user="jupyter", group="jupyter")
    report = deploy_to(FakeRunner(h))
    assert report.ok, report.text
    assert f"{deploy.USER_MARKERS}/jupyter" in h.files


KERNEL_ENV = "/home/jupyter/.local/share/jupyterfab/kernel-env"


def test_the_users_environment_is_made_once_as_the_user_and_later_only_added_to():
    runner = FakeRunner(fake_host("systemd"))
    report = deploy_to(runner, python_packages=["tabulate"])
    assert report.ok, [r.comment for r in report.results if r.ok is False]
    sent = state_commands(runner)
    assert f"-p User=jupyter ... -- python3 -m venv {KERNEL_ENV}" in sent
    assert (f"-p User=jupyter ... -- {KERNEL_ENV}/bin/python -m pip install --disable-pip-version-check "
            "--no-input ipykernel tabulate") in sent
    assert runner.fake.pip[KERNEL_ENV] == ["ipykernel", "tabulate"]
    assert deploy_to(runner, python_packages=["tabulate"]).changed == 0
    runner.fake.pip[KERNEL_ENV] = ["ipykernel", "pandas"]      # the user: -tabulate +pandas
    again = deploy_to(runner, python_packages=["tabulate"])
    assert [r.state_id for r in again.results if r.changed] == ["kernel_env"]
    assert runner.fake.pip[KERNEL_ENV] == ["ipykernel", "pandas", "tabulate"]    # nothing removed


def unit_settings(unit: str, after: str = "") -> set[str]:
    """``Key=value`` lines of a unit file's [Service] (from the line ``after`` on)."""
    service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    lines = service.split(after, 1)[1] if after else service
    return {line for line in lines.splitlines() if re.fullmatch(r"[A-Za-z]+=.*", line)}


def test_whatever_runs_as_the_notebook_user_runs_in_a_transient_unit_confined_as_jupyter_is():
    runner = FakeRunner(fake_host("systemd"))
    assert deploy_to(runner, python_packages=["tabulate>=0.9"]).ok      # not a bare name: the probe asks python
    probes = [p for batch in runner.batches for p in batch]
    sent = "\n".join(runner.commands() + probes + runner.under_lock)
    assert "runuser" not in sent
    assert any("systemd-run" in p and "UNSATISFIED" not in p and KERNEL_ENV in p for p in probes)
    unit = runner.fake.text(SYSTEMD_UNIT)
    runs = runner.fake.confined_runs
    assert len(runs) == 2                                           # python -m venv, pip install
    for props in runs:
        transient = {"RuntimeMaxSec", "KillMode"}
        assert props["KillMode"] == "control-group" and props["RuntimeMaxSec"] == "3600"
        given = {f"{key}={value}" for key, value in props.items() if key not in transient}
        # the unit's own settings, every one of its sandboxing ones, and nothing else
        assert given <= unit_settings(unit)
        assert unit_settings(unit, "# Hardening") <= given
        assert {"User=jupyter", "Group=jupyter", "MemoryMax=75%", "TasksMax=4096"} <= given
    # a limit turned off is off in both
    runner = FakeRunner(fake_host("systemd"))
    assert deploy_to(runner, memory_max=0).ok
    assert "MemoryMax" not in runner.fake.text(SYSTEMD_UNIT)
    assert runner.fake.confined_runs and all("MemoryMax" not in p for p in runner.fake.confined_runs)


def test_on_upstart_what_runs_as_the_notebook_user_gets_a_clean_environment_and_a_time_bound():
    runner = FakeRunner(fake_host("upstart"))
    assert deploy_to(runner).ok
    sent = state_commands(runner)
    assert "systemd-run" not in sent
    assert (f"timeout -k 10 3600 env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
            f"runuser -u jupyter -- python3 -m venv {KERNEL_ENV}") in sent


def test_the_notebook_account_has_no_login_unless_the_inventory_asks():
    runner = FakeRunner(fake_host("systemd"))
    ssh = runner.fake.units["ssh"]
    assert deploy_to(runner).ok
    assert runner.fake.users["jupyter"].shell == "/usr/sbin/nologin"
    assert runner.fake.text(login.DROP_IN).endswith("\nDenyUsers jupyter\n") and ssh.reloads == 1
    assert deploy_to(runner).changed == 0 and ssh.reloads == 1
    allowed = deploy_to(runner, jupyter_user_login=True)
    assert changed(allowed) == ["jupyter_user", "notebook_user_sshd", "sshd_service"]
    assert runner.fake.users["jupyter"].shell == "/bin/bash" and login.DROP_IN not in runner.fake.files
    assert ssh.reloads == 2 and deploy_to(runner, jupyter_user_login=True).changed == 0


def test_an_account_deployed_with_a_shell_loses_it_on_the_next_deploy():
    h = with_account(fake_host("upstart"), "jupyter", 998, marked=True)
    assert h.users["jupyter"].shell == "/bin/bash"
    runner = FakeRunner(h)
    report = deploy_to(runner)
    assert report.ok and h.users["jupyter"].shell == "/usr/sbin/nologin"
    assert "usermod --shell /usr/sbin/nologin -- jupyter" in state_commands(runner)
    assert h.units["ssh"].reloads == 1          # initctl reload ssh


def test_an_sshd_that_does_not_run_as_the_ssh_service_is_never_started():
    runner = FakeRunner(fake_host("systemd"))
    runner.fake.units["ssh"].active = False         # ssh.socket starts one per connection
    report = deploy_to(runner)
    assert report.ok and "DenyUsers jupyter" in runner.fake.text(login.DROP_IN)
    assert runner.fake.units["ssh"].starts == runner.fake.units["ssh"].reloads == 0


def test_where_sshd_would_not_read_the_drop_in_the_deploy_fails_saying_what_to_do():
    runner = FakeRunner(fake_host("systemd"))
    runner.fake.sshd_reads_drop_ins = False
    report = deploy_to(runner)
    failed = {r.state_id: r for r in report.results if r.ok is False}
    assert list(failed) == ["notebook_user_sshd", "sshd_service"]
    assert ("sshd would not read /etc/ssh/sshd_config.d/00-jupyterfab-notebook-user.conf (no Include of "
            "/etc/ssh/sshd_config.d/*.conf in /etc/ssh/sshd_config, or an sshd older than 8.2), so it would "
            "not refuse jupyter: add 'DenyUsers jupyter' to /etc/ssh/sshd_config yourself, or set "
            "jupyter_user_login: true") == failed["notebook_user_sshd"].stderr
    assert login.DROP_IN not in runner.fake.files and runner.fake.units["jupyter"].active


def test_a_deploy_of_only_one_state_applies_it_alone():
    runner = FakeRunner(fake_host("systemd"))
    assert deploy_to(runner).ok
    del runner.fake.files[f"{KERNEL_ENV}/bin/python"]
    runner.fake.pip.pop(KERNEL_ENV)
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, pip_installer="pip", allow_plain_http=True))
    report = deploy.deploy_host(host, deploy.Options(log=lambda _: None, progress=False,
                                                     only=("kernel_env",)), runner=runner)
    assert report.ok and [r.state_id for r in report.results] == ["kernel_env"]
    assert report.results[0].changed and runner.fake.pip[KERNEL_ENV] == ["ipykernel"]


def test_kernel_env_shows_what_the_environment_lacks_or_that_it_is_broken():
    from jupyterfab import kernelreset
    runner = FakeRunner(fake_host("systemd"))
    assert deploy_to(runner, python_packages=["tabulate"]).ok
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, python_packages=["tabulate"]))
    out = kernelreset.show(host, runner)
    assert out.ok and out.text.startswith(f"kernel environment: {KERNEL_ENV}")
    runner.fake.pip[KERNEL_ENV] = ["ipykernel"]
    assert "lacks (the next deploy adds): tabulate" in kernelreset.show(host, runner).text
    runner.fake.files[f"{KERNEL_ENV}/bin/python"].data = b"broken"
    out = kernelreset.show(host, runner)
    assert not out.ok and "is broken" in out.text and "fab kernel-env --reset" in out.text
    run = runner.run
    runner.run = lambda command, **k: (run(command, **k) if "init=upstart" in str(command)
                                       else CmdResult(1, "", "sudo: a password is required\n"))
    out = kernelreset.show(host, runner)        # never ran (it said "unexpected answer ''")
    assert not out.ok and out.text == f"checking {KERNEL_ENV}: sudo: a password is required"
    runner.run = lambda *a, **k: CmdResult(1, "", "sudo: a password is required\n")
    out = kernelreset.show(host, runner)        # not even the init's probe
    assert not out.ok and out.text == ("jupyter1: could not tell which init system runs it "
                                       "(sudo: a password is required), so nothing was done there")


class ClosingRunner(FakeRunner):
    def close(self):
        pass


@pytest.mark.parametrize("init", ["systemd", "upstart"])
def test_a_deploy_cut_after_any_command_still_restarts_what_changed_on_the_rerun(init):
    """The real deploy, cut after each command of a change (new public URL: a new
    Jupyter config and NGINX site): whatever went live before the cut, the re-run
    restarts Jupyter / reloads NGINX for it, though it finds those files current,
    and leaves no pending marker behind."""
    watched = {"jupyter": "/etc/jupyterfab/jupyter_server_config.py",
               "nginx": "/etc/nginx/sites-enabled/jupyter.conf"}
    change = {"password": None, "public_url": "https://notebooks.example.org",
              "client_max_body_size": "77m"}
    base = FakeRunner(fake_host(init))
    assert deploy_to(base).ok
    before = {s: base.fake.files[p].data for s, p in watched.items()}

    def reacted(h: FakeHost, service: str) -> int:
        u = h.units[service]
        return u.starts + u.restarts + u.reloads + u.stops

    counter = CutAfter(ClosingRunner(copy.deepcopy(base.fake)), None)
    assert deploy_to(counter, **change).ok
    assert all(counter.inner.fake.files[p].data != before[s] for s, p in watched.items())
    for k in range(counter.done):
        h = copy.deepcopy(base.fake)
        seen = {s: reacted(h, s) for s in watched}
        report = deploy_to(CutAfter(ClosingRunner(h), k), **change)
        assert not report.ok, k
        assert deploy_to(FakeRunner(h), **change).ok, k
        for service, path in watched.items():
            if h.files[path].data != before[service]:
                assert reacted(h, service) > seen[service], (k, service)
        assert not [p for p in h.files if p.startswith("/var/lib/jupyterfab/pending/")], k


def test_default_output_is_a_line_per_changed_state_and_the_table_and_v_adds_the_detail():
    """The real deploy's results rendered as `fab deploy` prints them: the progress lines
    (stderr) plus the report (stdout), by default and with -v (measured on this fake host:
    25 and 4 lines, against 261 and 13 with the full detail that was the default before)."""
    runner = FakeRunner(fake_host("systemd"))
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, pip_installer="pip", allow_plain_http=True))
    outputs = []
    for _ in ("first", "no-op"):
        progress: list[str] = []
        report = deploy.deploy_host(host, deploy.Options(password=PASSWORD, log=progress.append), runner=runner)
        assert report.ok
        result = fleet.FleetResult([report])
        outputs.append((progress, fleet.render(result, table=True, detail=False).splitlines(),
                        fleet.render(result, table=True, detail=True).splitlines()))
    (first_progress, first, first_v), (noop_progress, noop, noop_v) = outputs
    assert len(first_progress) + len(first) <= 40
    assert len(noop_progress) + len(noop) <= 5
    # each says what changed, in the state's own words
    assert all(re.fullmatch(r"jupyter1: \S+ \(\S+\) changed in [\d.]+ s: .+", line) for line in first_progress)
    assert "jupyter1: jupyter_user (user.present) changed in 0.0 s: created user jupyter" in first_progress
    assert first[-1] == f"1 host: 1 ok, 0 failed; {len(first_progress)} states changed"
    assert noop[-2].startswith("jupyter1  ok, no changes")
    assert not any("Function:" in line or "Changes:" in line for line in first + noop)
    # -v: every changed state in full with its diff, and Salt's summary
    assert sum(line.startswith("          ID: ") for line in first_v) == len(first_progress)
    assert any(line.strip().startswith("diff:") for line in first_v) and "Summary for jupyter1" in first_v


def test_a_failed_state_is_shown_in_full_by_default():
    h = fake_host("systemd")
    h.shell_patterns.insert(0, (re.compile(r"^nginx -t -q -c /etc/nginx/nginx.conf$"),
                                (1, "", "nginx: [emerg] unknown directive \"bogus\"")))
    report = deploy_to(FakeRunner(h))
    assert not report.ok
    text = fleet.render(fleet.FleetResult([report]), table=True, detail=False)
    assert "      Result: False" in text and "unknown directive" in text
    assert text.count("          ID: ") == sum(1 for r in report.results if r.ok is False)


def test_each_hosts_edge_plan_is_worked_out_once_per_deploy(monkeypatch):
    """fab deploy's path (check_plans, preflight, deploy_hosts, each host's deploy and
    its HostPlan) works out each host's Cloudflare/TLS plan once, and every step uses it."""
    asked = plans_counted(monkeypatch)
    monkeypatch.setattr(deploy, "open_runner", lambda host: FakeRunner(fake_host("systemd"), host.name))
    hosts = [Host(name, "203.0.113.10", vars=dict(VAR_DEFAULTS, pip_installer="pip", allow_plain_http=True))
             for name in ("jupyter1", "jupyter2")]
    plans = deploy.check_plans(hosts)
    deploy.preflight(plans)
    result = deploy.deploy_hosts(hosts, deploy.Options(password=PASSWORD, log=lambda _: None, progress=False),
                                 plans)
    assert not result.failed, fleet.render(result)
    assert sorted(asked) == ["jupyter1", "jupyter2"]


def test_kernel_env_reset_works_out_each_hosts_edge_plan_once(monkeypatch, tmp_path, capsys):
    """fab kernel-env --reset checks every host's plan before connecting and its
    redeploy of the kernel environment takes that plan, as fab deploy does."""
    runners = {}
    for name in ("jupyter1", "jupyter2"):
        runners[name] = FakeRunner(fake_host("systemd"), name)
        assert deploy_to(runners[name]).ok
        runners[name].fake.shell[kernelenv.RESET] = (0, "tabulate==0.9.0\n", "")
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("defaults:\n  vars: {allow_plain_http: true, pip_installer: pip}\nhosts:\n"
                         "  jupyter1: {address: 203.0.113.10}\n  jupyter2: {address: 203.0.113.11}\n")
    asked = plans_counted(monkeypatch)
    monkeypatch.setattr(fleet, "open_runner", lambda h: runners[h.name])
    fab_task("kernel-env")(["jupyter1", "jupyter2"], inventory=str(inventory), reset=True, yes=True)
    assert sorted(asked) == ["jupyter1", "jupyter2"]
    assert capsys.readouterr().out.count("what it held (1 packages)") == 2


def own_pair(folder) -> dict:
    """tls_certificate and tls_key: a self-signed pair for the default server_name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, VAR_DEFAULTS["server_name"])])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(VAR_DEFAULTS["server_name"])]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    (folder / "c.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (folder / "k.pem").chmod(0o600)
    return {"tls_certificate": str(folder / "c.pem"), "tls_key": str(folder / "k.pem")}


TLS_DIR = "/etc/ssl/jupyterfab"
SITE = "/etc/nginx/sites-enabled/jupyter.conf"


@pytest.mark.parametrize("init", ["systemd", "upstart"])
def test_the_certificate_and_key_from_before_the_pair_go_once_nginx_runs_the_site_that_reads_it(init, tmp_path):
    """A host deployed before tls.pair has NAME.crt and NAME.key, which its live site
    reads. The deploy that brings the pair removes them only after the new site is
    live and NGINX reloaded; a deploy whose site NGINX refuses keeps them."""
    tls = own_pair(tmp_path)
    old = {f"{TLS_DIR}/{VAR_DEFAULTS['server_name']}.{suffix}": f"old {suffix}\n" for suffix in ("crt", "key")}
    h = fake_host(init)
    h.add_dir(TLS_DIR)
    for path, text in old.items():
        h.add_file(path, text)
    h.add_file(SITE, f"ssl_certificate {TLS_DIR}/{VAR_DEFAULTS['server_name']}.crt;\n")
    h.units["nginx"].active = True
    # NGINX refuses every new site at first: the old one stays live, and so do its files
    refuse = (re.compile(r"^nginx -t -q -c /etc/nginx/nginx.conf$"), (1, "", "nginx: [emerg] no"))
    h.shell_patterns.insert(0, refuse)
    runner = FakeRunner(h)
    refused = by_id(deploy_to(runner, **tls).results)
    assert refused["tls_pair"].changed and refused["nginx_site"].ok is False
    assert h.text(SITE) == f"ssl_certificate {TLS_DIR}/{VAR_DEFAULTS['server_name']}.crt;\n"
    assert refused["tls_before_pair_crt"].ok is False and "requisite failed" in refused["tls_before_pair_crt"].comment
    assert all(path in h.files for path in old)

    h.shell_patterns.remove(refuse)
    report = deploy_to(runner, password=None, **tls)
    assert report.ok, [r.comment for r in report.results if r.ok is False]
    assert {"nginx_site", "nginx_service", "tls_before_pair_crt", "tls_before_pair_key"} <= set(changed(report))
    assert not any(path in h.files for path in old)
    assert f"{TLS_DIR}/{VAR_DEFAULTS['server_name']}/cert.pem" in h.text(SITE)
    # after the site went live and NGINX reloaded
    commands = runner.commands()
    reload_at = next(i for i, c in enumerate(commands) if "nginx reload" in c or "reload -- nginx" in c)
    removed_at = [i for i, c in enumerate(commands) if c.startswith("rm -rf --") and c.endswith((".crt", ".key"))]
    assert len(removed_at) == 2 and min(removed_at) > reload_at, commands

    again = deploy_to(runner, password=None, **tls)
    assert again.ok and changed(again) == []
