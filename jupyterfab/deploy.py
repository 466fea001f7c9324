"""Deploying the Jupyter stack to hosts: the checklist behind ``fab deploy``.

    deploy_hosts(hosts, options)          # several hosts in parallel
      deploy_host(host, options)          # one host, over one SSH connection:
        probe the host (one round trip)   #   OS, Python, init system, deployed hash
        derive the variables              #   paths, URL, requirements, password hash
        ensure the wheelhouse             #   offline hosts: wheels built on the controller
        Cloudflare, before the states     #   token, origin certificate, IP ranges (edge.py)
        load and check the states         #   nothing reaches the host if a template breaks
        apply them                        #   facts in one batch; changes only where needed
        Cloudflare, after the states      #   zone settings, then the DNS record
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import (
    cloudflare,
    edge,
    engine,
    envbundle,
    envlayout,
    fleet,
    initsys,
    passwords,
    provider,
    schema,
    sls,
    wheelhouse,
)
from .errors import HostError, JupyterfabError
from .facts import Fact
from .fleet import FleetResult, HostResult
from .inventory import Host
from .result import Result
from .runner import HostUnreachable, Runner, open_runner
from .shell import Secret, cmd

PROJECT = Path(__file__).resolve().parent.parent
CONFIG_DIR = "/etc/jupyterfab"
CONFIG_FILE = f"{CONFIG_DIR}/jupyter_server_config.py"
# One empty file per notebook user jupyterfab created: only those may it change.
USER_MARKERS = "/var/lib/jupyterfab/notebook-users"
# Debian's python3 by release, for hosts where python3 is not installed yet.
DEBIAN_PYTHON = {"11": "3.9", "12": "3.11", "13": "3.13"}
# Ubuntu's, likewise: apt would install these (14.04 is the Upstart release).
UBUNTU_PYTHON = {"14.04": "3.4", "16.04": "3.5", "18.04": "3.6", "20.04": "3.8",
                 "22.04": "3.10", "24.04": "3.12"}
# JupyterLab 4 (and the Jupyter Server it needs) requires this Python or later.
MIN_PYTHON = (3, 9)


@dataclass(frozen=True)
class HostInfo(Fact):
    """What the deploy must know before rendering anything, in one round trip."""

    config_file: str = CONFIG_FILE
    env_dir: str = ""                   # the live environment: was it made by `fab upgrade`?
    tls_files: tuple[str, str] = ()     # the installed certificate and key, to keep or renew
    notebook_user: str = ""             # does it exist; did jupyterfab create it?

    SCRIPT = r"""
. /etc/os-release 2>/dev/null; echo "os=${ID:-unknown} ${VERSION_ID:-}"
echo "machine=$(uname -m)"
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)"
INIT
p=$(readlink -f "$(command -v python3)" 2>/dev/null) && echo "python=${p##*/python}"
# the addresses this host reaches the internet from (for Cloudflare's DNS records)
ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/ipv4=\1/p'
ip -6 -o route get 2606:4700:4700::1111 2>/dev/null | sed -n 's/.* src \([0-9a-f:]*\).*/ipv6=\1/p' 
sed -n 's/^c\.PasswordIdentityProvider\.hashed_password = "\(argon2:[^"]*\)"$/hashed_password=\1/p' "$1" 2>/dev/null
if [ -n "$2" ] && [ -f "$2/PIN" ]; then
    echo "upgraded_to=$(cat "$2/PIN")"
    for d in "$2"/lib/python3*/site-packages/jupyterlab-*.dist-info; do
        [ -d "$d" ] && { v="${d##*/jupyterlab-}"; echo "jupyterlab_installed=${v%.dist-info}"; }; done
fi
if [ -n "$5" ] && u=$(getent passwd "$5"); then
    echo "notebook_user=$u"; echo "notebook_user_groups=$(id -Gn "$5" 2>/dev/null)"
    # made by jupyterfab: its marker, or (deployed before the marker) the config it owns
    if [ -e "MARKERS/$5" ] || [ "$(stat -c %U "$1" 2>/dev/null)" = "$5" ]; then
        echo "notebook_user_ours=yes"; fi
