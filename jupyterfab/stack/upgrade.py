"""``fab upgrade``: a newer JupyterLab in a new environment, switched in atomically,
rolled back when it does not serve.

    upgrade_host(host, runner, options)
      probe                    OS/Python (as the deploy does), the live environment
      choose the target        newest JupyterLab the index or wheelhouse has (or --jupyterlab)
      decide                   same version: nothing to do, no restart
      build beside the live    envs/<id>, from a bundle built here or by pip on the host
      on the host, detached    (a transient systemd unit, or setsid on Upstart: GUARD)
        switch                 stop; venv -> envs/<id> (one rename); start
        wait until serving     its socket answers /api as the main process, same PID for a few seconds
        else roll back         venv -> the old environment; start; wait
      follow                   the controller reads the guard's results; reports the log

The switch, the watch and the rollback run on the host, so a Ctrl-C, a dead
controller or a dropped connection after the switch changes nothing: the host
still rolls back by itself. While the guard judges, it holds hostlock.WATCH_LOCK,
which every other changing run waits for.

The deploy's own machinery builds the environment (``deploy.plan_host`` and its
steps: the wheelhouse, the bundle built on the controller, else ``pip.installed`` on
the host), with ``jupyterlab==<target>`` instead of the inventory's spec. So a later
``fab deploy`` whose ``jupyterlab_version`` admits the upgraded version computes
the very same environment and changes nothing (see ``envlayout.spec_for_deploy``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from jupyterfab.engine import highstate, hostlock, initsys, payload, sls
from jupyterfab.engine.errors import ConfigError, JupyterfabError, ServiceError, tool_output_tail
from jupyterfab.engine.facts import key_values
from jupyterfab.engine.fleet import HostResult
from jupyterfab.engine.initsys import InitSystem
from jupyterfab.engine.runner import Runner
from jupyterfab.engine.shell import cmd
from jupyterfab.inventory import Host
from jupyterfab.stack import deploy, diskspace, serving
from jupyterfab.stack.envs import envlayout
from jupyterfab.stack.front.tlsplan import EdgePlan
from jupyterfab.stack.jupyter_versions import VERSIONS_SCRIPT, InstalledVersions, parse_versions
from jupyterfab.stack.operations import SERVICE
from jupyterfab.stack.probe import CONFIG_FILE, HostInfo
from jupyterfab.stack.states.env import MARKER_NAME as BUNDLE_MARKER
from jupyterfab.stack.states.env import env_id as bundle_env_id


class UpgradeError(ServiceError):
    pass


class SpecError(UpgradeError, ConfigError):
    """--jupyterlab is not a version or a specifier."""


@dataclass
class Options:
    spec: str | None = None                 # --jupyterlab; None: the newest available
    test: bool = False                      # dry run: say what would happen, change nothing
    log: Callable[[str], None] = print
    answer_timeout: float = 120.0           # seconds for the new server to answer at all
    stable_seconds: float = 5.0             # then it must stay up (same PID) this long
    plans: dict[str, EdgePlan] = field(default_factory=dict)   # check_plans' (else worked out here)


# --- pure decisions -------------------------------------------------------------------

def normalize_spec(spec: str | None) -> SpecifierSet | None:
    """``4.6.6`` means ``==4.6.6``; anything else is a pip version specifier (pure)."""
    if spec is None or not spec.strip():
        return None
    text = spec.strip()
    if text[0].isdigit():
        text = f"=={text}"
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise SpecError(f"--jupyterlab {spec!r} is not a version or a version specifier "
                           "(e.g. 4.6.6, '==4.5.*', '>=4.5,<4.6')") from None


def exact_version(spec: SpecifierSet | None) -> str | None:
    """The version an ``==X.Y.Z`` spec names, else None (pure)."""
    specs = list(spec or [])
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def choose_target(spec: SpecifierSet | None, available: list[str]) -> str:
    """The newest available version the spec admits; final releases only unless the
    spec names a pre-release (pure)."""
    versions = []
    for text in available:
        try:
            versions.append(Version(text))
        except InvalidVersion:
            continue
    candidates = list((spec or SpecifierSet()).filter(versions))
    if not candidates:
        wanted = f" matching {spec}" if spec else ""
        raise UpgradeError(f"no JupyterLab{wanted} among the available versions "
                           f"({', '.join(available[:8]) or 'none'}{', ...' if len(available) > 8 else ''})")
    return str(max(candidates))


def resolve_target(spec: SpecifierSet | None, host_vars: dict, python: str) -> str:
    """The version the real run installs, from what the index or wheelhouse it installs
    from has, dry run or not: an exact version it lacks is refused here, before anything
    is built. Only when the index cannot be listed is an exact version taken on trust."""
    try:
        available = available_versions(host_vars, python)
    except UpgradeError:
        if exact_version(spec) is None:
            raise
        return exact_version(spec)
    return choose_target(spec, available)


def decide(installed: str | None, target: str) -> str:
    """``up-to-date``, ``upgrade`` or ``downgrade`` (pure)."""
    if installed is None:
        return "upgrade"
    try:
        old, new = Version(installed), Version(target)
    except InvalidVersion:
        return "upgrade" if installed != target else "up-to-date"
    return "up-to-date" if old == new else "upgrade" if new > old else "downgrade"


def inventory_hint(inventory_spec: str, target: str) -> str | None:
    """What to change in the inventory so the next deploy keeps ``target`` (pure)."""
    if envlayout.admits(inventory_spec, target):
        return None
    return (f"hint: the inventory's jupyterlab_version {inventory_spec!r} does not admit "
            f"{target}, so the next deploy would replace it; set jupyterlab_version: "
            f"'=={target}' to keep it")


def versions_in_wheelhouse(folder: Path) -> list[str]:
    """JupyterLab versions whose wheels are in a folder (pure but for the listing)."""
    named = {wheel.name.split("-")[1] for wheel in folder.glob("jupyterlab-*.whl")}
    return sorted((v for v in named if re.fullmatch(r"[0-9][0-9A-Za-z.+!]*", v)), key=Version, reverse=True)


def parse_pip_index_versions(stdout: str) -> list[str]:
    """``pip index versions`` output -> the versions it lists (pure)."""
    for line in stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
    return []


def parse_probe(stdout: str) -> dict:
    """The live environment as ``PROBE`` reports it (pure)."""
    said = key_values(stdout)
    out: dict = {"layout": "none", "live_target": "", "previous_target": "", "pin": None, "service": "unknown",
                 "listens": "port"}
    return {**out, **{k: v for k, v in said.items() if k in out and v}, **parse_versions(stdout)}


# --- what runs on the host ----------------------------------------------------------

# $1 live path, $2 the service (as $unit). The environment behind it and the service,
# in one round trip.
PROBE = r"""
live="$1"; unit="$2"; prev="$live.previous"
if [ -L "$live" ]; then echo layout=link; echo "live_target=$(readlink "$live")"
elif [ -d "$live" ]; then echo layout=dir; else echo layout=none; fi
[ -L "$prev" ] && echo "previous_target=$(readlink "$prev")"
(set -- "$live"
VERSIONS
)
[ -f "$live/PIN" ] && echo "pin=$(cat "$live/PIN")"
grep -qs '^c.ServerApp.sock = ' "CONFIG" && echo listens=socket
echo "service=$(STATE)"
true
""".replace("PIN", envlayout.UPGRADE_PIN).replace("VERSIONS\n", VERSIONS_SCRIPT).replace("CONFIG", CONFIG_FILE)


def probe_script(system: InitSystem) -> str:
    """$1 live path, $2 the service: ``PROBE`` with the init's way to read its state."""
    return PROBE.replace("STATE", system.state_shell)

