"""Deploying the Jupyter stack to hosts: the checklist behind ``fab deploy``.

    deploy_hosts(hosts, options)          # several hosts in parallel
      deploy_host(host, options)          # one host, over one SSH connection:
        probe the host (one round trip)   #   OS, Python, init system, deployed hash
        derive the variables              #   paths, URL, requirements, password hash
        ensure the wheelhouse             #   offline hosts: wheels built on the controller
        load and check the states         #   nothing reaches the host if a template breaks
        apply them                        #   facts in one batch; changes only where needed
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import engine, envbundle, envlayout, passwords, sls, wheelhouse
from .facts import Fact
from .inventory import Host
from .result import Result
from .runner import HostUnreachable, Runner, open_runner
from .shell import Secret, cmd

PROJECT = Path(__file__).resolve().parent.parent
CONFIG_DIR = "/etc/jupyterfab"
CONFIG_FILE = f"{CONFIG_DIR}/jupyter_server_config.py"
# Debian's python3 by release, for hosts where python3 is not installed yet.
DEBIAN_PYTHON = {"11": "3.9", "12": "3.11", "13": "3.13"}


@dataclass(frozen=True)
class HostInfo(Fact):
    """What the deploy must know before rendering anything, in one round trip."""

    config_file: str = CONFIG_FILE
    env_dir: str = ""                   # the live environment: was it made by `fab upgrade`?

    SCRIPT = r"""
. /etc/os-release 2>/dev/null; echo "os=${ID:-unknown} ${VERSION_ID:-}"
echo "machine=$(uname -m)"
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)"
if [ -d /run/systemd/system ]; then echo init=systemd
elif command -v initctl >/dev/null 2>&1 && initctl version 2>/dev/null | grep -q upstart; then echo init=upstart
else echo init=none; fi
p=$(readlink -f "$(command -v python3)" 2>/dev/null) && echo "python=${p##*/python}"
sed -n 's/^c\.PasswordIdentityProvider\.hashed_password = "\(argon2:[^"]*\)"$/hashed_password=\1/p' "$1" 2>/dev/null
if [ -n "$2" ] && [ -f "$2/PIN" ]; then
    echo "upgraded_to=$(cat "$2/PIN")"
    for d in "$2"/lib/python3*/site-packages/jupyterlab-*.dist-info; do
        [ -d "$d" ] && { v="${d##*/jupyterlab-}"; echo "jupyterlab_installed=${v%.dist-info}"; }; done
fi
true
""".replace("PIN", envlayout.UPGRADE_PIN)

    def command(self):
        return cmd("sh", "-c", self.SCRIPT, "sh", self.config_file, self.env_dir)

    def parse(self, stdout: str, rc: int) -> dict[str, Any]:
        info: dict[str, Any] = {}
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
            "init": info.get("init", "none"),
            "python": info.get("python") or DEBIAN_PYTHON.get(version, ""),
            "hashed_password": info.get("hashed_password", ""),
            "upgraded_to": info.get("upgraded_to") or None,
            "jupyterlab_installed": info.get("jupyterlab_installed") or None,
        }


@dataclass
class Options:
    test: bool = False                      # dry-run: predict, change nothing
    password: Secret | None = None
    states_dir: Path = PROJECT / "states"
    files_dir: Path = PROJECT / "files"
    log: Callable[[str], None] = print
    progress: bool = True                   # a line per changed state, as it happens

    def __post_init__(self):
        self.hashes = passwords.HashChooser(self.password)


@dataclass
class HostReport:
    host: str
    results: list[Result] = field(default_factory=list)
    error: str = ""                         # the host could not be deployed at all
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and all(r.ok is not False for r in self.results)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.changed)


_wheelhouse_lock = threading.Lock()


def derive_vars(host: Host, info: dict[str, Any],
                password: "Secret | passwords.HashChooser | None",
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """The template variables: the host's, plus what follows from them and the probe."""
    v = dict(host.vars)
    v["jupyter_home"] = f"/home/{v['jupyter_user']}"
    v["env_dir"] = f"{v['prefix'].rstrip('/')}/venv"
    v["wheelhouse_dir"] = f"{v['prefix'].rstrip('/')}/wheelhouse"
    v["config_dir"] = CONFIG_DIR
    v["config_file"] = CONFIG_FILE
    v["public_url"] = v["public_url"] or f"http://{v['server_name']}"
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
    if v["wheelhouse_local"] and v["build_env_here"] and envbundle.can_build_for(info["python"], info["machine"]):
        with _wheelhouse_lock:
            try:
                v["env_bundle"] = str(envbundle.ensure(v["requirements"], Path(v["wheelhouse_local"]), log=log))
            except envbundle.BundleError as exc:
                log(f"{host.name}: building the environment here failed, the host builds it: {exc}")
    return v


