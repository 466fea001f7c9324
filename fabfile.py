"""Host tasks: ``fab -H HOST[,HOST...] TASK``.

HOST is a name from the inventory (hosts.yaml, or --inventory / $JUPYTERFAB_INVENTORY)
or a plain ``user@host[:port]``. Fabric calls a task once per host; jupyterfab's
tasks only collect the hosts there, then do the work for all of them at once, in
parallel, in a post-task, so that one slow or broken host never holds up the rest
and the exit code speaks for all of them.

    fab --list                      every task, one line each
    fab --help deploy               a task's options
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from pathlib import Path

from fabric import task
from invoke import Collection, Exit

from jupyterfab import cloudflare, day2, edge
from jupyterfab import deploy as deploying
from jupyterfab import inventory, passwords

PROJECT = Path(__file__).resolve().parent
_pending: dict[str, list] = {}


def _inventory_path(given: str | None) -> Path:
    return Path(given or os.environ.get("JUPYTERFAB_INVENTORY") or PROJECT / "hosts.yaml")


def _target(c) -> str:
    """The -H entry as the user wrote it (Fabric splits user and port off)."""
    target = c.original_host
    if c.user != c.config.user:
        target = f"{c.user}@{target}"
    if c.port != (c.config.port or 22):
        target = f"{target}:{c.port}"
    return target


def _collect(name: str, c, **options) -> None:
    """Called once per -H host by Fabric (or once without a host, for --group)."""
    entry = _pending.setdefault(name, [options, []])
    if getattr(c, "original_host", None):
        entry[1].append(_target(c))
    elif not options.get("group"):
        raise Exit(f"error: name the hosts with -H (e.g. fab -H jupyter1 {name}) "
                   f"or an inventory group with --group", code=2)


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise Exit(f"error: --set takes key=value, got {pair!r}", code=2)
        out[key] = _typed(key, value)
    return out


def _typed(key: str, value: str):
    """--set values are text; give them the type the variable has (schema.py)."""
    default = inventory.VAR_DEFAULTS.get(key)
    if isinstance(default, bool):
        words = {"true": True, "yes": True, "on": True, "1": True,
                 "false": False, "no": False, "off": False, "0": False}
        if value.lower() not in words:
            raise Exit(f"error: --set {key}: must be true or false, not {value!r}", code=2)
        return words[value.lower()]
    if isinstance(default, list):
        return [item for item in value.split(",") if item]
    if isinstance(default, int):
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", value.strip()):
            raise Exit(f"error: --set {key}: must be a number, not {value!r}", code=2)
        return int(value)
    if isinstance(default, str):
        return value
    return int(value) if value.isdigit() else value


def _selected_hosts(options: dict, targets: list[str]) -> list[inventory.Host]:
    """The hosts, every variable checked (and each host's Cloudflare/TLS plan worked
    out) before any connection; a mistake is one line and exit code 2."""
    try:
        inv = inventory.load(_inventory_path(options.get("inventory")))
        hosts = inv.select(targets, group=options.get("group"), overrides=_overrides(options.get("set")))
        for host in hosts:
            edge.plan_for(host.name, host.vars)
        return hosts
    except (inventory.InventoryError, edge.EdgeConfigError) as exc:
        raise Exit(f"error: {exc}", code=2)


# A user's mistake found while a task runs (a file that cannot be read or written,
# a refused value) ends it with one line, never a traceback.
USER_ERRORS = (inventory.InventoryError, edge.EdgeConfigError, cloudflare.CloudflareError,
               passwords.PasswordError, deploying.DeployError, OSError)


def _one_line_errors(run):
    """For a post-task: a user error becomes ``error: ...`` and exit code 1."""
    @functools.wraps(run)
    def wrapper(c):
        try:
            return run(c)
        except USER_ERRORS as exc:
            raise Exit(f"error: {exc}", code=1)
    return wrapper


def _count(value, option: str) -> int:
    """--lines and the like: a whole number, or exit code 2 naming the option."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Exit(f"error: --{option} takes a whole number, not {value!r}", code=2) from None
    if number < 0:
        raise Exit(f"error: --{option} takes a whole number, not {value!r}", code=2)
    return number


