"""Scenario files: sls + local files + an initial fake host in, a list of
apply steps, each with what must have happened.

Every `expect` key is checked and an unknown key is an error, so a typo in a
scenario cannot turn a check into a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakehost import FakeRunner
from unit_support import build_host, by_id

from jupyterfab.engine import fleet
from jupyterfab.engine.shell import Secret

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


@dataclass
class Seen:
    """What one step left behind: its results, the runner's record and the fake host."""

    results: list
    runner: FakeRunner
    project: Any

    @property
    def host(self):
        return self.runner.fake

    @property
    def states(self) -> dict:
        return by_id(self.results)


def check(expect: dict, results, runner: FakeRunner, project, label: str) -> None:
    seen = Seen(results, runner, project)
    for key, want in expect.items():
        where = f"{label}: expect.{key}"
        expectation = EXPECTATIONS.get(key)
        if expectation is None:
            raise AssertionError(f"{where}: unknown expectation")
        expectation(seen, want, where)


# --- one function per `expect` key: (seen, the wanted value, where for the message) ------

def _state_ids(pred):
    """The ids of the states whose result ``pred`` picks, sorted."""
    def expect(seen: Seen, want, where: str) -> None:
        assert sorted(r.state_id for r in seen.results if pred(r)) == sorted(want), where
    return expect


def _round_trips(seen: Seen, want, where: str) -> None:
    assert seen.runner.round_trips == want, f"{where}: {seen.runner.calls}"


def _commands(seen: Seen, want, where: str) -> None:
    assert seen.runner.commands() == want, where


def _commands_include(seen: Seen, want, where: str) -> None:
    joined = "\n".join(seen.runner.commands())
    for text in want:
        assert text in joined, f"{where}: {text!r} not in\n{joined}"


def _commands_exclude(seen: Seen, want, where: str) -> None:
    joined = "\n".join(seen.runner.commands())
    for text in want:
        assert text not in joined, f"{where}: {text!r} in\n{joined}"


def _probes_include(seen: Seen, want, where: str) -> None:
    probes = "\n".join(p for batch in seen.runner.batches for p in batch)
    for text in want:
        assert text in probes, f"{where}: {text!r} not in\n{probes}"


def _state_text(attribute: str):
    """{state id: text}: the text is in that state's result's ``attribute``."""
    def expect(seen: Seen, want, where: str) -> None:
        for sid, text in want.items():
            value = getattr(seen.states[sid], attribute)
            assert text in str(value), f"{where}[{sid}]: {value!r}"
    return expect


def _files(seen: Seen, want, where: str) -> None:
    """{path: "absent" | {content, content_include, content_exclude, mode, user, group}}"""
    for path, spec in want.items():
        if spec == "absent":
            assert path not in seen.host.files, f"{where}: {path} exists"
            continue
        assert path in seen.host.files, f"{where}: {path} missing"
        for attr, value in spec.items():
            _check_file(seen.host.files[path], attr, value, f"{where}: {path}")


def _check_file(f, attr: str, value, where: str) -> None:
    if attr == "content":
        assert f.data.decode() == value, f"{where} content {f.data!r}"
    elif attr == "content_include":
        assert value in f.data.decode(), f"{where} content {f.data!r}"
    elif attr == "content_exclude":
        assert value not in f.data.decode(), f"{where} content {f.data!r}"
    elif attr == "mode":
        assert f.mode == int(value, 8), f"{where} mode {f.mode:o}"
    elif attr in ("user", "group"):
        assert getattr(f, attr) == value, f"{where} {attr}"
    else:
        raise AssertionError(f"{where}: unknown file check {attr}")


def _no_files_matching(seen: Seen, want, where: str) -> None:
    for text in want:
        hits = [p for p in seen.host.files if text in p]
        assert not hits, f"{where}: {hits}"


def _dirs(seen: Seen, want, where: str) -> None:
    for path, spec in want.items():
        assert path in seen.host.dirs, f"{where}: {path} missing"
        d = seen.host.dirs[path]
        for attr, value in (spec or {}).items():
            got = f"{d.mode:04o}" if attr == "mode" else getattr(d, attr)
            assert got == value, f"{where}: {path} {attr}={got}"


