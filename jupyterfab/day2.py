"""Ad-hoc tasks on deployed hosts: quick, one or two commands each, never the state tree."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Callable
from pathlib import Path

from . import acme, edge, initsys, passwords, provider
from .fleet import HostResult, outcome
from .initsys import Found, Unsupported
from .inventory import Host
from .runner import HostUnreachable, Runner, open_runner
from .shell import chain, cmd

SERVICE = "jupyter"


def host_init(host: Host, runner: Runner, refused: str = "it changed nothing on this host") -> Found:
    """The host's init (asked as the deploy asks) and its adapter; Unsupported for neither."""
    r = runner.run(initsys.probe_command(SERVICE), timeout=30)
    return initsys.supported(host.name, initsys.parse(r.stdout, SERVICE), refused, r.stderr)


def _refusing(refused: str, action: Callable[[Host, Runner, Found], HostResult]
              ) -> Callable[[Host, Runner], HostResult]:
    """``action`` with the host's init; a host with neither is one failed outcome."""
    def run(host: Host, runner: Runner) -> HostResult:
        try:
            found = host_init(host, runner, refused)
        except Unsupported as exc:
            return outcome(host.name, False, str(exc))
        return action(host, runner, found)
    return run


def env_dir(host: Host) -> str:
    return provider.env_dir(host.vars)


def public_url(host: Host) -> str:
    """The URL users open: https:// once the host has TLS (Cloudflare or its own certificate)."""
    if host.vars.get("public_url"):
        return host.vars["public_url"]
    try:
        tls = edge.plan_for(host.name, host.vars).tls != "off"
    except edge.EdgeConfigError:
        tls = False
    return f"{'https' if tls else 'http'}://{host.vars['server_name']}"


def _acme_name(host: Host) -> str | None:
    """server_name when the host's certificate is certbot's (tls: acme), else None."""
    try:
        plan = edge.plan_for(host.name, host.vars)
    except edge.EdgeConfigError:
        return None
    return plan.hostname if plan.tls == "acme" else None


def control(action: str) -> Callable[[Host, Runner], HostResult]:
    """start, stop or restart the service; start and restart return once it answers
    (the unit's ExecStartPost, the Upstart job's post-start: at most 90 s)."""
    def run(host: Host, runner: Runner, found: Found) -> HostResult:
        done = runner.run(found.system.control(action, SERVICE, found.job), timeout=150)
        return outcome(host.name, *found.system.control_verdict(action, SERVICE, done))
    return _refusing("it changed nothing on this host", run)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def status(host: Host, runner: Runner, lines: int = 5) -> HostResult:
    def run(host: Host, runner: Runner, found: Found) -> HostResult:
        certificate = _acme_name(host)
        now, said = found.system.status(runner, SERVICE, found.job, [
            ("version", cmd(f"{env_dir(host)}/bin/jupyter-server", "--version")),
            *(acme.state_commands(certificate) if certificate else []),
            ("log", found.system.log(SERVICE, lines))])
        version = (said.get("version") or ["not installed"])[0]
        up = _duration(now.uptime_seconds) if now.uptime_seconds is not None else "-"
        return outcome(host.name, now.running, "\n".join([
            f"service:  {SERVICE} {now.state}, pid {now.pid}, restarts {now.restarts}",
            f"uptime:   {up} (since {now.since})",
            f"jupyter:  Jupyter Server {version}",
            f"url:      {public_url(host)}",
            *([f"certificate: {acme.parse_state(said, certificate).describe()}"] if certificate else []),
            "log:", *[f"  {line}" for line in said.get("log", [])]]))
    return _refusing(f"there is no {SERVICE} service to report on", run)(host, runner)


def logs(host: Host, runner: Runner, lines: int = 50) -> HostResult:
    def run(host: Host, runner: Runner, found: Found) -> HostResult:
        r = runner.run(found.system.log(SERVICE, lines), timeout=60)
        return outcome(host.name, r.ok, r.stdout.rstrip() or r.stderr.strip())
    return _refusing(f"there is no {SERVICE} log to show", run)(host, runner)


def follow_logs(host: Host, lines: int) -> HostResult | None:
    """``fab logs --follow``: streams the log on a terminal until interrupted; an
    HostResult only when it cannot (unreachable, neither init)."""
    runner = None
    try:
        runner = open_runner(host)
        found = host_init(host, runner, f"there is no {SERVICE} log to follow")
        text = found.system.log(SERVICE, lines, follow=True).text
        # The journal is readable as the SSH user (as before); Upstart's log is root's.
        if found.system.log_needs_root and runner.sudo:
            text = f"sudo -n -- {text}"
        runner.connection.run(text, pty=True, warn=True)
        return None
    except (HostUnreachable, Unsupported) as exc:
        return outcome(host.name, False, f"unreachable: {exc}" if isinstance(exc, HostUnreachable)
                       else str(exc))
    finally:
        if runner is not None:
            runner.close()


HASH_LINE = re.compile(r'^c\.PasswordIdentityProvider\.hashed_password = "(argon2:[^"]*)"$', re.M)
# Where the deployed config keeps the cookie secret (files/jupyter/jupyter_server_config.py.j2).
COOKIE_SECRET_LINE = re.compile(r'^c\.ServerApp\.cookie_secret_file = "([^"]+)"$', re.M)
SWAPPED_MARK = "==swapped=="


