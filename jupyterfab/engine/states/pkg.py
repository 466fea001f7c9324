"""pkg.installed: Debian packages through apt-get."""

from __future__ import annotations

from typing import Any

from jupyterfab.engine.facts.packages import AptListsStale, DebPackages
from jupyterfab.engine.shell import Command, cmd
from jupyterfab.engine.states.base import (
    Arg,
    ArgError,
    Call,
    Context,
    Probe,
    Run,
    boolean,
    package_name,
    package_version,
    state,
)

# apt-get says one of these when its package lists predate a package it is asked for
_STALE_LIST_ERRORS = ("Unable to locate package", "has no installation candidate")


def _pkgs(value: Any) -> tuple[tuple[str, str | None], ...]:
    """Salt's ``pkgs``: names, or ``name: version`` one-key mappings."""
    if not isinstance(value, list):
        raise ArgError("expected a list of package names")
    out = []
    for item in value:
        if isinstance(item, dict) and len(item) == 1:
            (name, version), = item.items()
            out.append((package_name(name), package_version(str(version))))
        else:
            out.append((package_name(item), None))
    return tuple(out)


def wanted(name: str, args: dict) -> tuple[tuple[str, str | None], ...]:
    return args["pkgs"] or ((name, args["version"]),)


def _facts(name: str, args: dict, ctx: Context) -> dict:
    names = tuple(n for n, _ in wanted(name, args))
    return {"installed": DebPackages(names), "lists_stale": AptListsStale()}


def apt_get(ctx: Context, *args: str) -> Command:
    proxy = ["-o", f"Acquire::http::Proxy={ctx.apt_proxy}"] if ctx.apt_proxy else []
    return cmd("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", *proxy, *args)


def apt_install(ctx: Context, specs: list[str]) -> Command:
    # confold: never let a package's new default config replace one we manage
    return apt_get(ctx, "-o", "Dpkg::Options::=--force-confold", "install", "-y",
                   "--no-install-recommends", *specs)


def _check(name: str, args: dict) -> None:
    if args["pkgs"] and args["version"]:
        raise ArgError("version: use `- name: version` items in pkgs instead")
    if not args["pkgs"]:
        try:
            package_name(name)
        except ArgError as exc:
            raise ArgError(f"name: {exc} (use `pkgs:` to list packages)") from None


@state("pkg.installed", facts=_facts, check=_check, args={
    "pkgs": Arg(_pkgs),
    "version": Arg(package_version),
    "refresh": Arg(boolean, default=False),
})
def installed(call: Call):
    """Debian packages installed (with apt), in one apt call for all missing ones.

    name
        A package, when ``pkgs`` is not given.
    pkgs
        Packages, each a name or ``name: version``.
    version
        The version ``name`` must have.
    refresh
        Update apt's package lists first (also done whenever they are older than the sources).
    """
    installed_now: dict = call.facts["installed"]
    missing = [(n, v) for n, v in wanted(call.name, call.args)
               if installed_now.get(n) is None or (v is not None and installed_now[n] != v)]
    if not missing:
        names = [n for n, _ in wanted(call.name, call.args)]
        return call.done(f"{names[0]} is installed" if len(names) == 1
                         else f"all {len(names)} packages are installed")
    specs = [f"{n}={v}" if v else n for n, v in missing]
    update_first = call.args["refresh"] or call.facts["lists_stale"]
    if call.test:
        return call.would(f"would install {' '.join(specs)}"
                          + (" (after apt-get update)" if update_first else ""),
                          {n: {"old": installed_now.get(n) or "", "new": v or "latest"}
                           for n, v in missing})
    install = apt_install(call.ctx, specs)
    if update_first:
        yield Run(apt_get(call.ctx, "update"))
    result = yield Run(install, check=False)
    if not result.ok and not update_first and any(e in result.stderr for e in _STALE_LIST_ERRORS):
        yield Run(apt_get(call.ctx, "update"))
        result = yield Run(install, check=False)
    if not result.ok:
        return call.command_failed(install, result)
    now = yield Probe(DebPackages(tuple(n for n, _ in missing)))
    call.changes.update({n: {"old": installed_now.get(n) or "", "new": now.get(n) or ""}
                         for n, _ in missing})
    still_missing = [n for n, _ in missing if not now.get(n)]
    if still_missing:
        return call.fail(f"apt-get succeeded but {', '.join(still_missing)} is not installed",
                         stderr=result.stderr.strip())
    return call.done(f"installed {' '.join(specs)}")

