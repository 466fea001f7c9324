"""Host tasks: ``fab -H HOST[,HOST...] TASK``.

HOST is a name from the inventory (--inventory, else $JUPYTERFAB_INVENTORY, else the
running sandbox's when it has the host, else hosts.yaml: ``inventory_rule``) or a
plain ``user@host[:port]``. Every task works on all the hosts at once, in
parallel (``fleet.run``), so that one slow or broken host never holds up the rest
and the exit code speaks for all of them.

    fab --list                      every task, one line each
    fab --help deploy               a task's options
"""

from __future__ import annotations

import functools
import gc
import inspect
import sys
import tarfile
import time
from pathlib import Path

from fabric import task
from invoke import Collection, Exit

from jupyterfab import inventory
from jupyterfab.cli import one_line
from jupyterfab.dev import demo_record
from jupyterfab.engine import fleet
from jupyterfab.inventory import selection
from jupyterfab.stack import deploy as deploying
from jupyterfab.stack import kernelenv_task, operations, passwords
from jupyterfab.stack import upgrade as upgrading
from jupyterfab.stack.front import cloudflare, tlsplan

PROJECT = Path(__file__).resolve().parent

# Everything imported so far lives until the run ends. Out of the garbage collector's
# way, its full collections and the one at exit no longer walk it: a 16-host no-op's
# collections took 0.05-0.07 s of the controller's one busy core, 0.01 s frozen, and
# the process ends ~0.1 s sooner.
gc.freeze()

# Fabric calls a task once per -H host (its Executor expands the call per host, with
# no hook that sees the whole list), and the fab program cannot be given another
# Executor from a fabfile. So each per-host call only records its host here, and one
# post-task (Fabric runs post-tasks once, without a host) does the work for all of
# them. This is the one place that knows; the tasks below are plain functions of the
# host list.
_collected: dict[str, tuple[dict, list[str]]] = {}


# Every fab task picks its hosts the same way: -H names, --group, --set and --inventory
# (selection.select); the options' help is written once, here.
SELECTION_HELP = {"inventory": selection.HELP, "set": selection.SET_HELP,
                  "group": "every host of this inventory group (with or instead of -H)"}


def fleet_task(name: str | None = None, help: dict | None = None, **task_options):
    """A fab task run once for all its hosts: ``body(targets, **options)``. Its body takes
    the host selection (``inventory``, ``set``, ``group``) like every other task."""
    def wrap(body):
        task_name = name or body.__name__.rstrip("_").replace("_", "-")

        @task(name=f"_{task_name}-all")
        @one_line
        def for_all(c):
            options, targets = _collected.pop(task_name, ({}, []))
            if options.pop("_ran", False):
                body(targets, **options)

        @functools.wraps(body)
        def collect(c, **options):
            entry = _collected.setdefault(task_name, ({"_ran": True, **options}, []))
            if getattr(c, "original_host", None):
                entry[1].append(_target(c))
            elif not options.get("group"):
                raise Exit(f"error: name the hosts with -H (e.g. fab -H jupyter1 {task_name}) "
                           "or an inventory group with --group", code=2)

        signature = inspect.signature(body)
        missing = [option for option in SELECTION_HELP if option not in signature.parameters]
        if missing:
            raise TypeError(f"fab task {task_name} lacks the host selection {missing}")
        collect.__signature__ = signature.replace(parameters=[
            inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            *list(signature.parameters.values())[1:]])
        return task(name=task_name, post=[for_all], iterable=["set"],
                    help={**SELECTION_HELP, **(help or {})}, **task_options)(collect)
    return wrap


def _target(c) -> str:
    """The -H entry as the user wrote it (Fabric splits user and port off)."""
    target = c.original_host
    if c.user != c.config.user:
        target = f"{c.user}@{target}"
    if c.port != (c.config.port or 22):
        target = f"{target}:{c.port}"
    return target


def _count(value, option: str) -> int:
    """--lines and the like (text to Invoke, so a typo is not its traceback): a whole
    number, or exit code 2 naming the option."""
    if not str(value).isdigit():
        raise Exit(f"error: --{option} takes a whole number, not {value!r}", code=2)
    return int(value)


