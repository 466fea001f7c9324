"""Free space on the host, asked in the deploy's one probe, checked before any change.

A host whose prefix or /etc is full would fail part-way: pip or tar halfway
through an environment, a config that cannot be written. Everything goes live by
rename after it is complete, so the live side would survive; but the run is
refused up front, naming the path and its free space, so nothing is even tried.

    SCRIPT      shell for the probe: $SPACE_PATHS (one path a line) -> free=KB PATH
                and the environments already under the prefix (env=ID)
    needs(...)  what a deploy or upgrade writes where, in KB (pure)
    shortfall   the one-line refusal, or None (pure)
"""

from __future__ import annotations

import posixpath
import struct
from pathlib import Path

from jupyterfab.stack.envs import envlayout

# Directories a deploy writes into besides the prefix: each gets at least this.
CONFIG_DIRS = ("/etc/nginx", "/etc/jupyterfab", "/etc/ssl/jupyterfab", "/etc/systemd/system")
MIN_CONFIG_KB = 1024
# The prefix always gets this much (the config of conda, markers, a wheel or two)...
MIN_PREFIX_KB = 16 * 1024
# ...plus, for an environment that is not there yet, its unpacked size and this margin.
MARGIN = 1.1

# $1 the paths, one a line; $2 the prefix. For each path, the free KB of the
# filesystem it is (or will be) on: its nearest existing ancestor's.
SCRIPT = r"""
paths="$1"; set -- "$2"
while IFS= read -r p; do
    [ -n "$p" ] || continue
    q="$p"; while [ ! -e "$q" ]; do q="${q%/*}"; [ -n "$q" ] || q=/; done
    set -- "$@" "$q"
done <<EOF
$paths
EOF
for d in "$1/ENVS"/*; do [ -d "$d" ] && echo "env=${d##*/}"; done
shift
# one df for every path: a line for each, in order (none kept if one is missing)
[ $# -eq 0 ] || df -Pk -- "$@" 2>/dev/null | PATHS="$paths" awk '
    BEGIN { n = split(ENVIRON["PATHS"], all, "\n"); for (i = 1; i <= n; i++) if (all[i] != "") p[++k] = all[i] }
    NR > 1 { free[NR - 1] = $4 }
    END { if (NR - 1 == k) for (i = 1; i <= k; i++) print "free=" free[i] " " p[i] }'
true
""".replace("ENVS", envlayout.ENVS)


def parse(lines: list[str]) -> tuple[dict[str, int], set[str]]:
    """``free=KB PATH`` and ``env=ID`` lines -> ({path: KB}, {env ids}) (pure)."""
    free, envs = {}, set()
    for line in lines:
        key, _, value = line.partition("=")
        if key == "free":
            kb, _, path = value.partition(" ")
            if kb.isdigit() and path:
                free[path] = int(kb)
        elif key == "env" and value:
            envs.add(value)
    return free, envs


def unpacked_kb(bundle: str | Path) -> int:
    """A .tar.gz's unpacked size, from gzip's trailer (its size modulo 4 GiB)."""
    with open(bundle, "rb") as f:
        f.seek(-4, 2)
        return struct.unpack("<I", f.read(4))[0] // 1024


def needs(prefix: str, env_bundle: str, env_ids: set[str], config_dirs=CONFIG_DIRS) -> dict[str, int]:
    """KB each path must have free for this run (pure but for the bundle's trailer)."""
    prefix_kb = MIN_PREFIX_KB
    if env_bundle and Path(env_bundle).name.removesuffix(".tar.gz") not in env_ids:
        prefix_kb += int(unpacked_kb(env_bundle) * MARGIN)
    return {prefix.rstrip("/") or "/": prefix_kb, **{d: MIN_CONFIG_KB for d in config_dirs}}


def shortfall(host: str, free: dict[str, int], need: dict[str, int]) -> str | None:
    """The refusal naming each path short of space, or None (pure). A path the probe
    could not measure is not refused."""
    short = [(path, free[path], kb) for path, kb in need.items()
             if path in free and free[path] < kb]
    if not short:
        return None
    parts = "; ".join(f"{path} has {have / 1024:.1f} MB free, needs {want / 1024:.1f} MB"
                      for path, have, want in short)
    return f"{host}: not enough disk space: {parts}; nothing was changed (free some space and run again)"


def paths(prefix: str) -> str:
    """The probe's $SPACE_PATHS argument."""
    return "\n".join([posixpath.normpath(prefix), *CONFIG_DIRS])