# $1 unit, then the arguments of $STEP (envlayout.SWITCH or ROLLBACK, passed in the
# environment). Stops the server first, so no process ever runs with the symlink
# pointing elsewhere than where it started; starts it again whether or not the step
# worked (then the old environment is still live), without waiting: the controller
# watches (watch_script). MARK, STOP and START are the init's (initsys).
STOP_STEP_START = r"""
unit="$1"; shift
echo "at=$(date +%s)"
MARK
STOP
status=0
sh -c "$STEP" sh "$@" || status=$?
START
exit $status
"""


def stop_step_start_script(system: InitSystem) -> str:
    return (STOP_STEP_START.replace("MARK\n", system.mark_shell).replace("STOP\n", system.stop_shell)
            .replace("START\n", system.start_no_wait_shell))


# The host's own python3 watches the service: one command, no round trip per poll.
# argv: unit, socket, seconds to answer, seconds it must then stay up. Prints one JSON
# line: {"ok": bool, "why": str, "version": jupyter-server's version,
# "answered_after": seconds from the start of the watch to the first answer}.
# PROPS is the init's props() (initsys): active, failed (gave up, or is restarting),
# the main pid, restarts so far, in the same terms on every init. Answering means
# the socket answers as that main pid (serving.CHECK), never as anything else.
WAIT_SERVING = r"""
import json, re, subprocess, sys, time
unit, sock, limit, stable = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
PROPS


def answers(pid):
    said = subprocess.run(["CHECK", sock, str(pid or "")], capture_output=True, text=True).stdout
    try:
        said = json.loads(said.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return (said.get("version") or "?") if said.get("ok") else None

def verdict(ok, why, version=""):
    answered = round(since - start, 2) if since is not None else None
    print(json.dumps({"ok": ok, "why": why, "version": version, "answered_after": answered}))
    sys.exit(0)

start = time.monotonic()
baseline = props()["restarts"]
pid = since = version = silent = None
while True:
    now, p = time.monotonic(), props()
    died = p["failed"] or p["restarts"] != baseline or (pid is not None and p["pid"] != pid)
    if died:
        after = f" after answering for {now - since:.1f} s" if since is not None else " before answering"
        verdict(False, f"{unit} exited{after} ({p['detail']})")
    if p["active"]:
        v = answers(p["pid"])
        if v and since is None:
            pid, since, version = p["pid"], now, v
        elif v is None and since is not None:
            # A process that dies closes its port before its init notices: give
            # it a moment to say so, which names the exit status.
            silent = silent or now
            if now - silent > 3:
                verdict(False, f"{unit} stopped answering on {sock} after {silent - since:.1f} s")
        elif v and now - since >= stable:
            verdict(True, f"answering on {sock}, up {now - since:.1f} s with pid {pid}", version)
        elif v:
            silent = None
    if now - start > limit:
        verdict(False, f"{unit} did not answer on {sock} within {limit:.0f} s ({p['where']})")
    time.sleep(0.25)
"""


