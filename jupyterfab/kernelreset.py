"""``fab kernel-env``: the notebook user's kernel environment, shown or rebuilt.

``--reset`` is for an environment that no longer works (a package that broke it,
a Python upgraded under it): the list of what it held is saved beside it
(``kernel-env.<time>.txt``, pip freeze's format), the environment is removed
(as its owner), and the deploy's own state (``kernel_env``, alone) makes it
again, with ipykernel and ``python_packages``. ``--reinstall`` then installs the saved list into it
(through the user's pip.conf, as ``%pip install -r`` would); without it the
list is shown, to reinstall from by hand.

Every step here that starts the environment's Python (which runs any ``.pth`` file
in it) runs as its owner inside the Jupyter unit's confinement (``confinement``).
"""

from __future__ import annotations

from . import confinement, day2, deploy, edge, kernelenv
from .facts.commands import RunAs
from .facts.packages import UnsatisfiedRequirements
from .fleet import HostResult, outcome
from .initsys import Unsupported
from .inventory import Host
from .runner import Runner
from .shell import chain, cmd

# $1 the environment, then the command that lists it (as its owner, confined)
LIST = 'env="$1"; shift; [ ! -x "$env/bin/python" ] || "$@" 2>/dev/null; true'


def _env_dir(host: Host) -> str:
    return kernelenv.kernel_env_dir(kernelenv.home_dir(host.vars["jupyter_user"]))


def _run_as(host: Host, runner: Runner) -> RunAs:
    """The notebook user inside the Jupyter unit's confinement, as the host's init gives
    it (one round trip to ask which); Unsupported on a host with neither."""
    found = day2.host_init(host, runner, "nothing was done there")
    home = kernelenv.home_dir(host.vars["jupyter_user"])
    return confinement.run_as({**host.vars, "jupyter_home": home}, found.init)


def show(host: Host, runner: Runner) -> HostResult:
    """Where the environment is, whether it runs, what it holds (the init's round trip,
    then one)."""
    env = _env_dir(host)
    try:
        runas = _run_as(host, runner)
    except Unsupported as exc:
        return outcome(host.name, False, str(exc))
    fact = UnsatisfiedRequirements(env, tuple(kernelenv.SEED + host.vars["python_packages"]), runas)
    listing = cmd("sh", "-c", LIST, "sh", env, *runas.command(
        [f"{env}/bin/python", "-m", "pip", "list", "--format=freeze"], 120).parts)
    r = runner.run(chain(fact.command(), cmd("echo", "==list=="), listing, op=";"), timeout=120)
    head, sep, listed = r.stdout.partition("==list==\n")
    if not sep:     # the command never ran (sudo refused, ...): its own words, not ''
        return outcome(host.name, False, f"checking {env}: {r.stderr.strip() or f'no answer (exit {r.rc})'}")
    state = fact.parse(head, 0)
    packages = [line for line in listed.splitlines() if "==" in line]
    if state.state == "absent":
        return outcome(host.name, False, f"no kernel environment at {env} (fab deploy makes it)")
    if state.state == "broken":
        return outcome(host.name, False, f"{env} is broken ({state.error}): fab kernel-env --reset "
                                         "rebuilds it")
    lines = [f"kernel environment: {env} ({len(packages)} packages)"]
    if state.unsatisfied:
        lines.append("lacks (the next deploy adds): " + ", ".join(state.unsatisfied))
    lines += [f"  {p}" for p in packages]
    return outcome(host.name, True, "\n".join(lines))


def reset(stamp: str, reinstall: bool, plans: dict[str, edge.EdgePlan], log=print):
    """The day-2 action for ``--reset``: save the list, remove, redeploy, maybe reinstall.
    ``plans``: the hosts' Cloudflare/TLS plans, as ``deploy.check_plans`` worked them out."""
    def run(host: Host, runner: Runner) -> HostResult:
        env = _env_dir(host)
        try:
            runas = _run_as(host, runner)
        except Unsupported as exc:
            return outcome(host.name, False, str(exc))
        saved = kernelenv.freeze_list_path(env, stamp)
        r = runner.run(runas.command(["sh", "-c", kernelenv.RESET, kernelenv.FREEZE, env, saved], 600),
                       timeout=600)
        if not r.ok:
            return outcome(host.name, False, f"could not remove {env}: {(r.stderr or r.stdout).strip()}")
        held = [line for line in r.stdout.splitlines() if line.strip()]
        # under kernel-env's host lock already (fabfile): the deploy does not take it again
        report = deploy.deploy_host(host, deploy.Options(log=log, progress=False, only=("kernel_env",),
                                                         lock=False), runner=runner,
                                    edge_plan=plans[host.name])
        if not report.ok:
            failed = [f"{x.state_id}: {x.comment}" for x in report.results if x.ok is False]
            return outcome(host.name, False, "the deploy that rebuilds it failed: "
                           + ((report.text if report.failed else "") or "; ".join(failed)))
        lines = [f"rebuilt {env}; what it held ({len(held)} packages) is in {saved}"]
        if reinstall and held:
            pip = runas.command(["env", f"XDG_CONFIG_DIRS={kernelenv.xdg_config_dir(host.vars)}:/etc/xdg",
                                 f"{env}/bin/python", "-m", "pip", "install", "--disable-pip-version-check",
                                 "--no-input", "-r", saved], 3600)
            got = runner.run(pip, timeout=3600)
            if not got.ok:
                return outcome(host.name, False, "\n".join(lines + [
                    f"reinstalling the list failed (the rebuilt environment works; install from "
                    f"{saved} by hand, e.g. %pip install -r {saved}):",
                    *got.stderr.strip().splitlines()[-5:]]))
            lines.append(f"reinstalled them from {saved}")
        else:
            lines += [f"reinstall any of them with %pip install (or: %pip install -r {saved})",
                      *[f"  {p}" for p in held]]
        return outcome(host.name, True, "\n".join(lines))
    return run
