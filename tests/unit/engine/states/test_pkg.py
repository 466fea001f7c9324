"""pkg.installed on its own: given the installed packages and the lists' age (and
apt's answers), the commands it yields and what it reports. Its facts-in,
commands-out cases are scenarios (scenarios/pkg_apt.yaml, pkg_retry.yaml)."""

from __future__ import annotations

from unit_support import OK, drive, make_call, texts

from jupyterfab.engine.runner import CmdResult


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
