"""Scenario files: sls + local files + an initial fake host in, a list of
apply steps, each with what must have happened.

Every `expect` key is checked and an unknown key is an error, so a typo in a
scenario cannot turn a check into a silent pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakehost import FakeRunner
from unit_support import build_host, by_id

from jupyterfab.engine import fleet
from jupyterfab.engine.shell import Secret

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))


def _ids(results, pred) -> list[str]:
    return sorted(r.state_id for r in results if pred(r))


def check(expect: dict, results, runner: FakeRunner, project, label: str) -> None:
    host = runner.fake
    states = by_id(results)
    for key, want in expect.items():
        where = f"{label}: expect.{key}"
        if key == "changed":
            assert _ids(results, lambda r: r.changed and r.ok is True) == sorted(want), where
        elif key == "failed":
            assert _ids(results, lambda r: r.ok is False) == sorted(want), where
        elif key == "would_change":
            assert _ids(results, lambda r: r.ok is None) == sorted(want), where
        elif key == "round_trips":
            assert runner.round_trips == want, f"{where}: {runner.calls}"
        elif key == "commands":
            assert runner.commands() == want, where
        elif key == "commands_include":
            joined = "\n".join(runner.commands())
            for text in want:
                assert text in joined, f"{where}: {text!r} not in\n{joined}"
        elif key == "commands_exclude":
            joined = "\n".join(runner.commands())
            for text in want:
                assert text not in joined, f"{where}: {text!r} in\n{joined}"
        elif key == "probes_include":
            probes = "\n".join(p for batch in runner.batches for p in batch)
            for text in want:
                assert text in probes, f"{where}: {text!r} not in\n{probes}"
        elif key == "comments":
            for sid, text in want.items():
                assert text in states[sid].comment, f"{where}[{sid}]: {states[sid].comment!r}"
        elif key == "changes_include":
            for sid, text in want.items():
                assert text in str(states[sid].changes), f"{where}[{sid}]: {states[sid].changes!r}"
        elif key == "stderr":
            for sid, text in want.items():
                assert text in states[sid].stderr, f"{where}[{sid}]: {states[sid].stderr!r}"
        elif key == "files":
            for path, spec in want.items():
                if spec == "absent":
                    assert path not in host.files, f"{where}: {path} exists"
                    continue
                assert path in host.files, f"{where}: {path} missing"
                f = host.files[path]
                for attr, value in spec.items():
                    if attr == "content":
                        assert f.data.decode() == value, f"{where}: {path} content {f.data!r}"
                    elif attr == "content_include":
                        assert value in f.data.decode(), f"{where}: {path} content {f.data!r}"
                    elif attr == "content_exclude":
                        assert value not in f.data.decode(), f"{where}: {path} content {f.data!r}"
                    elif attr == "mode":
                        assert f.mode == int(value, 8), f"{where}: {path} mode {f.mode:o}"
                    elif attr in ("user", "group"):
                        assert getattr(f, attr) == value, f"{where}: {path} {attr}"
                    else:
                        raise AssertionError(f"{where}: unknown file check {attr}")
        elif key == "no_files_matching":
            for text in want:
                hits = [p for p in host.files if text in p]
                assert not hits, f"{where}: {hits}"
        elif key == "dirs":
            for path, spec in want.items():
                assert path in host.dirs, f"{where}: {path} missing"
                d = host.dirs[path]
                for attr, value in (spec or {}).items():
                    got = f"{d.mode:04o}" if attr == "mode" else getattr(d, attr)
                    assert got == value, f"{where}: {path} {attr}={got}"
        elif key in ("units", "users"):         # {name: {attribute: value}}
            for name, spec in want.items():
                found = getattr(host, key)[name]
                for attr, value in spec.items():
                    assert getattr(found, attr) == value, f"{where}: {name}.{attr}={getattr(found, attr)}"
        elif key == "packages":
            for name, version in want.items():
                assert host.packages.get(name) == version, f"{where}: {name}"
        elif key in ("apt_updates", "apt_options", "daemon_reloads", "config_reloads", "pip", "shell_runs"):
            assert getattr(host, key) == want, where
        elif key == "runs_current_job_file":
            # Upstart keeps running the definition an instance started from
            for name in want:
                unit, path = host.units[name], f"/etc/init/{name}.conf"
                assert unit.running_job == host.files[path].data, f"{where}: {name} runs a stale job"
        elif key == "summary_include":
            text = fleet.summary(project.host, results)
            for part in want:
                assert part in text, f"{where}: {part!r} not in\n{text}"
        else:
            raise AssertionError(f"{where}: unknown expectation")


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