def _attributes_of(collection: str):
    """{name: {attribute: value}} of the fake host's units or users."""
    def expect(seen: Seen, want, where: str) -> None:
        for name, spec in want.items():
            found = getattr(seen.host, collection)[name]
            for attr, value in spec.items():
                assert getattr(found, attr) == value, f"{where}: {name}.{attr}={getattr(found, attr)}"
    return expect


def _packages(seen: Seen, want, where: str) -> None:
    for name, version in want.items():
        assert seen.host.packages.get(name) == version, f"{where}: {name}"


def _host_attribute(attribute: str):
    def expect(seen: Seen, want, where: str) -> None:
        assert getattr(seen.host, attribute) == want, where
    return expect


def _runs_current_job_file(seen: Seen, want, where: str) -> None:
    # Upstart keeps running the definition an instance started from
    for name in want:
        unit, path = seen.host.units[name], f"/etc/init/{name}.conf"
        assert unit.running_job == seen.host.files[path].data, f"{where}: {name} runs a stale job"


def _summary_include(seen: Seen, want, where: str) -> None:
    text = fleet.summary(seen.project.host, seen.results)
    for part in want:
        assert part in text, f"{where}: {part!r} not in\n{text}"


EXPECTATIONS = {
    "changed": _state_ids(lambda r: r.changed and r.ok is True),
    "failed": _state_ids(lambda r: r.ok is False),
    "would_change": _state_ids(lambda r: r.ok is None),
    "round_trips": _round_trips,
    "commands": _commands,
    "commands_include": _commands_include,
    "commands_exclude": _commands_exclude,
    "probes_include": _probes_include,
    "comments": _state_text("comment"),
    "changes_include": _state_text("changes"),
    "stderr": _state_text("stderr"),
    "files": _files,
    "no_files_matching": _no_files_matching,
    "dirs": _dirs,
    "units": _attributes_of("units"),
    "users": _attributes_of("users"),
    "packages": _packages,
    **{key: _host_attribute(key) for key in ("apt_updates", "apt_options", "daemon_reloads",
                                             "config_reloads", "pip", "shell_runs")},
    "runs_current_job_file": _runs_current_job_file,
    "summary_include": _summary_include,
}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path: Path, project):
    spec = yaml.safe_load(path.read_text())
    unknown = set(spec) - {"description", "vars", "secret_vars", "groups", "options", "files",
                           "sls", "top", "host", "steps"}
    assert not unknown, f"{path.name}: unknown keys {unknown}"
    project.vars = dict(spec.get("vars") or {})
    project.vars.update({k: Secret(v) for k, v in (spec.get("secret_vars") or {}).items()})
    project.groups = tuple(spec.get("groups") or ())
    project.options = dict(spec.get("options") or {})
    for rel, text in (spec.get("files") or {}).items():
        project.write(f"files/{rel}", text)
    sls_files = spec["sls"] if isinstance(spec["sls"], dict) else {"main": spec["sls"]}
    if spec.get("top"):
        project.write("states/top.sls", spec["top"])
    for name, text in sls_files.items():
        project.sls(text, name)
    runner = FakeRunner(build_host(spec.get("host")))

    for i, step in enumerate(spec["steps"], 1):
        label = f"{path.name} step {i} ({step.get('name', '')})"
        unknown = set(step) - {"name", "test", "vars", "host", "files", "remove_files", "expect"}
        assert not unknown, f"{label}: unknown keys {unknown}"
        project.vars.update(step.get("vars") or {})
        build_host(step.get("host"), runner.fake)
        for rel, text in (step.get("files") or {}).items():
            project.write(f"files/{rel}", text)
        for rel in step.get("remove_files") or []:
            (project.files / rel).unlink()
        runner.calls.clear()
        runner.batches.clear()
        runner.fake.shell_runs.clear()
        results = project.apply(runner, test=step.get("test", False))
        check(step["expect"], results, runner, project, label)
