"""`invoke verify`'s host checks on an Upstart host and on a systemd host, against a
stand-in for testinfra's ``host`` (no Upstart host can be booted here)."""

from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from testinfra.modules.service import Service, SystemdService, UpstartService

from jupyterfab.engine.initsys import DETECT
from jupyterfab.verify import conftest as verify_conftest
from jupyterfab.verify import test_deployed_host as checks

V = {"jupyter_user": "jupyter"}
JOB = ("start on filesystem or runlevel [2345]\nrespawn\nrespawn limit 10 90\n"
       "normal exit 0 TERM\nsetuid jupyter\nsetgid jupyter\n")
UNIT = "[Service]\nRestart=on-failure\nStartLimitBurst=10\n"


@dataclass
class StubFile:
    text: str | None
    mode: int = 0o644
    user: str = "root"

    @property
    def exists(self) -> bool:
        return self.text is not None

    def contains(self, pattern: str) -> bool:      # testinfra: grep -qs -- PATTERN FILE
        return self.text is not None and re.search(pattern, self.text, re.M) is not None


class UnexpectedCommand(Exception):
    """Not an AssertionError: a check that runs something unforeseen must not pass
    a test that expects the check's own assertion to fail."""


class StubHost:
    def __init__(self, init: str, files: dict[str, str], initctl_status: str = ""):
        self.init, self.files, self.initctl_status = init, files, initctl_status
        self.commands: list[str] = []
        self.services: dict[str, SimpleNamespace] = {
            n: SimpleNamespace(is_running=True, is_enabled=True) for n in ("jupyter", "nginx")}

    def file(self, path: str) -> StubFile:
        return StubFile(self.files.get(path))

    def run(self, command: str, *args):
        text = command % tuple(shlex.quote(a) for a in args) if args else command
        self.commands.append(text)
        if args == (DETECT,):
            return SimpleNamespace(rc=0, stdout=f"init={self.init}\npid1=init\n")
        if text == "initctl status jupyter":
            return SimpleNamespace(rc=0, stdout=self.initctl_status)
        raise UnexpectedCommand(text)

    def service(self, name: str):
        return self.services[name]

    @contextlib.contextmanager
    def sudo(self):
        yield


def upstart_host(job: str = JOB, status: str = "jupyter start/running, process 812\n") -> StubHost:
    return StubHost("upstart", {"/etc/init/jupyter.conf": job,
                                "/etc/nginx/sites-enabled/jupyter.conf": "proxy_set_header Upgrade $x;\n"},
                    status)


def test_the_init_fixture_asks_the_way_the_deploy_does():
    assert verify_conftest.host_init(upstart_host()) == "upstart"
    assert verify_conftest.host_init(StubHost("systemd", {})) == "systemd"


def test_upstart_host_passes_with_the_deployed_job_and_a_running_instance():
    host = upstart_host()
    checks.test_unit_and_site_files(host, "upstart", V)
    checks.test_services_are_running_and_enabled(host, "upstart")
    assert "initctl status jupyter" in host.commands


@pytest.mark.parametrize("missing", ["respawn\n", "respawn limit 10 90\n", "setuid jupyter\n"])
def test_upstart_job_without_its_restart_policy_or_user_fails(missing):
    with pytest.raises(AssertionError, match=re.escape(missing.strip().split()[0])):
        checks.test_unit_and_site_files(upstart_host(job=JOB.replace(missing, "")), "upstart", V)


@pytest.mark.parametrize("status", ["jupyter stop/waiting\n", "jupyter start/post-start, process 812\n",
                                    "initctl: Unknown job: jupyter\n"])
def test_upstart_job_not_running_fails_even_if_testinfra_were_fooled(status):
    host = upstart_host(status=status)
    with pytest.raises(AssertionError, match=re.escape(status.strip())):
        checks.test_services_are_running_and_enabled(host, "upstart")
    assert host.commands[-1] == "initctl status jupyter"


def test_systemd_host_is_checked_as_before_and_never_asked_about_upstart():
    host = StubHost("systemd", {"/etc/systemd/system/jupyter.service": UNIT,
                                "/etc/nginx/sites-enabled/jupyter.conf": "proxy_set_header Upgrade $x;\n"})
    checks.test_unit_and_site_files(host, "systemd", V)
    checks.test_services_are_running_and_enabled(host, "systemd")
    assert host.commands == []
    with pytest.raises(AssertionError, match="Restart=on-failure"):   # an Upstart job is no systemd unit
        checks.test_unit_and_site_files(upstart_host(), "systemd", V)


class BackendProbe:
    """Just what testinfra's Service.get_module_class looks at."""

    def __init__(self, files: dict[str, bool], commands: set[str]):
        self.system_info = SimpleNamespace(type="linux")
        self._files, self._commands = files, commands

    def file(self, path):
        return SimpleNamespace(is_directory=self._files.get(path, False), linked_to="/sbin/init")

    def exists(self, command):
        return command in self._commands


def test_testinfra_picks_its_upstart_backend_on_an_upstart_host():
    upstart = BackendProbe({"/etc/init": True}, {"initctl", "status"})
    assert Service.get_module_class(upstart) is UpstartService
    systemd = BackendProbe({"/run/systemd/system/": True}, {"systemctl"})
    assert Service.get_module_class(systemd) is SystemdService