def _planned(targets: list[str], inventory_file=None, group=None, set=None
             ) -> tuple[list[inventory.Host], dict[str, tlsplan.EdgePlan]]:
    """The hosts, every variable checked and each host's Cloudflare/TLS plan worked out,
    before any connection (every task: the day-2 ones read the plan too)."""
    hosts = selection.select(inventory_file, targets, PROJECT, group=group,
                             preferred=demo_record.sandbox_inventories(PROJECT),
                             overrides=selection.overrides(set))[1]
    return hosts, deploying.check_plans(hosts)


def _hosts(targets: list[str], inventory_file=None, group=None, set=None) -> list[inventory.Host]:
    return _planned(targets, inventory_file, group, set)[0]


def _report(name: str, result: fleet.FleetResult, *, test: bool = False, table: bool = False,
            json: bool = False, detail: bool = True) -> None:
    """The outcome (text, or JSON), then the exit code for all the hosts."""
    print(fleet.to_json(result, test=test) if json
          else fleet.render(result, test=test, color=sys.stdout.isatty(), table=table, detail=detail))
    if result.failed:
        raise Exit(f"{name} failed on: {', '.join(result.failed)}", code=1)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_TOKEN_HELP = (f"file (mode 0600) holding the Cloudflare API token; else ${cloudflare.TOKEN_ENV} "
               "(needed for hosts with cloudflare_zone)")


@fleet_task(
            help={"dry_run": "show what would change (with diffs) and change nothing",
                  "cloudflare_token_file": _TOKEN_HELP,
                  "acme_dns_token_file": "file (mode 0600) with a Cloudflare token (Zone.DNS:Edit on the "
                                         "zone only) that hosts with tls: acme and dns-01 keep, so certbot "
                                         "renews without this machine; needed when the host has none yet",
                  "group": "deploy every host of this inventory group (with or instead of -H)",
                  "json": "print the outcome as JSON (every state of every host) instead of the summary",
                  "password_file": f"file (mode 0600) holding the Jupyter password; else ${passwords.ENV_VAR} or a prompt",
                  "verbose": "every changed state in full, with its diff (a dry run always shows them); "
                             "by default a line per changed state, failures in full, the table",
                  })
def deploy(targets, dry_run=False, password_file=None, inventory=None, set=None, group=None, json=False,
           cloudflare_token_file=None, acme_dns_token_file=None, verbose=False):
    """Deploy Jupyter behind NGINX to the hosts (in parallel), changing only what differs.

    With cloudflare_zone set, also Cloudflare: the origin certificate, the lockdown to
    Cloudflare's ranges, the zone's TLS settings and the DNS record (see fab --help cloudflare).
    A public server_name without either gets an ACME (Let's Encrypt) certificate (tls: acme).
    """
    hosts, plans = _planned(targets, inventory, group, set)   # validated before any connection
    deploying.preflight(plans, cloudflare_token_file, acme_dns_token_file)
    password = passwords.from_sources(password_file, prompt=sys.stdin.isatty() and not dry_run)
    opts = deploying.Options(test=dry_run, password=password, cloudflare_token_file=cloudflare_token_file,
                             acme_dns_token_file=acme_dns_token_file, log=_log)
    _report("deploy", deploying.deploy_hosts(hosts, opts, plans), test=dry_run, table=True, json=json,
            detail=verbose or dry_run)


@fleet_task(name="cloudflare",
            help={"dry_run": "show what would change on Cloudflare and change nothing",
                  "cloudflare_token_file": _TOKEN_HELP,
                  "verbose": "every changed record and setting in full (a dry run always shows "
                             "them); by default a line per change, failures in full, the table"})
