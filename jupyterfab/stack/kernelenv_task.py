"""``fab kernel-env``: the notebook user's kernel environment, shown or rebuilt.

``--reset`` is for an environment that no longer works (a package that broke it,
a Python upgraded under it): the list of what it held is saved beside it
(``kernel-env.<time>.txt``, pip freeze's format), the environment is removed
(as its owner), and the deploy's own state (``kernel_env``, alone) makes it
again, with ipykernel and ``python_packages``. ``--reinstall`` then installs the saved list into it
(through the user's pip.conf, as ``%pip install -r`` would); without it the
list is shown, to reinstall from by hand.
"""

from __future__ import annotations

from jupyterfab.engine.facts.packages import UnsatisfiedRequirements
from jupyterfab.engine.fleet import HostResult, outcome
from jupyterfab.engine.runner import Runner
from jupyterfab.engine.shell import chain, cmd
from jupyterfab.inventory import Host, schema
from jupyterfab.stack import deploy, kernelenv
from jupyterfab.stack.front import tlsplan


def _env_dir(host: Host) -> str:
    return kernelenv.kernel_env_dir(schema.home_dir(host.vars["jupyter_user"]))


def show(host: Host, runner: Runner) -> HostResult:
    """Where the environment is, whether it runs, what it holds (one round trip)."""
    env = _env_dir(host)
    user = host.vars["jupyter_user"]
    fact = UnsatisfiedRequirements(env, tuple(kernelenv.SEED + host.vars["python_packages"]), user)
    listing = cmd("sh", "-c", '[ ! -x "$2/bin/python" ] || runuser -u "$1" -- "$2/bin/python" '
                  '-m pip list --format=freeze 2>/dev/null; true', "sh", user, env)
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


def reset(stamp: str, reinstall: bool, plans: dict[str, tlsplan.EdgePlan], log=print):
    """The day-2 action for ``--reset``: save the list, remove, redeploy, maybe reinstall.
    ``plans``: the hosts' Cloudflare/TLS plans, as ``deploy.check_plans`` worked them out."""
    def run(host: Host, runner: Runner) -> HostResult:
        env = _env_dir(host)
        user = host.vars["jupyter_user"]
        saved = kernelenv.freeze_list_path(env, stamp)
        r = runner.run(cmd("runuser", "-u", user, "--", "sh", "-c", kernelenv.RESET,
                           kernelenv.FREEZE, env, saved), timeout=600)
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
            pip = cmd("runuser", "-u", user, "--", "env", f"XDG_CONFIG_DIRS={kernelenv.xdg_config_dir(host.vars)}:/etc/xdg",
                      f"{env}/bin/python", "-m", "pip", "install", "--disable-pip-version-check",
                      "--no-input", "-r", saved)
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
