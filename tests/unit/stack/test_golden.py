"""Golden files: the init files the deploy writes, rendered from the real
templates with the real variable derivation, compared byte for byte.

A template change that alters what lands on hosts must show up here as a diff
someone reviews. To accept such a change, rewrite the goldens (a separate,
explicit step: the tests never write them) and read the diff before committing:

    ./run update-golden
    git diff tests/unit/golden/
"""

from __future__ import annotations

import difflib
import shutil

import pytest

from jupyterfab.dev.doubles.golden import CASES, GOLDEN, rendered, update
from jupyterfab.engine import sls
from jupyterfab.engine.states.base import Context
from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.stack import deploy, serving


@pytest.mark.parametrize("golden", CASES)
def test_rendered_init_file_matches_golden(golden):
    template, init = CASES[golden]
    text, expected = rendered(template, init), (GOLDEN / golden).read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), text.splitlines(keepends=True),
                                        f"golden/{golden}", f"rendered {template}"))
    assert text == expected, f"{template} no longer renders as golden/{golden} (./run update-golden):\n{diff}"


def test_update_rewrites_only_what_differs(tmp_path):
    for name in CASES:
        (tmp_path / name).write_text((GOLDEN / name).read_text())
    (tmp_path / "jupyter.service").write_text("stale\n")
    assert update(tmp_path) == [tmp_path / "jupyter.service"]
    assert (tmp_path / "jupyter.service").read_text() == (GOLDEN / "jupyter.service").read_text()


def test_both_init_files_run_the_same_jupyter_command():
    # Shared through files/jupyter/command.j2: a flag added for one init system
    # must reach the other.
    systemd = rendered("jupyter/jupyter.service.j2", "systemd").splitlines()
    upstart = rendered("jupyter/jupyter.upstart.j2", "upstart").splitlines()
    exec_start = next(line for line in systemd if line.startswith("ExecStart="))
    exec_line = next(line for line in upstart if line.startswith("exec "))
    assert exec_start.removeprefix("ExecStart=") == exec_line.removeprefix("exec ")
    assert exec_line.removeprefix("exec ").startswith(
        "/opt/jupyterfab/venv/bin/python -I -u /opt/jupyterfab/venv/bin/jupyter-lab ")


def test_upstart_job_has_the_stanzas_the_issue_asks_for():
    # The golden pins every byte; this says which lines matter and why the job
    # is shaped so (a regenerated golden that loses one of them fails here).
    lines = rendered("jupyter/jupyter.upstart.j2", "upstart").splitlines()
    for stanza in ("start on filesystem or runlevel [2345]", "stop on runlevel [!2345]",
                   "respawn", "respawn limit 10 90", "setuid jupyter", "setgid jupyter",
                   "chdir /home/jupyter/notebooks", "env HOME=/home/jupyter", "kill timeout 30"):
        assert stanza in lines, stanza


def unit_check(init: str) -> str:
    """The check_cmd the deploy runs on a candidate init file before it goes live."""
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, allow_plain_http=True))
    variables = {**deploy.plan_host(host).vars, "hashed_password": "argon2:placeholder",
                 "wheelhouse_local": "", "env_bundle": "", "kernel_bundle": "", "extensions_local": "/nonexistent"}
    ctx = Context(host.name, vars=variables, files_dir=deploy.PROJECT / "files", init=init)
    [unit] = [d for d in sls.load_states(deploy.PROJECT / "states", ctx) if d.id == "jupyter_unit"]
    return unit.args["check_cmd"]


def run_check(check: str, content: str, tmp_path) -> int:
    import shlex
    import subprocess
    candidate = tmp_path / ".jupyter.candidate.tmp"
    candidate.write_text(content)
    return subprocess.run(["sh", "-c", check.replace("{tmp}", shlex.quote(str(candidate)))],
                          capture_output=True).returncode


def test_the_units_check_cmd_is_systemds_own_verify(tmp_path):
    check = unit_check("systemd")
    # the golden unit, with commands that exist on this machine
    good = (GOLDEN / "jupyter.service").read_text().replace(
        "/opt/jupyterfab/venv/bin/python -I -u /opt/jupyterfab/venv/bin/jupyter-lab", shutil.which("true")
    ).replace(serving.CHECK, shutil.which("true"))
    assert run_check(check, good, tmp_path) == 0
    assert run_check(check, good.replace("[Service]", "[Service]\nExecStartPre+=/usr/bin/id"), tmp_path) != 0
    assert run_check(check, good.replace("[Service]", "[Servce]"), tmp_path) != 0
    assert run_check(check, good.replace(shutil.which("true"), "/nonexistent/jupyter-lab"), tmp_path) != 0


def test_the_upstart_jobs_check_cmd_takes_only_its_stanzas(tmp_path):
    check = unit_check("upstart")
    good = (GOLDEN / "jupyter.upstart.conf").read_text()
    assert run_check(check, good, tmp_path) == 0
    assert run_check(check, good + "pre-start exec /usr/bin/id\n", tmp_path) != 0
    assert run_check(check, good.replace("setuid jupyter", "setuid jupyter\nsetuid root x"), tmp_path) != 0