@task
@_one_line_errors
def _run_deploy(c):
    options, targets = _pending.pop("deploy")
    hosts = _selected_hosts(options, targets)   # validated before any connection
    _preflight(hosts, options)
    try:
        password = passwords.from_sources(options.get("password_file"),
                                          prompt=sys.stdin.isatty() and not options["dry_run"])
    except passwords.PasswordError as exc:
        raise Exit(f"error: {exc}", code=2)
    opts = deploying.Options(test=options["dry_run"], password=password,
                             cloudflare_token_file=options.get("cloudflare_token_file"),
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    reports = deploying.deploy_hosts(hosts, opts)
    if options.get("json"):
        print(deploying.reports_json(reports, test=opts.test))
    else:
        print(deploying.render_reports(reports, test=opts.test, color=sys.stdout.isatty()))
    bad = [r.host for r in reports if not r.ok]
    if bad:
        raise Exit(f"deploy failed on: {', '.join(bad)}", code=1)


def _preflight(hosts, options) -> None:
    """Cloudflare and TLS settings checked, and the token found, before any connection."""
    try:
        deploying.preflight(hosts, options.get("cloudflare_token_file"))
    except (edge.EdgeConfigError, cloudflare.CloudflareError) as exc:
        raise Exit(f"error: {exc}", code=2)


_TOKEN_HELP = (f"file (mode 0600) holding the Cloudflare API token; else ${cloudflare.TOKEN_ENV} "
               "(needed for hosts with cloudflare_zone)")


@task(post=[_run_deploy], iterable=["set"],
      help={"dry_run": "show what would change (with diffs) and change nothing",
            "cloudflare_token_file": _TOKEN_HELP,
            "group": "deploy every host of this inventory group (with or instead of -H)",
            "json": "print the outcome as JSON (every state of every host) instead of the summary",
            "password_file": f"file (mode 0600) holding the Jupyter password; else ${passwords.ENV_VAR} or a prompt",
            "inventory": "inventory file (default: $JUPYTERFAB_INVENTORY or hosts.yaml)",
            "set": "override a variable for this run: --set key=value (repeatable)"})
def deploy(c, dry_run=False, password_file=None, inventory=None, set=None, group=None, json=False,
           cloudflare_token_file=None):
    """Deploy Jupyter behind NGINX to the hosts (in parallel), changing only what differs.

    With cloudflare_zone set, also Cloudflare: the origin certificate, the lockdown to
    Cloudflare's ranges, the zone's TLS settings and the DNS record (see fab --help cloudflare).
    """
    _collect("deploy", c, dry_run=dry_run, password_file=password_file,
             inventory=inventory, set=set, group=group, json=json,
             cloudflare_token_file=cloudflare_token_file)


@task
@_one_line_errors
def _run_cloudflare(c):
    options, targets = _pending.pop("cloudflare")
    hosts = _selected_hosts(options, targets)
    _preflight(hosts, options)
    missing = [h.name for h in hosts if not h.vars.get("cloudflare_zone")]
    if missing:
        raise Exit(f"error: no cloudflare_zone for {', '.join(missing)} (set it in hosts.yaml "
                   f"or with --set cloudflare_zone=example.com)", code=2)
    reports = deploying.cloudflare_hosts(hosts, dry_run=options["dry_run"],
                                         token_file=options.get("cloudflare_token_file"))
    print(deploying.render_reports(reports, test=options["dry_run"], color=sys.stdout.isatty()))
    bad = [r.host for r in reports if not r.ok]
    if bad:
        raise Exit(f"cloudflare failed on: {', '.join(bad)}", code=1)


@task(post=[_run_cloudflare], iterable=["set"],
      help={"dry_run": "show what would change on Cloudflare and change nothing",
            "cloudflare_token_file": _TOKEN_HELP,
            "group": "every host of this inventory group (with or instead of -H)",
            "inventory": "inventory file (default: $JUPYTERFAB_INVENTORY or hosts.yaml)",
            "set": "override a variable for this run: --set key=value (repeatable)"})
def cloudflare_(c, dry_run=False, inventory=None, set=None, group=None, cloudflare_token_file=None):
    """Cloudflare only: the hosts' DNS records and the zone's TLS settings (no host changes).

    A (and AAAA, when the host has IPv6) record for server_name, proxied unless
    cloudflare_proxied is false; ssl=strict, Always Use HTTPS, TLS 1.2 minimum,
    WebSockets on. Each is written only when it differs. deploy does this too, after
    the origin serves a certificate that Full (strict) accepts.
    """
    _collect("cloudflare", c, dry_run=dry_run, inventory=inventory, set=set, group=group,
             cloudflare_token_file=cloudflare_token_file)


# --- day-2 tasks: quick, one or two commands per host, never the state tree ---------

def _day2(name: str, make_action):
    options, targets = _pending.pop(name)
    hosts = _selected_hosts(options, targets)
    _report_outcomes(name, day2.on_hosts(hosts, make_action(options)))


def _report_outcomes(name: str, outcomes, *, quiet: bool = False) -> None:
    """A line (or a block) per host, then the exit code for all of them."""
    for o in [] if quiet else outcomes:
        verdict = "ok" if o.ok else "FAILED"
        print(f"== {o.host}: {verdict}\n{o.text}" if "\n" in o.text else f"{o.host}: {verdict}: {o.text}")
    bad = [o.host for o in outcomes if not o.ok]
    if bad:
        raise Exit(f"{name} failed on: {', '.join(bad)}", code=1)


_INVENTORY_HELP = {"inventory": "inventory file (default: $JUPYTERFAB_INVENTORY or hosts.yaml)"}


@task
@_one_line_errors
def _run_restart(c):
    _day2("restart", lambda o: day2.control("restart"))


@task
@_one_line_errors
def _run_stop(c):
    _day2("stop", lambda o: day2.control("stop"))


@task
@_one_line_errors
def _run_start(c):
    _day2("start", lambda o: day2.control("start"))


@task
@_one_line_errors
def _run_status(c):
    _day2("status", lambda o: lambda h, r: day2.status(h, r, lines=_count(o["lines"], "lines")))


@task
@_one_line_errors
def _run_logs(c):
    if "logs" not in _pending:      # --follow has streamed it already
        return
    _day2("logs", lambda o: lambda h, r: day2.logs(h, r, lines=_count(o["lines"], "lines")))


@task(post=[_run_restart], help=_INVENTORY_HELP)
def restart(c, inventory=None):
    """Restart Jupyter on the hosts; returns once it answers again."""
    _collect("restart", c, inventory=inventory)


@task(post=[_run_stop], help=_INVENTORY_HELP)
def stop(c, inventory=None):
    """Stop Jupyter on the hosts (NGINX stays up and answers 502)."""
    _collect("stop", c, inventory=inventory)


@task(post=[_run_start], help=_INVENTORY_HELP)
def start(c, inventory=None):
    """Start Jupyter on the hosts; returns once it answers."""
    _collect("start", c, inventory=inventory)


@task(post=[_run_status], help={**_INVENTORY_HELP, "lines": "how many log lines to show (default 5)"})
def status(c, inventory=None, lines="5"):
    """Service state, uptime, Jupyter version, URL and the last log lines."""
    _collect("status", c, inventory=inventory, lines=lines)


@task(post=[_run_logs], help={**_INVENTORY_HELP, "lines": "how many lines (default 50)",
                              "follow": "keep printing new lines (one host only)"})
def logs(c, inventory=None, lines="50", follow=False):
    """Jupyter's log (the journal, or Upstart's log file); --follow streams it."""
    if follow:
        [host] = _selected_hosts({"inventory": inventory}, [_target(c)])
        _pending.pop("logs", None)
        refused = day2.follow_logs(host, _count(lines, "lines"))
        if refused is not None:
            raise Exit(f"{refused.host}: FAILED: {refused.text}", code=1)
        return
    _collect("logs", c, inventory=inventory, lines=lines)


@task
@_one_line_errors
def _run_rotate_password(c):
    options = _pending["rotate-password"][0]
    try:
        password = passwords.from_sources(options.get("password_file"), prompt=sys.stdin.isatty())
    except passwords.PasswordError as exc:
        raise Exit(f"error: {exc}", code=2)
    if password is None:
        raise Exit(f"error: give the new password with --password-file, ${passwords.ENV_VAR} "
                   "or at the prompt", code=2)
    chooser = passwords.HashChooser(password)
    _day2("rotate-password", lambda o: day2.rotate_password(deploying.CONFIG_FILE, chooser))


@task(name="rotate-password", post=[_run_rotate_password],
      help={**_INVENTORY_HELP,
            "password_file": f"file (mode 0600) with the new password; else ${passwords.ENV_VAR} or a prompt (asked twice)"})
def rotate_password(c, inventory=None, password_file=None):
    """Set a new Jupyter password: only the config's hash changes, then one restart."""
    _collect("rotate-password", c, inventory=inventory, password_file=password_file)


@task
@_one_line_errors
def _run_backup(c):
    options = _pending["backup"][0]
    dest = Path(options.get("dest") or PROJECT / "backups")
    _day2("backup", lambda o: day2.backup(dest, time.strftime("%Y%m%d-%H%M%S")))


@task
@_one_line_errors
def _run_restore(c):
    options = _pending["restore"][0]
    archive = Path(options["archive"])
    if not archive.is_file():
        raise Exit(f"error: no backup at {archive}", code=2)
    _day2("restore", lambda o: day2.restore(archive))


@task(post=[_run_backup], help={**_INVENTORY_HELP, "dest": "folder for the tarballs (default: backups/)"})
def backup(c, inventory=None, dest=None):
    """Tarball of the notebook directory, pulled here with a sha256 checked on arrival."""
    _collect("backup", c, inventory=inventory, dest=dest)


@task(post=[_run_restore], help={**_INVENTORY_HELP, "archive": "a tarball made by backup"})
def restore(c, archive, inventory=None):
    """Put a backup's notebooks back (checksum verified; other files are left alone)."""
    _collect("restore", c, inventory=inventory, archive=archive)


@task
@_one_line_errors
def _run_upgrade(c):
    from jupyterfab import upgrade as upgrading
    options, targets = _pending.pop("upgrade")
    hosts = _selected_hosts(options, targets)   # validated before any connection
    try:
        upgrading.normalize_spec(options.get("jupyterlab"))
    except upgrading.UpgradeError as exc:
        raise Exit(f"error: {exc}", code=2)
    opts = upgrading.Options(spec=options.get("jupyterlab"), test=options["dry_run"],
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    outcomes = day2.on_hosts(hosts, lambda h, r: upgrading.upgrade_host(h, r, opts))
    if options.get("json"):
        print(upgrading.reports_json(outcomes, test=opts.test))
    _report_outcomes("upgrade", outcomes, quiet=bool(options.get("json")))


@task(post=[_run_upgrade], iterable=["set"],
      help={"jupyterlab": "version or pip specifier to upgrade to, e.g. 4.6.6 or '==4.5.*' "
                          "(default: the newest on the index or in the wheelhouse)",
            "dry_run": "say which version each host would go from and to; change nothing",
            "group": "upgrade every host of this inventory group (with or instead of -H)",
            "json": "print the outcome as JSON (one object per host) instead of lines",
            **_INVENTORY_HELP,
            "set": "override a variable for this run: --set key=value (repeatable)"})
def upgrade(c, jupyterlab=None, dry_run=False, inventory=None, set=None, group=None, json=False):
    """Newer JupyterLab in a new environment, switched in at once; back to the old one if it fails to serve."""
    _collect("upgrade", c, jupyterlab=jupyterlab, dry_run=dry_run, inventory=inventory,
             set=set, group=group, json=json)


# Listed explicitly so that `fab --list` shows the tasks, not the post-task helpers.
ns = Collection(deploy, restart, stop, start, status, logs, rotate_password, backup, restore, upgrade)
ns.add_task(cloudflare_, name="cloudflare")
