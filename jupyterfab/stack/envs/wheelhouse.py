"""Wheelhouses for hosts that cannot reach PyPI.

The controller downloads wheels for the host's Python version and architecture
with ``pip download``, once per requirement set (cached), and the deploy uploads
the folder (``file.recurse``: one hash comparison when the host already has it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from jupyterfab.engine.errors import ServiceError, tool_output_tail

CACHE = Path(os.environ.get("JUPYTERFAB_WHEEL_CACHE",
                            "/var/cache/jupyterfab/wheelhouse" if os.geteuid() == 0
                            else Path.home() / ".cache/jupyterfab/wheelhouse"))


class WheelhouseError(ServiceError):
    pass


def platform_tags(machine: str, glibc: tuple[int, int]) -> list[str]:
    """Every manylinux tag a host with this glibc accepts, newest first (pure)."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    major, minor = glibc
    return [*(f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)),
            f"manylinux2014_{arch}", f"linux_{arch}"]


def cache_key(requirements: list[str], python: str, machine: str, glibc: tuple[int, int]) -> str:
    text = json.dumps([sorted(requirements), python, machine, list(glibc)])
    return f"py{python}-{machine}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def ensure(requirements: list[str], *, python: str, machine: str, glibc: tuple[int, int],
           cache: Path = CACHE, log=print) -> Path:
    """The folder of wheels for these requirements on such a host; built when missing."""
    key = cache_key(requirements, python, machine, glibc)
    target = cache / key
    complete = cache / f"{key}.complete"    # beside, not inside: it is not a wheel
    if complete.exists() and target.is_dir():
        return target
    building = cache / f".{key}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    log(f"downloading wheels for Python {python} on {machine} (once; cached in {target})")
    args = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            "--dest", str(building)]
    for tag in platform_tags(machine, glibc):
        args += ["--platform", tag]
    proc = subprocess.run(args + ["pip", "setuptools", "wheel", *requirements],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise WheelhouseError(f"pip download failed for {', '.join(requirements)}:\n"
                              f"{tool_output_tail(proc.stderr)}")
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    complete.write_text(json.dumps({"requirements": requirements}))
    return target
