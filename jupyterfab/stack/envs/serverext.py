"""jupyterfab's own Jupyter Server extension, built into a wheel here and installed
into the server's environment by the deploy.

``extensions/jupyterfab-nodelay`` (see its docstring) sets TCP_NODELAY on the
server's WebSockets. It is a distributable package of its own (its pyproject.toml
works with pip), but the deploy does not need a build backend, a network or a
wheel on PyPI: it zips the package here, byte for byte the same on every build
(fixed timestamps and order), so an unchanged extension never changes a host.
The version carries a hash of the sources (``1.0.0+<hash>``): any change to them
is a new version, which every host then installs.

How it reaches each kind of environment (the requirement is a direct reference,
``jupyterfab-nodelay @ file://...``, which pip, uv and conda's pip list take as
they are, online or with ``--no-index``):

- built here (``envbundle``): uv installs the wheel from this machine's cache;
- pip/uv on the host, and conda: the wheel goes to ``PREFIX/extensions`` on the
  host (``file.recurse``, one hash comparison when current) and the requirement
  points there.

It is always installed; the ``nodelay`` variable decides whether the server's
config enables it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import tomllib
import zipfile
from pathlib import Path

from jupyterfab import PROJECT
from jupyterfab.stack.envs.wheelhouse import CACHE as WHEEL_CACHE

SOURCES = PROJECT / "extensions"
NODELAY = "jupyterfab-nodelay"
CACHE = WHEEL_CACHE.parent / "extensions"
_EPOCH = (1980, 1, 1, 0, 0, 0)     # the oldest time a zip can hold: the same bytes on every build


def _files(source: Path, package: str) -> list[tuple[str, bytes]]:
    return [(path.relative_to(source).as_posix(), path.read_bytes())
            for path in sorted((source / package).rglob("*.py"))]


def _metadata(project: dict, version: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {version}",
             f"Summary: {project.get('description', '')}"]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


@functools.cache
def build_wheel(name: str = NODELAY, *, sources: Path = SOURCES) -> tuple[str, bytes]:
    """(file name, bytes) of the wheel for extension ``name``: deterministic, and built
    once per run (not once per host)."""
    source = sources / name
    pyproject = (source / "pyproject.toml").read_bytes()
    project = tomllib.loads(pyproject.decode())["project"]
    package = project["name"].replace("-", "_")
    files = _files(source, package)
    h = hashlib.sha256(pyproject)
    for rel, data in files:
        h.update(f"\0{rel}\0".encode() + data)
    version = f"{project['version']}+{h.hexdigest()[:12]}"
    dist_info = f"{package}-{version}.dist-info"
    files += [(f"{dist_info}/METADATA", _metadata(project, version).encode()),
              (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: jupyterfab\n"
                                     b"Root-Is-Purelib: true\nTag: py3-none-any\n")]
    record = "\n".join([*(_record_line(rel, data) for rel, data in files), f"{dist_info}/RECORD,,"])
    files.append((f"{dist_info}/RECORD", record.encode() + b"\n"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        for rel, data in files:
            info = zipfile.ZipInfo(rel, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return f"{package}-{version}-py3-none-any.whl", out.getvalue()


def wheel(name: str = NODELAY, *, cache: Path = CACHE, sources: Path = SOURCES) -> Path:
    """The extension's wheel on this machine, alone in a folder of its own (the
    folder the deploy uploads); written when missing."""
    filename, data = build_wheel(name, sources=sources)
    folder = cache / filename.removesuffix(".whl")
    path = folder / filename
    if not path.exists() or path.read_bytes() != data:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{filename}.partial"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def wheel_name(name: str = NODELAY) -> str:
    """The wheel's file name (its version says which sources it holds); nothing written."""
    return build_wheel(name)[0]


def requirement(filename: str, folder: str) -> str:
    """The pip requirement for the wheel ``filename`` in ``folder`` (on the host, or here)."""
    name = filename.split("-", 1)[0].replace("_", "-")
    return f"{name} @ file://{folder.rstrip('/')}/{filename}"
