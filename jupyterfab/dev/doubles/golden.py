"""The init files the deploy writes, rendered from the real templates with the real
variable derivation: compared byte for byte with ``tests/unit/golden/`` by the tests,
rewritten only on request by ``./run update-golden`` (then review ``git diff``)."""

from __future__ import annotations

from pathlib import Path

from jupyterfab.engine.states.base import Context
from jupyterfab.engine.states.file import render_source
from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.stack import deploy

GOLDEN = deploy.PROJECT / "tests" / "unit" / "golden"
# golden file -> (template, init system)
CASES = {"jupyter.service": ("jupyter/jupyter.service.j2", "systemd"),
         "jupyter.upstart.conf": ("jupyter/jupyter.upstart.j2", "upstart")}


def rendered(template: str, init: str) -> str:
    host = Host("jupyter1", "203.0.113.10", vars=dict(VAR_DEFAULTS, server_name="jupyter.example.org",
                                                     allow_plain_http=True))
    variables = deploy.plan_host(host).vars
    ctx = Context(host.name, vars=variables, files_dir=deploy.PROJECT / "files", init=init)
    text, _ = render_source(template, ctx)
    return text


def update(folder: Path = GOLDEN) -> list[Path]:
    """Rewrite every golden file that differs; the ones rewritten."""
    changed = []
    for name, (template, init) in CASES.items():
        path, text = folder / name, rendered(template, init)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed
