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

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import (
    cloudflare,
    confinement,
    diskspace,
    edge,
    engine,
    envbundle,
    envlayout,
    fleet,
    hostlock,
    initsys,
    kernelenv,
    login,
    passwords,
    provider,
    schema,
    serverext,
    sls,
    wheelhouse,
)
from .errors import HostError, JupyterfabError
from .facts.host import CONFIG_DIR, CONFIG_FILE, USER_MARKERS, HostInfo
from .fleet import FleetResult, HostResult
from .inventory import Host
from .result import Result
from .runner import CmdResult, HostUnreachable, Runner, open_runner
from .shell import Secret

PROJECT = Path(__file__).resolve().parent.parent
# JupyterLab 4 (and the Jupyter Server it needs) requires this Python or later.
MIN_PYTHON = (3, 9)


def check_notebook_user(host: Host, info: dict[str, Any]) -> None:
    """Refuse, before anything changes, a notebook user jupyterfab must not take over:
    root, an administrator, or any account that was there before jupyterfab."""
    account = info.get("notebook_user")
    if account is None:
        return                       # the deploy creates it
    name = account["name"]
    key = host.origins.get("jupyter_user") or "jupyter_user"
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


@dataclass
class Options:
    test: bool = False                      # dry-run: predict, change nothing
    password: Secret | None = None
    states_dir: Path = PROJECT / "states"
    files_dir: Path = PROJECT / "files"
    log: Callable[[str], None] = print
    progress: bool = True                   # a line per changed state, as it happens
    cloudflare_token_file: str | None = None
    acme_dns_token_file: str | None = None  # DNS-01: the token the host keeps for renewals
    # Only these state IDs, their requisites taken as met, and no Cloudflare steps
    # (fab kernel-env --reset rebuilds one environment this way); empty: everything.
    only: tuple[str, ...] = ()
    lock: bool = True                       # take the host lock (False: the caller holds it)

    def __post_init__(self):
        self.hashes = passwords.HashChooser(self.password, dry_run=self.test)
        self.edge = edge.EdgeSession(dry_run=self.test, token_file=self.cloudflare_token_file,
                                     acme_dns_token_file=self.acme_dns_token_file)


_wheelhouse_lock = threading.Lock()


@dataclass(frozen=True)
class HostPlan:
    """What follows purely from a host's variables and its probe (no side effect, no
    connection): the paths, the public URL, the edge plan and the requirements, as the
    templates' variables. The deploy adds the side effects' values (``materials``);
    ``upgrade`` and ``invoke verify`` use the plan as it is."""

    host: Host
    edge: edge.EdgePlan
    vars: dict[str, Any]
    note: str = ""              # why the JupyterLab spec differs from the inventory's, if it does


def plan_host(host: Host, info: dict[str, Any] | None = None, edge_plan: edge.EdgePlan | None = None
              ) -> HostPlan:
    """The host's plan; ``info`` (the probe's) adds what depends on the host as found:
    conda's Python pin, and a JupyterLab from `fab upgrade` that the spec admits."""
    info = info or {}
    v = dict(host.vars)
    v["jupyter_home"] = kernelenv.home_dir(v["jupyter_user"])
    v["notebook_user_marker"] = f"{USER_MARKERS}/{v['jupyter_user']}"
    # Jupyter's default place for it, named in the config for fab rotate-password.
    v["cookie_secret_file"] = f"{v['jupyter_home']}/.local/share/jupyter/runtime/jupyter_cookie_secret"
    v["env_dir"] = provider.env_dir(v)
    if v["env_provider"] == "conda":
        v.update(provider.conda_vars(v, info.get("python", "")))
    v["wheelhouse_dir"] = f"{v['prefix'].rstrip('/')}/wheelhouse"
    v["config_dir"] = CONFIG_DIR
    v["config_file"] = CONFIG_FILE
    edge_plan = edge_plan or edge.plan_for(host.name, v)
    v.update(edge.template_vars(edge_plan))
    v["public_url"] = edge.public_url(v, edge_plan)
    # An environment from `fab upgrade` that the spec admits is kept as it is.
    v["jupyterlab_version"], note = envlayout.spec_for_deploy(
        v["jupyterlab_version"], info.get("upgraded_to"), info.get("jupyterlab_installed"))
    # What the index (or the wheelhouse) provides, then jupyterfab's own server
    # extension, a wheel from this machine that the host finds in extensions_dir.
    v["index_requirements"] = [f"jupyterlab{v['jupyterlab_version']}",
                               f"jupyter-server{v['jupyter_server_version']}",
                               "ipykernel", *(["jupyter-resource-usage"] if v["resource_usage"] else []),
                               *v["server_packages"]]
    v["extensions_dir"] = f"{v['prefix'].rstrip('/')}/extensions"
    v["requirements"] = [*v["index_requirements"],
                         serverext.requirement(serverext.wheel_name(), v["extensions_dir"])]
    # The notebook user's own environment (python_packages seed it), and the limits.
    v.update(kernelenv.template_vars(v))
    v.update(confinement.template_vars(v))
    v.update(login.template_vars(v))
    return HostPlan(host, edge_plan, v, note or "")