def cloudflare_(targets, dry_run=False, inventory=None, set=None, group=None, cloudflare_token_file=None,
                verbose=False):
    """Cloudflare only: the hosts' DNS records and the zone's TLS settings (no host changes).

    A (and AAAA, when the host has IPv6) record for server_name, proxied unless
    cloudflare_proxied is false; ssl=strict, Always Use HTTPS, TLS 1.2 minimum,
    WebSockets on. Each is written only when it differs. deploy does this too, after
    the origin serves a certificate that Full (strict) accepts.
    """
    hosts, plans = _planned(targets, inventory, group, set)
    deploying.preflight(plans, cloudflare_token_file)
    missing = [h.name for h in hosts if not h.vars.get("cloudflare_zone")]
    if missing:
        raise Exit(f"error: no cloudflare_zone for {', '.join(missing)} (set it in hosts.yaml "
                   f"or with --set cloudflare_zone=example.com)", code=2)
    detail = verbose or dry_run
    result = deploying.cloudflare_hosts(hosts, plans, dry_run=dry_run, token_file=cloudflare_token_file,
                                        log=None if detail else _log)
    _report("cloudflare", result, test=dry_run, table=True, detail=detail)


# --- day-2 tasks: quick, one or two commands per host, never the state tree ---------

def _day2(name: str, hosts: list[inventory.Host], action, *, changes: bool = False) -> None:
    """``changes``: the task changes the host, so it runs under the host lock."""
    _report(name, fleet.run(hosts,
                            fleet.connected(action, lock=name if changes else None, log=_log)))


@fleet_task()
def restart(targets, inventory=None, set=None, group=None):
    """Restart Jupyter on the hosts; returns once it answers again."""
    _day2("restart", _hosts(targets, inventory, group, set), operations.control("restart"), changes=True)


@fleet_task()
def stop(targets, inventory=None, set=None, group=None):
    """Stop Jupyter on the hosts (NGINX stays up and answers 502)."""
    _day2("stop", _hosts(targets, inventory, group, set), operations.control("stop"), changes=True)


@fleet_task()
def start(targets, inventory=None, set=None, group=None):
    """Start Jupyter on the hosts; returns once it answers."""
    _day2("start", _hosts(targets, inventory, group, set), operations.control("start"), changes=True)


@fleet_task(help={"lines": "how many log lines to show (default 5)"})
def status(targets, inventory=None, set=None, group=None, lines="5"):
    """Service state, whether the service itself answers on its socket, uptime, Jupyter
    version, URL and the last log lines."""
    count = _count(lines, "lines")
    hosts, plans = _planned(targets, inventory, group, set)
    _day2("status", hosts, lambda h, r: operations.status(h, r, plans[h.name], lines=count))


@fleet_task(help={"lines": "how many lines (default 50)",
                  "follow": "keep printing new lines, every host's at once, each after its "
                                    "host's name, until Ctrl-C"})
def logs(targets, inventory=None, set=None, group=None, lines="50", follow=False):
    """Jupyter's log (the journal, or Upstart's log file); --follow streams every host's."""
    count = _count(lines, "lines")
    if not follow:
        _day2("logs", _hosts(targets, inventory, group, set), lambda h, r: operations.logs(h, r, lines=count))
        return
    failed = operations.follow_logs(_hosts(targets, inventory, group, set), count)
    if failed:
        raise Exit(f"logs failed on: {', '.join(h.host for h in failed)}", code=1)


@fleet_task(name="rotate-password",
            help={
                  "password_file": f"file (mode 0600) with the new password; else ${passwords.ENV_VAR} or a prompt (asked twice)"})
def rotate_password(targets, inventory=None, set=None, group=None, password_file=None):
    """Set a new Jupyter password: only the config's hash changes, then one restart."""
    password = passwords.from_sources(password_file, prompt=sys.stdin.isatty())
    if password is None:
        raise Exit(f"error: give the new password with --password-file, ${passwords.ENV_VAR} "
                   "or at the prompt", code=2)
    hashes = passwords.HashChooser(password)
    _day2("rotate-password", _hosts(targets, inventory, group, set), operations.rotate_password(deploying.CONFIG_FILE, hashes),
          changes=True)


@fleet_task(help={"dest": "folder for the tarballs (default: backups/)"})
def backup(targets, inventory=None, set=None, group=None, dest=None):
    """Tarball of the notebook directory, pulled here with a sha256 checked on arrival."""
    folder = Path(dest or PROJECT / "backups")
    _day2("backup", _hosts(targets, inventory, group, set), operations.backup(folder, time.strftime("%Y%m%d-%H%M%S")))


