"""pip.installed on its own: given its marker and the environment (and pip's
answers), the commands it yields and what it reports. The marker deciding whether
pip runs at all (requirements or wheelhouse changed) is scenarios/wheelhouse.yaml."""

from __future__ import annotations

from unit_support import OK, drive, make_call, texts

from jupyterfab.engine.facts.files import FileInfo
from jupyterfab.engine.runner import CmdResult
from jupyterfab.engine.states.base import Run
from jupyterfab.engine.states.pip import install_hash


def test_pip_failure_leaves_marker_alone():
    call = make_call("pip.installed", "jupyterlab", {"marker": None, "python": False}, bin_env="/opt/v")
    ops, result = drive(call, [OK, CmdResult(1, "", "ERROR: No matching distribution")])
    assert texts(ops) == ["python3 -m venv /opt/v",
                          "/opt/v/bin/python -m pip install --disable-pip-version-check --no-input jupyterlab"]
    assert result.ok is False and "No matching distribution" in result.stderr


def test_pip_index_url_is_passed_and_part_of_the_hash():
    plain = make_call("pip.installed", "ipykernel", {"marker": None, "python": True}, bin_env="/opt/v")
    mirror = make_call("pip.installed", "ipykernel", {"marker": None, "python": True}, bin_env="/opt/v",
                       index_url="http://198.18.0.1:3141/root/pypi/+simple/")
    assert install_hash(plain) != install_hash(mirror)
    assert "--index-url http://198.18.0.1:3141/root/pypi/+simple/ ipykernel" in texts(drive(mirror)[0])[0]


# --- pip.installed with uv ---------------------------------------------------------

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