def build_wheelhouse(plan: HostPlan, info: dict[str, Any], log: Callable[[str], None]) -> str:
    """The wheelhouse the host installs from, on this machine ("" for none): built for
    the host's Python and platform, or the inventory's folder."""
    v = plan.vars
    if v["wheelhouse"] == "build":
        if not info["python"]:
            raise DeployError(f"cannot tell which Python {plan.host.name} will have "
                              f"({info['os_id']} {info['os_version']}): set wheelhouse to a folder")
        with _wheelhouse_lock:
            wanted = (v["index_requirements"] + v["kernel_requirements"]
                      + (["uv"] if v["pip_installer"] == "uv" else []))
            return str(wheelhouse.ensure(wanted, python=info["python"], machine=info["machine"],
                                         glibc=info["glibc"], log=log))
    if v["wheelhouse"]:
        path = Path(v["wheelhouse"]).expanduser()
        if not path.is_dir():
            raise DeployError(f"wheelhouse {path} is not a folder on this machine")
        return str(path.resolve())
    return ""


def _bundles_here(plan: HostPlan, info: dict[str, Any], wheels: str) -> bool:
    v = plan.vars
    return bool(wheels and v["build_env_here"] and v["env_provider"] == "venv"
                and envbundle.can_build_for(info["python"], info["machine"]))


def build_bundle(plan: HostPlan, info: dict[str, Any], wheels: str, log: Callable[[str], None]) -> str:
    """The environment built here and packed for the host ("" when the host builds it)."""
    if not _bundles_here(plan, info, wheels):
        return ""
    with _wheelhouse_lock:
        try:
            extension = serverext.wheel()
            return str(envbundle.ensure(
                [*plan.vars["index_requirements"],
                 serverext.requirement(extension.name, str(extension.parent))],
                Path(wheels), log=log))
        except envbundle.BundleError as exc:
            log(f"{plan.host.name}: building the environment here failed, the host builds it: {exc}")
            return ""


def build_kernel_bundle(plan: HostPlan, info: dict[str, Any], wheels: str,
                        log: Callable[[str], None]) -> str:
    """The notebook user's kernel environment as first made, built here and packed for
    the host ("" when the host installs it, or has one: a bundle only ever makes one)."""
    v = plan.vars
    if (info.get("notebook_user") or {}).get("kernel_env"):
        return ""
    if not (v["kernel_env"] and _bundles_here(plan, info, wheels)):
        return ""
    with _wheelhouse_lock:
        try:
            return str(envbundle.ensure(v["kernel_requirements"], Path(wheels), log=log,
                                        with_uv=v["pip_installer"] == "uv"))
        except envbundle.BundleError as exc:
            log(f"{plan.host.name}: building the kernel environment here failed, the host "
                f"installs it: {exc}")
            return ""


