"""A Miniforge-shaped installer the tests build themselves (never committed as a binary).

The tests cannot reach conda channels, so they cannot run a real Miniforge or
Miniconda installer. This builds a stand-in with the same outside: one
self-extracting shell script, run as ``bash installer.sh -b -p PREFIX``, that
refuses an existing prefix the way the real one does (unless ``-u``), unpacks
its payload (a tar.gz appended after the header) into the prefix, rewrites the
prefix into its scripts, and leaves ``PREFIX/bin/conda`` and
``PREFIX/conda-meta``. Inside, the ``conda`` command is
``tests/support/conda_standin.py``: it is documented there what it does
and does not do.

    installer = build(tmp_path)            # -> Installer(path, sha256)
    # hosts.yaml: conda_installer: <installer.path>, conda_installer_sha256: <installer.sha256>
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

STANDIN = Path(__file__).with_name("conda_standin.py")
PLACEHOLDER = "/__JUPYTERFAB_CONDA_PREFIX_PLACEHOLDER__"
PAYLOAD_MARKER = "@@JUPYTERFAB_PAYLOAD_BELOW@@"

# What the header does, in the order Miniforge's constructor-made header does it:
# options, refuse an existing prefix, unpack, fix up the prefix, say so.
HEADER = r"""#!/bin/sh
# Miniforge-shaped STAND-IN installer, built by jupyterfab's tests: NOT Miniforge.
# It installs a `conda` that implements only what jupyterfab uses (see
# tests/support/conda_standin.py), on top of this host's python3.
set -eu
PREFIX="${HOME:-/root}/miniforge3"
BATCH=0
UPDATE=0
usage() {
    echo "usage: $0 [options]"
    echo ""
    echo "Installs the jupyterfab conda stand-in (for tests)."
    echo ""
    echo "-b           run install in batch mode (without manual intervention)"
    echo "-p PREFIX    install prefix, defaults to $PREFIX, must not contain spaces."
    echo "-u           update an existing installation"
}
while getopts "bfhp:su" opt; do
    case "$opt" in
        b) BATCH=1 ;;
        p) PREFIX="$OPTARG" ;;
        u) UPDATE=1 ;;
        f|s) ;;
        h) usage; exit 2 ;;
        *) usage; exit 2 ;;
    esac
done
if [ "$BATCH" = 0 ]; then
    echo "ERROR: this stand-in only installs in batch mode (-b): there is no license to read" >&2
    exit 2
fi
case "$PREFIX" in
    *" "*) echo "ERROR: Cannot install into directories with spaces" >&2; exit 1 ;;
    /*) ;;
    *) PREFIX="$(pwd)/$PREFIX" ;;
esac
if [ "$UPDATE" = 0 ] && [ -e "$PREFIX" ]; then
    echo "ERROR: File or directory already exists: '$PREFIX'" >&2
    echo "If you want to update an existing installation, use the -u option." >&2
    exit 1
fi
PYTHON="$(command -v python3 || true)"
if [ -z "$PYTHON" ]; then
    echo "ERROR: the jupyterfab conda stand-in needs python3 (with venv) on the host" >&2
    exit 1
fi
echo "PREFIX=$PREFIX"
echo "Unpacking payload ..."
mkdir -p "$PREFIX"
# the base environment: a venv of the host's Python, standing in for conda's own
# (no pip in it: the stand-in conda needs only the standard library)
"$PYTHON" -m venv --copies --without-pip "$PREFIX"
line=$(awk '/^@@JUPYTERFAB_PAYLOAD_BELOW@@$/ { print NR + 1; exit }' "$0")
tail -n "+$line" "$0" | tar -xz -C "$PREFIX" --no-same-owner
# like constructor's installers: the prefix placeholder becomes the real prefix
sed -i "s|/__JUPYTERFAB_CONDA_PREFIX_PLACEHOLDER__|$PREFIX|g" "$PREFIX/bin/conda"
chmod 0755 "$PREFIX/bin/conda"
mkdir -p "$PREFIX/conda-meta" "$PREFIX/envs"
printf '==> %s <==\n# cmd: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$0 $*" >> "$PREFIX/conda-meta/history"
echo "installation finished."
exit 0
"""


@dataclass(frozen=True)
class Installer:
    path: Path
    sha256: str


def payload() -> bytes:
    """bin/conda (the stand-in, shebang to the prefix's python), as a tar.gz."""
    conda = (f"#!{PLACEHOLDER}/bin/python\n" + STANDIN.read_text()).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("bin/conda")
        info.size, info.mode, info.mtime = len(conda), 0o755, 0
        tar.addfile(info, io.BytesIO(conda))
    return gzip.compress(buffer.getvalue(), mtime=0)   # no timestamp: a stable sha256


def build(directory: Path, name: str = "Miniforge3-standin-Linux-x86_64.sh") -> Installer:
    """Write the installer into ``directory``; same inputs, same bytes (same sha256)."""
    data = HEADER.encode() + PAYLOAD_MARKER.encode() + b"\n" + payload()
    path = Path(directory) / name
    path.write_bytes(data)
    path.chmod(0o755)
    return Installer(path, hashlib.sha256(data).hexdigest())