def watch_script(system: InitSystem, check: str = serving.CHECK) -> str:
    return WAIT_SERVING.replace("PROPS\n", system.watch_props).replace('"CHECK"', repr(check))

# Runs on the host, detached from the SSH session: the stop/switch/start, the watch
# and, when the new environment does not serve, the rollback and a second watch.
# The step scripts (the init's: guard_script) come first in the file, as shell
# variables. $1 results dir, $2 the watch lock, $3 unit, $4 init (unused here), $5
# live path, $6 the new environment's id, $7 what venv.previous pointed at, $8 socket,
# $9 seconds to answer, ${10} seconds stable.
# Each stage's output lands in $1 (switch, health, rollback, again, times), then done.
GUARD = r"""
out="$1"; unit="$3"; init="$4"; live="$5"; id="$6"; prev="$7"; sock="$8"; limit="$9"; stable="${10}"
echo $$ > "$out/pid"
exec 8>>"$2"; flock 8
watch() { python3 -c "$WAIT_SERVING" "$unit" "$sock" "$limit" "$stable"; }
echo "t0=$(date +%s.%N)" > "$out/times"
STEP="$SWITCH" sh -c "$STOP_STEP_START" sh "$unit" "$live" "$id" > "$out/switch" 2> "$out/switch.err"
echo "rc=$?" >> "$out/switch"
echo "t1=$(date +%s.%N)" >> "$out/times"
watch > "$out/health" 2>&1
old=$(sed -n 's/^old=//p' "$out/switch")
if ! grep -q '"ok": true' "$out/health" && grep -qx 'rc=0' "$out/switch" && [ -n "$old" ]; then
    STEP="$ROLLBACK" sh -c "$STOP_STEP_START" sh "$unit" "$live" "$old" "$prev" "$id" \
        > "$out/rollback" 2> "$out/rollback.err"
    echo "rc=$?" >> "$out/rollback"
    echo "t2=$(date +%s.%N)" >> "$out/times"
    watch > "$out/again" 2>&1
fi
touch "$out/done"
"""