def materials(plan: HostPlan, info: dict[str, Any], hashes: passwords.HashChooser,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """The deploy's variables: the plan's, plus what its side effects return (the
    password hash, the wheelhouse, the bundle)."""
    if plan.note:
        log(f"{plan.host.name}: {plan.note}")
    wheels = build_wheelhouse(plan, info, log)
    hashed = hashes(info["hashed_password"] or None)
    if hashed == passwords.DRY_RUN_HASH:
        log(f"{plan.host.name}: no Jupyter password yet: the deploy will write its hash into "
            f"{CONFIG_FILE} (give it with --password-file, ${passwords.ENV_VAR} or at the prompt)")
    return {**plan.vars, "hashed_password": hashed,
            "wheelhouse_local": wheels, "env_bundle": build_bundle(plan, info, wheels, log),
            "kernel_bundle": build_kernel_bundle(plan, info, wheels, log),
            "extensions_local": build_extensions()}


def build_extensions() -> str:
    """The folder on this machine with jupyterfab's server extension wheel (uploaded to
    the host's extensions_dir when the host installs the environment itself)."""
    return str(serverext.wheel().parent)


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


def deploy_host(host: Host, options: Options, runner: Runner | None = None,
                edge_plan: edge.EdgePlan | None = None) -> HostResult:
    """One host; ``edge_plan``: its plan as ``check_plans`` worked it out (else worked out here)."""
    report = HostResult(host.name)
    started = time.monotonic()
    own_runner = runner is None
    try:
        plan = edge_plan or edge.plan_for(host.name, host.vars)
        runner = runner or open_runner(host)
        probe = first_look(host, plan)
        if options.lock and not options.test:
            # The probe runs under the lock, in the lock's own round trip: the deployed
            # password hash kept by a password-less deploy is read under the lock, so a
            # concurrent rotation is never undone.
            with hostlock.held(runner, "deploy", log=options.log, first=probe.command()) as looked:
                _deploy_locked(host, options, runner, plan, report, probe, looked)
        else:
            _deploy_locked(host, options, runner, plan, report, probe,
                           runner.run(probe.command(), timeout=60))
    except HostUnreachable as exc:
        report.fail(f"unreachable: {exc}")
    except JupyterfabError as exc:
        report.fail(str(exc))
    finally:
        if own_runner and runner is not None:
            runner.close()
        report.seconds = time.monotonic() - started
    return report


def first_look(host: Host, plan: edge.EdgePlan) -> HostInfo:
    """The probe a deploy starts with, for this host and its edge plan."""
    return HostInfo(env_dir=envlayout.live_path(host.vars["prefix"]), prefix=host.vars["prefix"],
                    tls_files=(plan.certificate_path, plan.key_path) if plan.tls == "origin-ca" else (),
                    acme_certificate=plan.certificate_path if plan.tls == "acme" else "",
                    notebook_user=host.vars["jupyter_user"],
                    addresses=bool(plan.zone))


def _deploy_locked(host: Host, options: Options, runner: Runner, plan: edge.EdgePlan,
                   report: HostResult, probe: HostInfo, looked: CmdResult) -> None:
    """The deploy proper, from the probe's answer on (under the host lock unless a dry run)."""
    info = probe.parse(looked.stdout, looked.rc)
    check_supported(host, info)
    check_notebook_user(host, info)
    variables = materials(plan_host(host, info, plan), info, options.hashes, options.log)
    refused = diskspace.shortfall(host.name, info["free_kb"], diskspace.needs(
        variables["prefix"], variables["env_bundle"], info["env_ids"]))
    if refused:
        raise DeployError(refused)
    variables["tls_live"] = variables["tls_live"] or info["acme_live"]
    if plan.zone and not options.only:
        addresses = edge.public_addresses(host.address, variables, info)

    def progress(r: Result) -> None:
        options.log(progress_line(host.name, r))

    def steps(results: list[Result]) -> list[Result]:
        """The Cloudflare steps' results, with a progress line each as the states get."""
        for r in results:
            if options.progress and (r.changed or r.ok is not True):
                progress(r)
        return results

    if not options.only:    # the Cloudflare steps, and the TLS files NGINX's states need
        report.results += steps(edge.timed(lambda: options.edge.before_states(
            plan, variables, lambda: info["installed_certificate"])))
    # every step run as the notebook user runs inside the Jupyter unit's own confinement
    ctx = engine.Context(host=host.name, vars=variables, groups=tuple(host.groups), init=info["init"],
                         files_dir=options.files_dir, apt_proxy=variables["apt_proxy"] or None,
                         progress=progress if options.progress else None,
                         confinement=confinement.confinement(variables))
    decls = sls.load_states(options.states_dir, ctx)
    if options.only:
        decls = [dataclasses.replace(d, requisites=[]) for d in decls if d.id in options.only]
    report.results += engine.apply(decls, runner, test=options.test, context=ctx)
    if not variables["tls_live"] and report.ok and not options.test and not options.only:
        report.results += _tls_goes_live(variables, ctx, options, runner)
    if plan.zone and not options.only:
        if report.ok:
            report.results += steps(edge.timed(lambda: options.edge.after_states(plan, *addresses)))
        else:
            report.fail("Cloudflare left as it was (zone settings, DNS record): "
                        "the host's states failed")


def _tls_goes_live(variables: dict[str, Any], ctx: engine.Context, options: Options,
                   runner: Runner) -> list[Result]:
    """ACME's second pass: certbot has the certificate now (the first pass served only
    port 80 with the challenge), so the site is rendered again with its TLS server."""
    variables["tls_live"] = True
    decls = sls.load_states(options.states_dir, ctx)

    def live(r: Result) -> Result:
        if not (r.state_id or "").endswith(" (TLS live)"):
            r.state_id = f"{r.state_id or r.name} (TLS live)"
        return r

    second = engine.apply(decls, runner, test=False, context=dataclasses.replace(
        ctx, progress=ctx.progress and (lambda r: ctx.progress(live(r)))))
    return [live(r) for r in second if r.changed or r.ok is False]


def check_plans(hosts: list[Host]) -> dict[str, edge.EdgePlan]:
    """Every host's Cloudflare and TLS plan, checked before connecting anywhere: the
    one time a deploy works them out (``deploy_hosts`` and ``cloudflare_hosts`` take them)."""
    return {h.name: edge.plan_for(h.name, h.vars) for h in hosts}


def preflight(plans: dict[str, edge.EdgePlan], token_file: str | None = None,
              acme_dns_token_file: str | None = None) -> None:
    """What can be checked before connecting anywhere, past the hosts' plans: that a
    Cloudflare token is at hand when one is needed."""
    if any(p.zone for p in plans.values()):
        cloudflare.load_token(token_file)
    if acme_dns_token_file:
        cloudflare.load_token(acme_dns_token_file)


def deploy_hosts(hosts: list[Host], options: Options, plans: dict[str, edge.EdgePlan]) -> FleetResult:
    """Every host in parallel (as many at once as ``fleet_workers`` says), each with its
    plan from ``check_plans``; one failing host does not stop the others."""
    options.edge.prefetch(list(plans.values()))
    try:
        return fleet.run(hosts, lambda h: deploy_host(h, options, edge_plan=plans[h.name]))
    finally:
        options.edge.close()


def progress_line(host: str, r: Result) -> str:
    """The line a changed (or failed) state gets as it finishes: all a default run
    shows of it (``fab deploy -v`` adds the state in full)."""
    mark = "FAILED" if r.ok is False else "would change" if r.ok is None else "changed"
    said = (r.comment or "").strip().split("\n", 1)[0]
    said = said if len(said) <= 160 else said[:157] + "..."
    return f"{host}: {r.state_id} ({r.function}) {mark} in {r.duration:.1f} s" + (f": {said}" if said else "")


def cloudflare_host(host: Host, session: edge.EdgeSession, plan: edge.EdgePlan, log=None) -> HostResult:
    """``fab cloudflare``: the zone's settings and the host's DNS record, nothing on the host.
    The host is contacted only when its public address must be detected. ``log`` gets a
    progress line per change, as the deploy's."""
    report = HostResult(host.name)
    try:
        v = host.vars
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
        for r in report.results if log else ():
            if r.changed or r.ok is not True:
                log(progress_line(host.name, r))
    except HostUnreachable as exc:
        report.fail(f"unreachable (needed to detect its address; or set public_ipv4): {exc}")
    return report


def cloudflare_hosts(hosts: list[Host], plans: dict[str, edge.EdgePlan], *, dry_run: bool,
                     token_file: str | None, log=None) -> FleetResult:
    session = edge.EdgeSession(dry_run=dry_run, token_file=token_file)
    try:
        return fleet.run(hosts, lambda h: cloudflare_host(h, session, plans[h.name], log))
    finally:
        session.close()
