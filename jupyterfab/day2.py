"""Ad-hoc tasks on deployed hosts: quick, one or two commands each, never the state tree."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable
from pathlib import Path

from . import edge, initsys, passwords, provider
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
        now, said = found.system.status(runner, SERVICE, found.job, [
            ("version", cmd(f"{env_dir(host)}/bin/jupyter-server", "--version")),
            ("log", found.system.log(SERVICE, lines))])
        version = (said.get("version") or ["not installed"])[0]
        up = _duration(now.uptime_seconds) if now.uptime_seconds is not None else "-"
        return outcome(host.name, now.running, "\n".join([
            f"service:  {SERVICE} {now.state}, pid {now.pid}, restarts {now.restarts}",
            f"uptime:   {up} (since {now.since})",
            f"jupyter:  Jupyter Server {version}",
            f"url:      {public_url(host)}",
            "log:", *[f"  {line}" for line in said.get("log", [])]]))
    return _refusing(f"there is no {SERVICE} service to report on", run)(host, runner)


def logs(host: Host, runner: Runner, lines: int = 50) -> HostResult:
    def run(host: Host, runner: Runner, found: Found) -> HostResult:
        r = runner.run(found.system.log(SERVICE, lines), timeout=60)
        return outcome(host.name, r.ok, r.stdout.rstrip() or r.stderr.strip())
    return _refusing(f"there is no {SERVICE} log to show", run)(host, runner)


def follow_logs(host: Host, lines: int) -> HostResult | None:
    """``fab logs --follow``: streams the log on a terminal until interrupted; an
    Outcome only when it cannot (unreachable, neither init)."""
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


def rotate_password(config_file: str, hashes: passwords.HashChooser):
    """Only the config file's hash line changes, atomically, then one restart.

    The password never leaves this machine: the host gets the new file's content
    (with the hash) on stdin.
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
        write = chain(cmd("sh", "-c", 'umask 077 && cat > "$1"', "sh", tmp),
                      cmd("chown", "--reference", config_file, "--", tmp),
                      cmd("chmod", "--reference", config_file, "--", tmp),
                      cmd("mv", "-f", "--", tmp, config_file),
                      found.system.restart(SERVICE, found.job))
        w = runner.run(write, stdin=content.encode(), timeout=150)
        if not w.ok:
            runner.run(cmd("rm", "-f", "--", tmp))
            return outcome(host.name, False, f"rotating the password failed: {w.stderr.strip()}")
        return outcome(host.name, True, f"new password hash in {config_file}; {SERVICE} restarted")
    return run


CONFIG_MARK = "==config=="


def notebook_dir(host: Host) -> str:
    return host.vars["notebook_dir"]


def backup(dest_dir: Path, stamp: str):
    """A tarball of the notebook directory, made on the host, checked on arrival."""
    def run(host: Host, runner) -> HostResult:
        remote = f"/var/tmp/jupyterfab-backup-{stamp}.tar.gz"
        make = chain(cmd("tar", "-C", notebook_dir(host), "-czf", remote, "."),
                     cmd("chown", host.user, "--", remote),     # SFTP reads as the SSH user
                     cmd("sha256sum", "--", remote))
        r = runner.run(make, timeout=3600)
        if not r.ok:
            return outcome(host.name, False, f"backup failed: {r.stderr.strip()}")
        expected = r.stdout.split()[0]
        try:
            data = runner.get(remote)
        finally:
            runner.run(cmd("rm", "-f", "--", remote))
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            return outcome(host.name, False, f"backup corrupted in transit: sha256 {got} != {expected}")
        dest_dir.mkdir(parents=True, exist_ok=True)
        archive = dest_dir / f"{host.name}-notebooks-{stamp}.tar.gz"
        archive.write_bytes(data)
        archive.with_name(archive.name + ".sha256").write_text(f"{got}  {archive.name}\n")
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