# $1 results dir, $2 init, then GUARD's arguments from $3 on; the guard on stdin.
# A transient systemd unit where systemd runs (its own cgroup: nothing of the SSH
# session's), else a new session (setsid) that outlives this one.
LAUNCH_GUARD = r"""
set -e
out="$1"; init="$2"; shift 2
rm -rf "$out"; mkdir -p -m 0700 "$out"; cat > "$out/guard.sh"
if [ "$init" = systemd ] && command -v systemd-run >/dev/null 2>&1; then
    systemd-run --quiet --collect --unit="jupyterfab-$(printf %s "${out##*/}" | tr -c 'a-zA-Z0-9_-' _)" \
        /bin/sh "$out/guard.sh" "$out" "$@"
else
    setsid /bin/sh "$out/guard.sh" "$out" "$@" </dev/null >/dev/null 2>&1 &
fi
"""

# $1 results dir. Waits for the guard to finish, prints each stage (==name==), and
# removes the dir (a controller that died never reads it: it stays, as the record).
FOLLOW_GUARD = r"""
while [ ! -e "$1/done" ]; do
    if [ -s "$1/pid" ] && ! kill -0 "$(cat "$1/pid")" 2>/dev/null && [ ! -e "$1/done" ]; then
        echo "==guard.err=="; echo "the guard on the host died before its verdict"; break
    fi
    sleep 0.25
done
for f in times switch switch.err health rollback rollback.err again; do
    [ -e "$1/$f" ] && { echo "==$f=="; cat "$1/$f"; }; done
rm -rf "$1"
"""
GUARD_RESULTS = "/run/jupyterfab"


def guard_script(system: InitSystem, check: str = serving.CHECK) -> str:
    """GUARD with the step scripts it runs (the init's), as one self-contained file."""
    steps = {"STOP_STEP_START": stop_step_start_script(system), "SWITCH": envlayout.SWITCH,
             "ROLLBACK": envlayout.ROLLBACK, "WAIT_SERVING": watch_script(system, check)}
    return "".join(f"{name}={shlex.quote(text)}\n" for name, text in steps.items()) + GUARD


def parse_guard(stdout: str) -> dict:
    """FOLLOW_GUARD's output -> {"switch": {...}, "health": verdict, "rollback": {...}|None,
    "again": verdict|None, "downtime": seconds|None, "errors": {...}} (pure)."""
    sections = initsys.sections(stdout)

    def said(name):
        return dict(line.split("=", 1) for line in sections.get(name, []) if "=" in line)

    def verdict(name):
        lines = [line for line in sections.get(name, []) if line.strip()]
        try:
            return json.loads(lines[-1])
        except (ValueError, IndexError):
            said = "\n".join(lines)[-500:] or "\n".join(sections.get("guard.err", [])) or "no verdict"
            return {"ok": False, "why": f"watching the service failed: {said}"}

    times = said("times")
    result = {"switch": said("switch"), "health": verdict("health"),
              "rollback": said("rollback") if "rollback" in sections else None,
              "again": verdict("again") if "again" in sections else None,
              "errors": {k: "\n".join(sections.get(f"{k}.err", [])).strip()
                         for k in ("switch", "rollback")}}
    # from the first stop until the server (new, or after a rollback the old) answered
    for key, began in (("health", "t1"), ("again", "t2")):
        v = result[key]
        if v and v.get("answered_after") is not None and times.get("t0") and times.get(began):
            v["downtime"] = float(times[began]) - float(times["t0"]) + v["answered_after"]
    return result


def start_guard(host: Host, runner: Runner, options: Options, system: InitSystem, live: str,
                eid: str, previous: str, *, watch_lock: str = hostlock.WATCH_LOCK,
                results: str = GUARD_RESULTS, sock: str = serving.SOCKET,
                check: str = serving.CHECK) -> str:
    """Start the guard on the host (it switches, watches, rolls back); its results dir."""
    out = f"{results}/upgrade-{time.strftime('%Y%m%dT%H%M%S')}-{eid[:24]}"
    launch = cmd("sh", "-c", LAUNCH_GUARD, "sh", out, system.name, watch_lock, SERVICE, system.name,
                 live, eid, previous, sock, options.answer_timeout,
                 options.stable_seconds)
    r = runner.run(launch, stdin=guard_script(system, check).encode(), timeout=60)
    if not r.ok:
        raise UpgradeError(f"cannot start the upgrade's guard on the host (nothing switched): "
                           f"{(r.stderr or r.stdout).strip()}")
    return out