fi
if [ -n "$3" ]; then echo "%%certificate%%"; cat "$3" 2>/dev/null; echo "%%jupyterfab%%"; cat "$4" 2>/dev/null; fi
true
""".replace("PIN", envlayout.UPGRADE_PIN).replace("INIT\n", initsys.DETECT).replace("MARKERS", USER_MARKERS)

    def command(self):
        certificate, key = self.tls_files or ("", "")
        return cmd("sh", "-c", self.SCRIPT, "sh", self.config_file, self.env_dir, certificate, key,
                   self.notebook_user)

    def parse(self, stdout: str, rc: int) -> dict[str, Any]:
        info: dict[str, Any] = {}
        stdout, _, certificate_files = stdout.partition("%%certificate%%\n")
        found = initsys.parse(stdout)
        for line in stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                info[key.strip()] = value.strip()
        os_id, _, version = info.get("os", "unknown").partition(" ")
        glibc = tuple(int(x) for x in info.get("glibc", "2.17").split(".")[:2] if x.isdigit())
        return {
            "os_id": os_id, "os_version": version,
            "machine": info.get("machine", "x86_64"),
            "glibc": glibc if len(glibc) == 2 else (2, 17),
            "init": found.init or "none",
            "pid1": found.pid1,
            "python": info.get("python") or (UBUNTU_PYTHON if os_id == "ubuntu"
                                             else DEBIAN_PYTHON).get(version, ""),
            "hashed_password": info.get("hashed_password", ""),
            "ipv4": info.get("ipv4", ""),
            "ipv6": _global_ipv6(info.get("ipv6", "")),
            "upgraded_to": info.get("upgraded_to") or None,
            "jupyterlab_installed": info.get("jupyterlab_installed") or None,
            "installed_certificate": edge.parse_current_certificate(certificate_files),
            "notebook_user": _account(info),
        }


def _account(info: dict[str, str]) -> dict[str, Any] | None:
    """The notebook user's passwd entry and groups as the probe printed them; None if absent."""
    fields = info.get("notebook_user", "").split(":")
    if len(fields) < 7:
        return None
    return {"name": fields[0], "uid": int(fields[2]) if fields[2].isdigit() else -1,
            "home": fields[5], "groups": info.get("notebook_user_groups", "").split(),
            "ours": info.get("notebook_user_ours") == "yes"}


def check_notebook_user(host: Host, info: dict[str, Any]) -> None:
    """Refuse, before anything changes, a notebook user jupyterfab must not take over:
    root, an administrator, or any account that was there before jupyterfab."""
    account = info.get("notebook_user")
    if account is None:
        return                       # the deploy creates it
    name = account["name"]
    key = f"{host.origins.get('jupyter_user') or 'jupyter_user'}"
    if account["uid"] == 0:
        raise DeployError(f"{key}: {name!r} has uid 0 (root's powers): the "
                          "notebook user must be unprivileged; jupyterfab changed nothing")
    admin = sorted(set(account["groups"]) & set(schema.ADMIN_GROUPS))
    if admin:
        raise DeployError(f"{key}: {name!r} is in the group {', '.join(admin)} "
                          "(administrator powers): the notebook user must be unprivileged; "
                          "jupyterfab changed nothing")
    if not account["ours"]:
        raise DeployError(f"{key}: the account {name!r} (uid {account['uid']}) "
                          "exists and jupyterfab did not create it: jupyterfab would change "
                          "its home, shell and files; name a new account (jupyterfab creates "
                          "it), or remove this one; jupyterfab changed nothing")


def _global_ipv6(text: str) -> str:
    """Only an address the internet can reach belongs in an AAAA record."""
    import ipaddress
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return ""
    return text if address.is_global else ""


@dataclass
class Options:
    test: bool = False                      # dry-run: predict, change nothing
    password: Secret | None = None
    states_dir: Path = PROJECT / "states"
    files_dir: Path = PROJECT / "files"
    log: Callable[[str], None] = print
    progress: bool = True                   # a line per changed state, as it happens
    cloudflare_token_file: str | None = None

    def __post_init__(self):
        self.hashes = passwords.HashChooser(self.password)
        self.edge = edge.EdgeSession(dry_run=self.test, token_file=self.cloudflare_token_file)


_wheelhouse_lock = threading.Lock()