@fleet_task(help={"archive": "a tarball made by backup",
                  "dry_run": "list the notebooks it would overwrite; change nothing"})
def restore(targets, archive=None, inventory=None, set=None, group=None, dry_run=False):
    """Put a backup's notebooks back (checksum verified; other files are left alone).

    Every notebook it overwrites is saved first into a tarball on the host
    (/var/backups/jupyterfab/notebooks-before-restore-TIME.tar.gz, named in the output).
    """
    if not archive:
        raise Exit("error: name the backup to restore with --archive "
                   "(e.g. --archive backups/jupyter1-notebooks-....tar.gz)", code=2)
    if not Path(archive).is_file():
        raise Exit(f"error: no backup at {archive}", code=2)
    hosts = _hosts(targets, inventory, group, set)
    if not _is_tar_gz(archive):     # else each host said gzip's and tar's complaints twice
        raise Exit(f"error: {archive} is not a .tar.gz: restore takes an archive made by fab backup",
                   code=2)
    _day2("restore", hosts, operations.restore(Path(archive), time.strftime("%Y%m%d-%H%M%S"), dry_run=dry_run),
          changes=not dry_run)


def _is_tar_gz(path: str) -> bool:
    try:
        with tarfile.open(path, "r:gz") as archive:
            archive.next()
        return True
    except (tarfile.TarError, OSError, EOFError):
        return False


@fleet_task(
            help={"jupyterlab": "version or pip specifier to upgrade to, e.g. 4.6.6 or '==4.5.*' "
                                "(default: the newest on the index or in the wheelhouse)",
                  "dry_run": "say which version each host would go from and to; change nothing",
                  "group": "upgrade every host of this inventory group (with or instead of -H)",
                  "json": "print the outcome as JSON (one object per host) instead of lines",
                  })
def upgrade(targets, jupyterlab=None, dry_run=False, inventory=None, set=None, group=None, json=False):
    """Newer JupyterLab in a new environment, switched in at once; back to the old one if it fails to serve."""
    hosts, plans = _planned(targets, inventory, group, set)   # validated before any connection
    upgrading.normalize_spec(jupyterlab)
    opts = upgrading.Options(spec=jupyterlab, test=dry_run, log=_log, plans=plans)
    result = fleet.run(hosts, fleet.connected(lambda h, r: upgrading.upgrade_host(h, r, opts),
                                              lock=None if dry_run else "upgrade", log=_log))
    _report("upgrade", result, test=dry_run, json=json)


@fleet_task(name="kernel-env",
            help={
                  "reset": "rebuild the environment (after a confirmation): its package list is saved "
                           "beside it, it is removed, and the deploy's kernel_env state makes it again",
                  "yes": "with --reset: do not ask",
                  "reinstall": "with --reset: install the saved list into the rebuilt environment"})
def kernel_env(targets, inventory=None, set=None, group=None, reset=False, yes=False, reinstall=False):
    """The notebook user's own Python (the python3 kernel, %pip): show it, or --reset it."""
    hosts, plans = _planned(targets, inventory, group, set)
    if not reset:
        _day2("kernel-env", hosts, kernelenv_task.show)
        return
    names = ", ".join(h.name for h in hosts)
    if not yes:
        if not sys.stdin.isatty():
            raise Exit(f"error: --reset removes the kernel environment on {names} (its package "
                       "list is kept); confirm with --yes (there is no terminal to ask on)", code=2)
        answer = input(f"Rebuild the notebook user's kernel environment on {names}? What the user "
                       "installed there is removed (the list is kept beside it). [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("kernel-env: nothing done", code=1)
    action = kernelenv_task.reset(time.strftime("%Y%m%d-%H%M%S"), reinstall, plans, log=_log)
    _report("kernel-env", fleet.run(hosts, fleet.connected(action, lock="kernel-env", log=_log)))


# Listed explicitly so that `fab --list` shows the tasks, not the post-tasks.
ns = Collection(deploy, restart, stop, start, status, logs, rotate_password, backup, restore, upgrade,
                cloudflare_, kernel_env)
