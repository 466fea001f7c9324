"""Python environments built once on the controller, unpacked on every host.

Installing JupyterLab's ~90 wheels is mostly byte-compiling ~3,000 modules: about
13 s of CPU per host, paid again by every host of a fleet. When this machine runs
the same Python minor version and architecture as the hosts, the environment is
built here once (uv, from the wheelhouse, bytecode included, relocatable entry
points) and cached as a tarball; each host then only unpacks it
(``env.unpacked``). The notebook user's kernel environment is seeded the same way
the first time (``pip.installed`` with ``bundle``: ipykernel and its ~30 packages,
another ~9 s of compiling per host). Otherwise the hosts install for themselves
(``pip.installed``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from jupyterfab.engine.errors import ServiceError
from jupyterfab.stack.envs.wheelhouse import CACHE as WHEEL_CACHE

CACHE = WHEEL_CACHE.parent / "envs"
# Made by `python -m venv` on the host itself, pointing at its own interpreter.
HOST_OWNED = {"bin/python", "bin/python3", "pyvenv.cfg", "lib64"}


class BundleError(ServiceError):
    pass


def can_build_for(python: str, machine: str) -> bool:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return python == here and machine == platform.machine()


def _manifest_hash(wheel_dir: Path) -> str:
    h = hashlib.sha256()
    for wheel in sorted(wheel_dir.glob("*.whl")):
        h.update(f"{wheel.name} {wheel.stat().st_size}\n".encode())
    return h.hexdigest()


def _uv(wheel_dir: Path, cache: Path) -> Path:
    wheels = sorted(wheel_dir.glob("uv-*.whl"))
    if not wheels:
        raise BundleError(f"no uv wheel in {wheel_dir}")
    target = cache / f"uv-{wheels[-1].name}" / "uv"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("/scripts/uv")))
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.replace(target)
    return target


def ensure(requirements: list[str], wheel_dir: Path, *, cache: Path = CACHE, log=print,
           with_uv: bool = False) -> Path:
    """The cached tarball of an environment with ``requirements`` from ``wheel_dir``;
    ``with_uv``: uv's executable in its bin/ too (as ``pip.installed`` with ``installer:
    uv`` leaves it in an environment it makes)."""
    key_text = json.dumps([sorted(requirements), _manifest_hash(wheel_dir),
                           sys.version_info[:2], platform.machine(), *(["uv"] if with_uv else [])])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    bundle = cache / f"env-py{sys.version_info[0]}.{sys.version_info[1]}-{key}.tar.gz"
    if bundle.exists():
        return bundle
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f".build-{key}"
    shutil.rmtree(work, ignore_errors=True)
    log(f"building the Python environment once on this machine ({len(requirements)} requirements)")
    uv = _uv(wheel_dir, cache)
    env = {**os.environ, "UV_CACHE_DIR": str(cache / "uv-cache"), "UV_NO_CONFIG": "1"}
    for args in ([str(uv), "venv", "--quiet", "--relocatable", "--python", sys.executable, str(work)],
                 [str(uv), "pip", "install", "--quiet", "--python", str(work / "bin/python"),
                  "--no-index", "--find-links", str(wheel_dir), "--compile-bytecode",
                  "--link-mode", "copy", "pip", *requirements]):
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise BundleError(f"building the environment failed: {proc.stderr.strip()[-2000:]}")
    if with_uv:
        shutil.copy2(uv, work / "bin" / "uv")
    tmp = bundle.with_suffix(".partial")
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for path in sorted(work.rglob("*")):
            rel = path.relative_to(work).as_posix()
            if rel in HOST_OWNED or rel.split("/")[0] in HOST_OWNED or rel.startswith("bin/python"):
                continue
            if path.is_dir() and not path.is_symlink():
                continue    # tar -x makes parent directories
            tar.add(path, arcname=rel, recursive=False)
    tmp.replace(bundle)
    shutil.rmtree(work, ignore_errors=True)
    return bundle
