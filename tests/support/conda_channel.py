"""A conda channel the tests build themselves: ``noarch: python`` packages in conda's
``.tar.bz2`` format and the ``repodata.json`` of each subdir, laid out as on a
channel server, so any static HTTP server (the tests serve it on the sandbox
bridge) is a channel that ``conda install -c URL`` (and a condarc's ``channels:``)
reads.

    package = noarch_python_package(tmp, "hello", "1.0", {"hello/__init__.py": b"X = 1\n"})
    write_channel(tmp / "channel", [package])     # -> channel/noarch/..., channel/linux-64/...
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

SUBDIRS = ("noarch", "linux-64")
TIMESTAMP = 1767225600000          # fixed: the same inputs build the same bytes


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, TIMESTAMP // 1000
    tar.addfile(info, io.BytesIO(data))


def noarch_python_package(out: Path, name: str, version: str, files: dict[str, bytes], *,
                          build: str = "pyhd8ed1ab_0", depends: tuple[str, ...] = ("python >=3.8",)) -> Path:
    """``NAME-VERSION-BUILD.tar.bz2`` with ``files`` (paths inside site-packages)."""
    index = {"name": name, "version": version, "build": build, "build_number": 0,
             "depends": list(depends), "noarch": "python", "subdir": "noarch", "arch": None,
             "platform": None, "license": "BSD-3-Clause", "timestamp": TIMESTAMP}
    payload = {f"site-packages/{path}": data for path, data in sorted(files.items())}
    paths = {"paths": [{"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(d).hexdigest(),
                        "size_in_bytes": len(d)} for p, d in payload.items()], "paths_version": 1}
    target = out / f"{name}-{version}-{build}.tar.bz2"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(index, indent=2, sort_keys=True).encode())
        _add(tar, "info/paths.json", json.dumps(paths, indent=2).encode())
        _add(tar, "info/files", "".join(f"{p}\n" for p in payload).encode())
        for path, data in payload.items():
            _add(tar, path, data)
    target.write_bytes(buffer.getvalue())
    return target


def _index_of(package: Path) -> dict:
    with tarfile.open(package, mode="r:bz2") as tar:
        return json.load(tar.extractfile("info/index.json"))


def write_channel(root: Path, packages: list[Path]) -> Path:
    """Every subdir's repodata.json (the ones without packages too, as conda expects)."""
    records: dict[str, dict] = {subdir: {} for subdir in SUBDIRS}
    for package in packages:
        index = _index_of(package)
        data = package.read_bytes()
        subdir = index["subdir"]
        (root / subdir).mkdir(parents=True, exist_ok=True)
        (root / subdir / package.name).write_bytes(data)
        records[subdir][package.name] = {**index, "md5": hashlib.md5(data).hexdigest(),
                                         "sha256": hashlib.sha256(data).hexdigest(),
                                         "size": len(data)}
    for subdir, packages_here in records.items():
        (root / subdir).mkdir(parents=True, exist_ok=True)
        (root / subdir / "repodata.json").write_text(json.dumps(
            {"info": {"subdir": subdir}, "packages": packages_here, "packages.conda": {},
             "removed": [], "repodata_version": 1}, indent=1, sort_keys=True))
    return root
