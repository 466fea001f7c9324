"""The documentation site: its reference pages cover every variable, state and task
(and say what the code says), and it builds strictly (a broken link fails)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from unit_support import PROJECT

from jupyterfab import inventory
from jupyterfab.dev import docs_reference
from jupyterfab.engine.states import REGISTRY
from jupyterfab.engine.states.base import GLOBAL_ARGS

DOCS = PROJECT / "docs"


def committed(page: str) -> str:
    return (DOCS / "reference" / page).read_text()


def section(text: str, heading: str) -> str:
    """The Markdown between ``heading`` and the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1:]
    end = re.search(rf"^{re.escape(level)} ", rest, re.M)
    return rest[:end.start()] if end else rest


def test_committed_reference_pages_are_what_the_code_makes():
    stale = docs_reference.stale(DOCS, docs_reference.pages())
    assert stale == [], f"run `python -m jupyterfab.dev.docs_reference`: stale {stale}"


def test_every_inventory_variable_is_in_the_reference():
    page = committed("variables.md")
    missing = [name for name in inventory.VAR_DEFAULTS if f"`{name}`" not in page]
    assert missing == []
    for key in inventory.CONNECTION_KEYS:
        assert f"`{key}`" in page


def test_every_state_and_each_of_its_arguments_is_in_the_reference():
    page = committed("states.md")
    for ref, state in REGISTRY.items():
        body = section(page, f"## `{ref}`")
        missing = [arg for arg in ["name", *state.args] if f"| `{arg}` |" not in body]
        assert missing == [], f"{ref}: arguments missing from the reference: {missing}"
    common = section(page, "## Arguments every state takes")
    assert all(f"| `{arg}` |" in common for arg in GLOBAL_ARGS)


@pytest.mark.parametrize("tasks_file, heading", [("fabfile.py", "## Host tasks: `fab`"),
                                                 ("tasks.py", "## Local tasks: `./run`")])
def test_every_task_and_each_of_its_options_is_in_the_reference(tasks_file, heading):
    collection = docs_reference.load_collection(PROJECT / tasks_file)
    part = section(committed("tasks.md"), heading)
    assert collection.task_names, tasks_file
    for name in collection.task_names:
        body = section(part, f"### `{name}`")
        options = [arg.name.replace("_", "-") for arg in collection[name].get_arguments()]
        missing = [option for option in options
                   if f"--{option}" not in body and f"--[no-]{option}" not in body]
        assert missing == [], f"{name}: options missing from the reference: {missing}"


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=project, capture_output=True, text=True,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})


def test_the_site_builds_strictly_and_a_broken_link_fails_it(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".sandbox", "site", "artifacts", "backups", "__pycache__"))
    built = mkdocs_build(copy, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "reference" / "states" / "index.html").is_file()

    page = copy / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    broken = mkdocs_build(copy, tmp_path / "site2")
    assert broken.returncode != 0
    assert "no-such-page.md" in broken.stderr
