"""Where the Python environments live on a host, and how the live one is switched.

    {prefix}/venv            -> envs/<id>   the live environment (a relative symlink)
    {prefix}/venv.previous   -> envs/<id>   the one before it, kept for a rollback
    {prefix}/envs/<id>/                     complete environments; nothing else is kept

``{prefix}/venv`` stays the path everything uses (the unit's ExecStart, ``fab
status``, the deploy's states): only what it points at changes. A new environment
is built beside the live one under ``envs/`` and switched in by renaming a fresh
symlink over ``venv`` (``mv -T``, one rename(2)): at every instant ``venv`` is the
complete old environment or the complete new one, never half of either. An
environment never moves after it is built, so scripts with absolute shebangs
(pip's) keep working; controller-built ones are relocatable anyway.

Hosts deployed before this layout have a real directory at ``venv``: the first
switch moves it to ``envs/migrated-<time>`` (a rename, same filesystem) and puts
the symlink in its place, so it becomes the rollback environment like any other.
"""

from __future__ import annotations

import posixpath

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

ENVS = "envs"
# Written into an environment by `fab upgrade`: the JupyterLab pin it was built
# with, so a later deploy can tell an upgraded environment from its own.
UPGRADE_PIN = ".jupyterfab-upgrade"

def live_path(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/venv"


def envs_dir(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/{ENVS}"


def env_path(prefix: str, env_id: str) -> str:
    return posixpath.join(envs_dir(prefix), env_id)


# Shared by the scripts below; $live is the live path, envs/ sits beside it.
_PRELUDE = r"""
set -e
live="$1"; base="${live%/*}"; envs="$base/envs"; prev="$live.previous"
mkdir -p "$envs"
"""

# $1 live path, $2 environment id under envs/. Makes envs/$2 the live environment
# and the one it replaces the previous one. Prints old=<what venv pointed at>.
SWITCH = _PRELUDE + r"""
id="$2"
[ -d "$envs/$id" ] || { echo "no environment $envs/$id" >&2; exit 1; }
if [ -d "$live" ] && [ ! -L "$live" ]; then
    # From before the envs/ layout: it becomes an environment like the others.
    migrated="migrated-$(date -u +%Y%m%dT%H%M%S)"
    mv -T "$live" "$envs/$migrated"
    ln -sfn "envs/$migrated" "$live"
fi
old="$(readlink "$live" 2>/dev/null || true)"
if [ "$old" != "envs/$id" ]; then
    ln -sfn "envs/$id" "$live.swap"
    mv -T "$live.swap" "$live"
    if [ -n "$old" ]; then
        ln -sfn "$old" "$prev.swap"
        mv -T "$prev.swap" "$prev"
    fi
fi
echo "old=$old"
"""

# $1 live path, $2 what venv pointed at before (envs/X), $3 what venv.previous
# pointed at before ("" for none), $4 the failed environment's id (removed).
ROLLBACK = _PRELUDE + r"""
ln -sfn "$2" "$live.swap"
mv -T "$live.swap" "$live"
if [ -n "$3" ]; then ln -sfn "$3" "$prev.swap"; mv -T "$prev.swap" "$prev"; else rm -f "$prev"; fi
case "$4" in ""|.|..|*/*) ;; *)
    if [ "envs/$4" != "$2" ] && [ "envs/$4" != "$3" ]; then rm -rf "$envs/$4"; fi ;;
esac
"""

# $1 live path. Removes every environment that is neither live nor previous
# (and half-built ones), so a host keeps two.
PRUNE = _PRELUDE + r"""
keep1="$(readlink "$live" 2>/dev/null || true)"; keep2="$(readlink "$prev" 2>/dev/null || true)"
for d in "$envs"/* "$envs"/.[!.]*; do
    [ -e "$d" ] || continue
    rel="envs/${d##*/}"
    if [ "$rel" != "$keep1" ] && [ "$rel" != "$keep2" ]; then rm -rf "$d"; echo "pruned=$rel"; fi
done
"""

# $1 live path, $2 environment id, $3 python, $4 marker file name, $5 marker
# content; the bundle tarball on stdin. Builds envs/$2 beside everything else
# (in a hidden directory, renamed into place once complete). Never touches the
# live environment.
UNPACK = _PRELUDE + r"""
id="$2"; dest="$envs/$id"; tmp="$envs/.$id.partial"
[ "$(readlink "$live" 2>/dev/null || true)" != "envs/$id" ] || { echo "envs/$id is live" >&2; exit 1; }
rm -rf "$tmp"
"$3" -m venv --without-pip "$tmp"
tar -xz -C "$tmp" --no-same-owner
# only root writes the server's environment (uv leaves a world-writable .lock)
chmod -R go-w "$tmp"
printf '%s\n' "$5" > "$tmp/$4"
rm -rf "$dest"
mv -T "$tmp" "$dest"
"""


def admits(spec: str, version: str) -> bool:
    """The pip version specifier ``spec`` admits ``version`` (pre-releases too); False
    when either cannot be read (pure)."""
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def spec_for_deploy(inventory_spec: str, upgraded_to: str | None, installed: str | None
                    ) -> tuple[str, str | None]:
    """The jupyterlab version spec a deploy should install, and what to tell the user (pure).

    ``upgraded_to`` is the version `fab upgrade` pinned in the live environment,
    ``installed`` the version actually there. An upgraded environment that the
    inventory's spec admits is the deploy's own: the deploy asks for exactly that
    version, so it finds its environment current and changes nothing. One the spec
    excludes is replaced (hosts.yaml is the source of truth), and the deploy says so.
    """
    if not upgraded_to or upgraded_to != installed:
        return inventory_spec, None      # not an upgraded environment (or changed since)
    if admits(inventory_spec, upgraded_to):
        return f"=={upgraded_to}", (f"keeping JupyterLab {upgraded_to} from `fab upgrade` "
                                    f"(jupyterlab_version {inventory_spec!r} admits it)")
    return inventory_spec, (f"JupyterLab {upgraded_to} (from `fab upgrade`) is outside "
                            f"jupyterlab_version {inventory_spec!r}: this deploy replaces it; "
                            f"set jupyterlab_version: '=={upgraded_to}' in the inventory to keep it")