def follow_guard(runner: Runner, options: Options, out: str) -> dict:
    """Wait for the guard to finish; what it did (parse_guard's dict)."""
    # the switch, two watches and a rollback at most
    budget = 2 * (options.answer_timeout + options.stable_seconds) + 2 * 300 + 60
    return parse_guard(runner.run(cmd("sh", "-c", FOLLOW_GUARD, "sh", out), timeout=budget).stdout)



# --- the controller's view of what is available ---------------------------------------

_available_lock = threading.Lock()
_available: dict[tuple, list[str]] = {}


def available_versions(host_vars: dict, python: str) -> list[str]:
    """JupyterLab versions the host could install: the wheelhouse folder's, else the
    index's (PyPI or ``pip_index_url``) for the host's Python. Once per run."""
    source = host_vars.get("wheelhouse") or ""
    if source and source != "build":
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise UpgradeError(f"wheelhouse {folder} is not a folder on this machine")
        return versions_in_wheelhouse(folder)
    key = (host_vars.get("pip_index_url") or "", python)
    with _available_lock:
        if key not in _available:
            args = [sys.executable, "-m", "pip", "index", "versions", "jupyterlab",
                    "--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp"]
            if python:
                args += ["--python-version", python]
            if key[0]:
                args += ["--index-url", key[0]]
            proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
            versions = parse_pip_index_versions(proc.stdout)
            if not versions:
                said = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
                raise UpgradeError(f"cannot list JupyterLab's versions on the index ({said}); "
                                   "name one with --jupyterlab X.Y.Z")
            _available[key] = versions
        return _available[key]


# --- one host ---------------------------------------------------------------------------

def _probe(host: Host, runner: Runner) -> tuple[dict, dict]:
    host_info = HostInfo(prefix=host.vars["prefix"])
    r = runner.run(host_info.command(), timeout=60)
    info = host_info.parse(r.stdout, r.rc)
    live = envlayout.live_path(host.vars["prefix"])
    deploy.check_supported(host, info)
    env = parse_probe(runner.run(cmd("sh", "-c", probe_script(initsys.for_init(info["init"])), "sh", live,
                                     SERVICE), timeout=60).stdout)
    return info, env