def derive_vars(host: Host, info: dict[str, Any],
                password: Secret | passwords.HashChooser | None,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """The template variables: the host's, plus what follows from them and the probe."""
    v = dict(host.vars)
    v["jupyter_home"] = schema.home_of(v["jupyter_user"])
    v["notebook_user_marker"] = f"{USER_MARKERS}/{v['jupyter_user']}"
    v["env_dir"] = provider.env_dir(v)
    if v["env_provider"] == "conda":
        v.update(provider.conda_vars(v, info["python"]))
    v["wheelhouse_dir"] = f"{v['prefix'].rstrip('/')}/wheelhouse"
    v["config_dir"] = CONFIG_DIR
    v["config_file"] = CONFIG_FILE
    v.update(edge.template_vars(edge.plan_for(host.name, v)))
    scheme = "https" if v["tls_enabled"] else "http"
    v["public_url"] = v["public_url"] or f"{scheme}://{v['server_name']}"
    # An environment from `fab upgrade` that the spec admits is kept as it is.
    v["jupyterlab_version"], note = envlayout.spec_for_deploy(
        v["jupyterlab_version"], info.get("upgraded_to"), info.get("jupyterlab_installed"))
    if note:
        log(f"{host.name}: {note}")
    v["requirements"] = [f"jupyterlab{v['jupyterlab_version']}",
                         f"jupyter-server{v['jupyter_server_version']}",
                         "ipykernel", *v["python_packages"]]
    chooser = password if isinstance(password, passwords.HashChooser) else passwords.HashChooser(password)
    v["hashed_password"] = chooser(info["hashed_password"] or None)
    v["wheelhouse_local"] = ""
    if v["wheelhouse"] == "build":
        if not info["python"]:
            raise DeployError(f"cannot tell which Python {host.name} will have "
                              f"({info['os_id']} {info['os_version']}): set wheelhouse to a folder")
        with _wheelhouse_lock:
            wanted = v["requirements"] + (["uv"] if v["pip_installer"] == "uv" else [])
            v["wheelhouse_local"] = str(wheelhouse.ensure(
                wanted, python=info["python"], machine=info["machine"],
                glibc=info["glibc"], log=log))
    elif v["wheelhouse"]:
        path = Path(v["wheelhouse"]).expanduser()
        if not path.is_dir():
            raise DeployError(f"wheelhouse {path} is not a folder on this machine")
        v["wheelhouse_local"] = str(path.resolve())
    v["env_bundle"] = ""
    if v["wheelhouse_local"] and v["build_env_here"] and v["env_provider"] == "venv" \
            and envbundle.can_build_for(info["python"], info["machine"]):
        with _wheelhouse_lock:
            try:
                v["env_bundle"] = str(envbundle.ensure(v["requirements"], Path(v["wheelhouse_local"]), log=log))
            except envbundle.BundleError as exc:
                log(f"{host.name}: building the environment here failed, the host builds it: {exc}")
    return v


class DeployError(HostError):
    pass


def python_version(text: str) -> tuple[int, ...] | None:
    """``3.4`` or ``3.11.2`` -> (3, 4) / (3, 11); None when unreadable (pure)."""
    parts = text.split(".")[:2]
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def check_supported(host: Host, info: dict[str, Any]) -> None:
    """Refuse, before anything is sent, a host jupyterfab cannot run Jupyter on."""
    if info["init"] not in initsys.ADAPTERS:
        raise DeployError(initsys.refusal(host.name, info["pid1"]))
    if info["os_id"] not in ("debian", "ubuntu"):
        raise DeployError(f"{host.name} runs {info['os_id']}: jupyterfab supports Debian and Ubuntu")
    found = python_version(info.get("python") or "")
    if found is not None and found < MIN_PYTHON and host.vars.get("env_provider", "venv") != "conda":
        need = ".".join(map(str, MIN_PYTHON))
        raise DeployError(
            f"{host.name} has Python {info['python']} as python3 ({info['os_id']} "
            f"{info['os_version']}); JupyterLab 4 needs Python {need} or later, so jupyterfab "
            f"changed nothing on this host: install Python {need} or later as the host's "
            "python3 (e.g. built from source into /usr/local, which sudo's PATH searches "
            "first), or set env_provider: conda for this host (conda brings its own Python)")


def deploy_host(host: Host, options: Options, runner: Runner | None = None) -> HostResult:
    report = HostResult(host.name)
    started = time.monotonic()
    own_runner = runner is None
    try:
        plan = edge.plan_for(host.name, host.vars)
        runner = runner or open_runner(host)
        probe = HostInfo(env_dir=envlayout.live_path(host.vars["prefix"]),
                         tls_files=(plan.certificate_path, plan.key_path) if plan.tls == "origin-ca" else (),
                         notebook_user=host.vars["jupyter_user"])
        r = runner.run(probe.command(), timeout=60)
        info = probe.parse(r.stdout, r.rc)
        check_supported(host, info)
        check_notebook_user(host, info)
        variables = derive_vars(host, info, options.hashes, options.log)
        if plan.zone:
            addresses = edge.public_addresses(host.address, variables, info)
        report.results += edge.timed(lambda: options.edge.before_states(
            plan, variables, lambda: info["installed_certificate"]))
        def progress(r: Result) -> None:
            mark = "FAILED" if r.ok is False else "would change" if r.ok is None else "changed"
            options.log(f"{host.name}: {r.state_id} ({r.function}) {mark} in {r.duration:.1f} s")

        ctx = engine.Context(host=host.name, vars=variables, groups=tuple(host.groups), init=info["init"],
                             files_dir=options.files_dir, apt_proxy=variables["apt_proxy"] or None,
                             progress=progress if options.progress else None)
        decls = sls.load_states(options.states_dir, ctx)
        report.results += engine.apply(decls, runner, test=options.test, context=ctx)
        if plan.zone:
            if report.ok:
                report.results += edge.timed(lambda: options.edge.after_states(plan, *addresses))
            else:
                report.fail("Cloudflare left as it was (zone settings, DNS record): "
                            "the host's states failed")
    except HostUnreachable as exc:
        report.fail(f"unreachable: {exc}")
    except JupyterfabError as exc:
        report.fail(str(exc))
    finally:
        if own_runner and runner is not None:
            runner.close()
        report.seconds = time.monotonic() - started
    return report


def check_plans(hosts: list[Host]) -> list[edge.EdgePlan]:
    """Every host's Cloudflare and TLS variables, checked before connecting anywhere."""
    return [edge.plan_for(h.name, h.vars) for h in hosts]


def preflight(hosts: list[Host], token_file: str | None = None) -> None:
    """What can be checked before connecting anywhere: every host's Cloudflare and
    TLS variables, and that a Cloudflare token is at hand when one is needed."""
    if any(p.zone for p in check_plans(hosts)):
        cloudflare.load_token(token_file)


def deploy_hosts(hosts: list[Host], options: Options, max_parallel: int = 8) -> FleetResult:
    """Every host in parallel (bounded); one failing host does not stop the others."""
    plans = []
    for host in hosts:
        try:
            plans.append(edge.plan_for(host.name, host.vars))
        except edge.EdgeConfigError:
            pass   # that host reports it
    options.edge.prefetch(plans)
    try:
        return fleet.run(hosts, lambda h: deploy_host(h, options), max_parallel)
    finally:
        options.edge.close()


def cloudflare_host(host: Host, session: edge.EdgeSession) -> HostResult:
    """``fab cloudflare``: the zone's settings and the host's DNS record, nothing on the host.
    The host is contacted only when its public address must be detected."""
    report = HostResult(host.name)
    try:
        v = host.vars
        plan = edge.plan_for(host.name, v)
        info: dict[str, Any] = {}
        if not v["public_ipv4"] or not v["public_ipv6"]:
            runner = open_runner(host)
            try:
                probe = HostInfo()
                info = probe.parse(runner.run(probe.command(), timeout=60).stdout, 0)
            finally:
                runner.close()
        report.results += edge.timed(lambda: session.after_states(
            plan, *edge.public_addresses(host.address, v, info)))
    except HostUnreachable as exc:
        report.fail(f"unreachable (needed to detect its address; or set public_ipv4): {exc}")
    return report


def cloudflare_hosts(hosts: list[Host], *, dry_run: bool, token_file: str | None) -> FleetResult:
    session = edge.EdgeSession(dry_run=dry_run, token_file=token_file)
    try:
        return fleet.run(hosts, lambda h: cloudflare_host(h, session))
    finally:
        session.close()