class DeployError(Exception):
    pass


def check_supported(host: Host, info: dict[str, Any]) -> None:
    if info["init"] != "systemd":
        raise DeployError(f"{host.name} runs {info['init']} as its init system; "
                          "jupyterfab deploys to systemd hosts")
    if info["os_id"] not in ("debian", "ubuntu"):
        raise DeployError(f"{host.name} runs {info['os_id']}: jupyterfab supports Debian and Ubuntu")


def deploy_host(host: Host, options: Options, runner: Runner | None = None) -> HostReport:
    report = HostReport(host.name)
    started = time.monotonic()
    own_runner = runner is None
    try:
        runner = runner or open_runner(host)
        probe = HostInfo(env_dir=envlayout.live_path(host.vars["prefix"]))
        r = runner.run(probe.command(), timeout=60)
        info = probe.parse(r.stdout, r.rc)
        check_supported(host, info)
        variables = derive_vars(host, info, options.hashes, options.log)
        def progress(r: Result) -> None:
            mark = "FAILED" if r.ok is False else "would change" if r.ok is None else "changed"
            options.log(f"{host.name}: {r.state_id} ({r.function}) {mark} in {r.duration:.1f} s")

        ctx = engine.Context(host=host.name, vars=variables, groups=tuple(host.groups),
                             files_dir=options.files_dir, apt_proxy=variables["apt_proxy"] or None,
                             progress=progress if options.progress else None)
        decls = sls.load_states(options.states_dir, ctx)
        report.results = engine.apply(decls, runner, test=options.test, context=ctx)
    except HostUnreachable as exc:
        report.error = f"unreachable: {exc}"
    except (DeployError, passwords.PasswordError, wheelhouse.WheelhouseError, sls.SlsError) as exc:
        report.error = str(exc)
    finally:
        if own_runner and runner is not None:
            runner.close()
        report.seconds = time.monotonic() - started
    return report


def deploy_hosts(hosts: list[Host], options: Options, max_parallel: int = 8) -> list[HostReport]:
    """Every host in parallel (bounded); one failing host does not stop the others."""
    if len(hosts) == 1:
        return [deploy_host(hosts[0], options)]
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(hosts)))) as pool:
        return list(pool.map(lambda h: deploy_host(h, options), hosts))


def reports_json(reports: list[HostReport], *, test: bool) -> str:
    """The outcome for machines: one object per host, every state's result."""
    import json
    return json.dumps({"dry_run": test, "ok": all(r.ok for r in reports), "hosts": [
        {"host": r.host, "ok": r.ok, "error": r.error, "seconds": round(r.seconds, 3),
         "changed": r.changed, "states": [
             {"id": s.state_id, "function": s.function, "name": s.name, "ok": s.ok,
              "changed": s.changed, "comment": s.comment, "stderr": s.stderr,
              "duration": round(s.duration, 3),
              "changes": s.changes if s.function != "file.managed" or "diff" not in s.changes
              else {**s.changes, "diff": str(s.changes["diff"])}}
             for s in r.results]}
        for r in reports]}, indent=2, default=str)


def render_reports(reports: list[HostReport], *, test: bool, color: bool = False) -> str:
    out = []
    for rep in reports:
        if rep.results:
            out.append(engine.summary(rep.host, rep.results, color=color, test=test))
        if rep.error:
            out.append(f"{rep.host}: FAILED: {rep.error}")
    out.append("")
    width = max(len(r.host) for r in reports)
    for rep in reports:
        if not rep.ok:
            status = "FAILED"
        elif test:
            status = f"{sum(1 for r in rep.results if r.ok is None)} would change"
        else:
            status = f"ok, {rep.changed} changed" if rep.changed else "ok, no changes"
        out.append(f"{rep.host:<{width}}  {status:<16} {rep.seconds:6.2f} s")
    return "\n".join(out)