def _build_env(host: Host, runner: Runner, info: dict, target: str, log, edge_plan: EdgePlan | None) -> str:
    """A complete environment with jupyterlab==target under envs/; its id."""
    pinned = dataclasses.replace(host, vars={**host.vars, "jupyterlab_version": f"=={target}"})
    # The live environment's own pin must not steer this build (it is the old one).
    plan = deploy.plan_host(pinned, {**info, "upgraded_to": None}, edge_plan)
    wheels = deploy.build_wheelhouse(plan, info, log)
    v = {**plan.vars, "wheelhouse_local": wheels, "env_bundle": deploy.build_bundle(plan, info, wheels, log),
         "extensions_local": deploy.build_extensions()}
    prefix = host.vars["prefix"]
    live = envlayout.live_path(prefix)
    ctx = highstate.Context(host=host.name, vars=v, groups=tuple(host.groups))
    refused = diskspace.shortfall(host.name, info.get("free_kb", {}), diskspace.needs(
        prefix, v["env_bundle"], info.get("env_ids", set()), config_dirs=()))
    if refused:
        raise UpgradeError(refused)
    if v["env_bundle"]:
        bundle = Path(v["env_bundle"])
        eid = bundle_env_id(bundle.name)
        kept = runner.run(cmd("cat", "--", f"{envlayout.env_path(prefix, eid)}/{BUNDLE_MARKER}"))
        if kept.stdout.strip() != bundle.name:
            log(f"{host.name}: unpacking the new environment into {envlayout.env_path(prefix, eid)}")
            unpack = cmd("sh", "-c", envlayout.UNPACK, "sh", live, eid, "python3",   # as env.unpacked
                         BUNDLE_MARKER, bundle.name)
            r = runner.run(unpack, stdin=payload.shared(bundle), timeout=1800)
            if not r.ok:
                raise UpgradeError(f"unpacking the new environment failed: {tool_output_tail(r.stderr)}")
        if v["wheelhouse_local"]:
            # The wheelhouse the user's pip reads (pip.conf) follows the upgrade, as a
            # deploy's would: the deploy after it has nothing to send.
            results = highstate.apply(sls.validate([_wheelhouse_declaration(v)]), runner, test=False, context=ctx)
            if any(r.ok is False for r in results):
                raise UpgradeError(f"uploading the wheelhouse failed: {results[0].comment}")
    else:
        # The host installs for itself, as the deploy would (same states), only into
        # a directory of its own: the live environment is never touched.
        digest = hashlib.sha256(json.dumps(v["requirements"]).encode()).hexdigest()[:16]
        eid = f"pip-py{info.get('python') or '3'}-{digest}"
        decls = _host_build_declarations(v, envlayout.env_path(prefix, eid))
        log(f"{host.name}: installing the new environment into {envlayout.env_path(prefix, eid)}")
        results = highstate.apply(decls, runner, test=False, context=ctx)
        failed = [r for r in results if r.ok is False]
        if failed:
            raise UpgradeError(f"building the new environment failed: {failed[0].comment}"
                               + (f"\n{tool_output_tail(failed[0].stderr)}" if failed[0].stderr else ""))
    path = envlayout.env_path(prefix, eid)
    versions = InstalledVersions(path)
    got = versions.parse(runner.run(versions.command()).stdout, 0)["jupyterlab"]
    if got != target:
        raise UpgradeError(f"the new environment {path} has JupyterLab {got or 'missing'}, not {target}")
    pin = runner.run(cmd("sh", "-c", 'printf "%s\\n" "$2" > "$1"', "sh",
                         f"{path}/{envlayout.UPGRADE_PIN}", target))
    if not pin.ok:
        raise UpgradeError(f"cannot write {path}/{envlayout.UPGRADE_PIN}: {pin.stderr.strip()}")
    return eid


def _wheelhouse_declaration(v: dict) -> sls.Declaration:
    """The deploy's wheelhouse upload (states/jupyter/init.sls's ``wheelhouse``)."""
    return sls.Declaration("wheelhouse", "file", "recurse", v["wheelhouse_dir"],
                           {"source": v["wheelhouse_local"], "clean": True})


def _host_build_declarations(v: dict, env_dir: str) -> list[sls.Declaration]:
    """The deploy's uploads (the server extension, the wheelhouse) and pip.installed,
    aimed at ``env_dir``."""
    decls = [sls.Declaration("server_extensions", "file", "recurse", v["extensions_dir"],
                             {"source": v["extensions_local"], "clean": True})]
    pip_args = {"bin_env": env_dir, "pkgs": v["requirements"], "installer": v["pip_installer"]}
    if v["pip_index_url"]:
        pip_args["index_url"] = v["pip_index_url"]
    if v["wheelhouse_local"]:
        decls.append(_wheelhouse_declaration(v))
        pip_args.update(find_links=v["wheelhouse_dir"], no_index=True)
    decls.append(sls.Declaration("jupyter_env", "pip", "installed", "jupyter_env", pip_args))
    return sls.validate(decls)


def upgrade_host(host: Host, runner: Runner, options: Options) -> HostResult:
    """One host's upgrade; ``details`` (for JSON): action (up-to-date, would upgrade,
    upgraded, rolled back, failed), the old and new JupyterLab, the downtime (stop ->
    the new, after a rollback the old, server answering) and the failed server's log."""
    started = time.monotonic()
    details = {"action": "failed", "old": "", "new": "", "downtime_seconds": 0.0, "log": []}
    try:
        ok, text = _upgrade(host, runner, options, details)
    except JupyterfabError as exc:
        ok, text, details["action"] = False, str(exc), "failed"
    details["downtime_seconds"] = round(details["downtime_seconds"], 2)
    return HostResult(host.name, text, failed=not ok, seconds=time.monotonic() - started, details=details)


