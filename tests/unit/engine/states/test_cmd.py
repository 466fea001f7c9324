"""cmd.run on its own: what it runs and what it reports, secrets kept out of both.
creates/unless/onlyif, onchanges and hostile values are scenarios
(scenarios/conditions.yaml, onchanges.yaml, injection.yaml)."""

from __future__ import annotations

from unit_support import drive, make_call, texts

from jupyterfab.engine.runner import CmdResult
from jupyterfab.engine.shell import Secret


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