def rotate_password(config_file: str, hashes: passwords.HashChooser):
    """Only the config file's hash line changes, atomically; the cookie secret goes;
    then one restart.

    Every session ends: Jupyter Server signs its cookies with a key derived from
    the cookie secret *and* the password hash, and both change here (the server
    makes a new secret when it starts without one). The password never leaves this
    machine: the host gets the new file's content (with the hash) on stdin. The
    outcome tells "the swap failed" (old password still works) from "the new
    password is in place but the restart failed".
    """
    def run(host: Host, runner: Runner) -> HostResult:
        # One read: the init system (for the restart) and the config file.
        r = runner.run(chain(initsys.probe_command(SERVICE), cmd("echo", CONFIG_MARK),
                             cmd("cat", "--", config_file), op=";"), timeout=30)
        probed, mark, current = r.stdout.partition(f"{CONFIG_MARK}\n")
        try:
            found = initsys.supported(host.name, initsys.parse(probed, SERVICE),
                                      "it changed nothing on this host", r.stderr)
        except Unsupported as exc:
            return outcome(host.name, False, str(exc))
        match = HASH_LINE.search(current) if r.ok and mark else None
        if not match:
            return outcome(host.name, False, f"{config_file} has no password hash: deploy first")
        new_hash = hashes(match.group(1))
        if new_hash == match.group(1):
            return outcome(host.name, True, "the password is already this one: nothing changed")
        content = HASH_LINE.sub(lambda m: m.group(0).replace(m.group(1), new_hash), current, count=1)
        tmp = posixpath.join(posixpath.dirname(config_file), f".{posixpath.basename(config_file)}.rotate")
        secret = COOKIE_SECRET_LINE.search(current)
        write = chain(cmd("sh", "-c", 'umask 077 && cat > "$1"', "sh", tmp),
                      cmd("chown", "--reference", config_file, "--", tmp),
                      cmd("chmod", "--reference", config_file, "--", tmp),
                      cmd("mv", "-f", "--", tmp, config_file),
                      cmd("echo", SWAPPED_MARK),
                      *([cmd("rm", "-f", "--", secret.group(1))] if secret else []),
                      found.system.restart(SERVICE, found.job))
        w = runner.run(write, stdin=content.encode(), timeout=150)
        if SWAPPED_MARK not in w.stdout:
            runner.run(cmd("rm", "-f", "--", tmp))
            return outcome(host.name, False, f"rotating the password failed, the old one still "
                                            f"works: {w.stderr.strip()}")
        if not w.ok:
            return outcome(host.name, False, f"new password hash in {config_file}, but restarting "
                                            f"{SERVICE} failed (it serves with the new password once it "
                                            f"starts): {w.stderr.strip()}")
        return outcome(host.name, True, f"new password hash in {config_file}; {SERVICE} restarted, "
                                       "every earlier session ended")
    return run


CONFIG_MARK = "==config=="


def notebook_dir(host: Host) -> str:
    return host.vars["notebook_dir"]


# $1 the notebook dir, $2 the SSH user (SFTP reads as them). The archive is private
# from its first byte (umask 077, a mktemp name) and removed on any way out but
# success: a failed tar, a lost connection (HUP), a signal. On success its sha256
# and path are printed, and the controller removes it once fetched.
BACKUP_SCRIPT = r"""umask 077
t=$(mktemp /var/tmp/jupyterfab-backup.XXXXXXXX) || exit 1
trap 'rm -f -- "$t"' EXIT HUP INT TERM
tar -C "$1" -czf "$t" . && chown -- "$2" "$t" && sha256sum -- "$t" && trap - EXIT HUP INT TERM
"""


def write_private(path: Path, data: bytes) -> None:
    """``data`` in ``path``, readable by its owner only from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)      # an existing file keeps its mode otherwise
        f.write(data)


def backup(dest_dir: Path, stamp: str):
    """A tarball of the notebook directory, made on the host, checked on arrival.
    Notebooks are private: the folder is 0700, the archive and its .sha256 0600."""
    def run(host: Host, runner) -> HostResult:
        r = runner.run(cmd("sh", "-c", BACKUP_SCRIPT, "sh", notebook_dir(host), host.user), timeout=3600)
        expected, _, remote = r.stdout.strip().partition("  ")
        if not r.ok or not remote:
            return outcome(host.name, False, f"backup failed: {r.stderr.strip()}")
        try:
            data = runner.get(remote)
        finally:
            runner.run(cmd("rm", "-f", "--", remote))
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            return outcome(host.name, False, f"backup corrupted in transit: sha256 {got} != {expected}")
        dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest_dir.chmod(0o700)
        archive = dest_dir / f"{host.name}-notebooks-{stamp}.tar.gz"
        write_private(archive, data)
        write_private(archive.with_name(archive.name + ".sha256"), f"{got}  {archive.name}\n".encode())
        return outcome(host.name, True, f"{archive} ({len(data)} bytes, sha256 {got[:16]}...)")
    return run


def restore(archive: Path):
    """Put a backup's notebooks back; files not in the backup are left alone."""
    def run(host: Host, runner) -> HostResult:
        data = archive.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        sidecar = archive.with_name(archive.name + ".sha256")
        if sidecar.exists() and sidecar.read_text().split()[0] != digest:
            return outcome(host.name, False, f"{archive} does not match {sidecar.name}: not restoring")
        user = host.vars["jupyter_user"]
        # Checked on the host before a single file is written, then unpacked as the
        # notebook user, so every restored file is theirs.
        script = ('set -e; t=$(mktemp /var/tmp/jupyterfab-restore.XXXXXX); trap \'rm -f "$t"\' EXIT; '
                  'cat > "$t"; echo "$2  $t" | sha256sum -c --quiet; '
                  'runuser -u "$3" -- tar -xzf - -C "$1" < "$t"')
        r = runner.run(cmd("sh", "-c", script, "sh", notebook_dir(host), digest, user),
                       stdin=data, timeout=3600)
        if not r.ok:
            return outcome(host.name, False, f"restore failed: {(r.stderr or r.stdout).strip()}")
        return outcome(host.name, True, f"restored {archive.name} into {notebook_dir(host)}")
    return run