def _upgrade(host: Host, runner: Runner, options: Options, out: dict) -> tuple[bool, str]:
    """(ok, what happened); ``out``: upgrade_host's details, filled in on the way."""
    log = options.log
    if host.vars.get("env_provider", "venv") != "venv":
        raise UpgradeError(f"{host.name} runs Jupyter from a {host.vars['env_provider']} "
                           "environment: upgrade handles venv hosts; change the environment "
                           "file's jupyterlab and deploy")
    info, env = _probe(host, runner)
    live = envlayout.live_path(host.vars["prefix"])
    if env["layout"] == "none" or env["service"] in ("unknown", ""):
        raise UpgradeError(f"no Jupyter environment at {live}: deploy first")
    if env["listens"] != "socket":
        # the watcher knows the server by its socket: an older deploy's listens on a port
        raise UpgradeError("Jupyter listens on a TCP port there (deployed by an earlier "
                           "jupyterfab): deploy first, which moves it to its socket")
    old = out["old"] = env["jupyterlab"] or "unknown"
    target = out["new"] = resolve_target(normalize_spec(options.spec), host.vars, info["python"])
    verdict = decide(env["jupyterlab"], target)
    if verdict == "up-to-date":
        out["action"] = "up-to-date"
        return True, f"JupyterLab {target} already: nothing to do (no restart)"
    direction = "" if verdict == "upgrade" else " (a downgrade)"
    hint = inventory_hint(host.vars["jupyterlab_version"], target)
    if options.test:
        out["action"] = "would upgrade"
        return True, (f"would upgrade JupyterLab {old} -> {target}{direction}: new environment "
                      f"beside {live}, switched in, the old one kept for rollback")
    log(f"{host.name}: JupyterLab {old} -> {target}{direction}: building the new environment")
    eid = _build_env(host, runner, info, target, log, options.plans.get(host.name))

    log(f"{host.name}: switching to envs/{eid} and restarting {SERVICE} "
        "(watched on the host, which rolls back by itself)")
    system = initsys.for_init(info["init"])
    guard = follow_guard(runner, options,
                         start_guard(host, runner, options, system, live, eid, env["previous_target"]))
    said, health = guard["switch"], guard["health"]
    if said.get("rc") != "0":
        raise UpgradeError(f"switching to envs/{eid} failed (the old environment stays): "
                           f"{guard['errors']['switch']}")
    if health["ok"]:
        downtime = out["downtime_seconds"] = health.get("downtime", 0.0)
        pruned = runner.run(cmd("sh", "-c", envlayout.PRUNE, "sh", live)).stdout.count("pruned=")
        out["action"] = "upgraded"
        return True, (f"JupyterLab {old} -> {target}{direction}: serving "
                      f"(Jupyter Server {health.get('version')}) {downtime:.1f} s after the stop, "
                      f"stable for {options.stable_seconds:.0f} s; the previous environment "
                      f"({said.get('old') or 'none'}) is kept for rollback"
                      + (f", {pruned} older removed" if pruned else "")
                      + (f"\n{hint}" if hint else ""))

    # The new environment did not serve: the guard went back to the old one.
    log(f"{host.name}: the new environment failed ({health['why']}): rolled back on the host")
    old_target = said.get("old", "")      # what the switch replaced (maybe just migrated)
    if not old_target:
        raise UpgradeError(f"JupyterLab {target} did not serve ({health['why']}) and there is "
                           "no previous environment to roll back to")
    said_back = guard["rollback"] or {}
    again = (guard["again"] if said_back.get("rc") == "0" and guard["again"]
             else {"ok": False, "why": guard["errors"]["rollback"] or "the rollback did not run"})
    # Read once the rollback has started: by then the log has everything the
    # failed server wrote, up to its last crash.
    out["log"] = system.failed_attempt_log(runner, SERVICE, said, said_back)
    downtime = out["downtime_seconds"] = again.get("downtime") or 0.0
    log_text = "\n".join(f"  {line}" for line in out["log"])
    if again["ok"]:
        out["action"] = "rolled back"
        return False, (f"rolled back: JupyterLab {target} did not serve ({health['why']}); "
                       f"JupyterLab {old} is serving again from {old_target} "
                       f"({downtime:.1f} s after the first stop)\n"
                       f"last log lines of {SERVICE} on JupyterLab {target}:\n{log_text}")
    return False, (f"ROLLBACK FAILED: JupyterLab {target} did not serve ({health['why']}), and "
                   f"after switching back to {old_target}: {again['why']}\n"
                   f"last log lines of {SERVICE}:\n{log_text}")
