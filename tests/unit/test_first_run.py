"""What a new user sees the first time ``./run`` installs the project."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_installing_the_project_as_run_does_prints_no_setuptools_box(tmp_path):
    # As ./run: an editable install with the newest setuptools the build system allows,
    # in a fresh venv (its dependencies are not what this is about: --no-deps).
    # A copy of the project: the build writes its metadata (jupyterfab.egg-info) beside
    # the sources, and a test writes nothing into the checkout.
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".sandbox", "site", "artifacts", "backups", "__pycache__", "*.egg-info"))
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin/python"),
                           "install", "-q", "--no-deps", "-e", str(copy)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "WARNING: Location" not in line]   # this machine's pip.conf, not the project
    assert not [line for line in said if "****" in line or "Warning" in line], "\n".join(said)
