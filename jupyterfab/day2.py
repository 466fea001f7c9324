"""Ad-hoc tasks on deployed hosts: quick, one or two commands each, never the state tree."""

from __future__ import annotations

import hashlib
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import passwords, provider
from .inventory import Host
from .runner import HostUnreachable, Runner, open_runner
from .shell import chain, cmd

SERVICE = "jupyter"


@dataclass
class Outcome:
    host: str
    ok: bool
    text: str


def env_dir(host: Host) -> str:
    return provider.env_dir(host.vars)


def public_url(host: Host) -> str:
    """The URL users open: https:// once the host has TLS (Cloudflare or its own certificate)."""
    from . import edge
    from .inventory import VAR_DEFAULTS
    if host.vars.get("public_url"):
        return host.vars["public_url"]
    try:
        tls = edge.plan_for(host.name, {**VAR_DEFAULTS, **host.vars}).tls != "off"
    except edge.EdgeConfigError:
        tls = False
    return f"{'https' if tls else 'http'}://{host.vars['server_name']}"


def control(action: str) -> Callable[[Host, Runner], Outcome]:
    """start, stop or restart the service; start and restart return once it answers."""
    def run(host: Host, runner: Runner) -> Outcome:
        r = runner.run(chain(cmd("systemctl", action, "--", SERVICE),
                             cmd("systemctl", "is-active", "--", SERVICE), op=";"), timeout=120)
        state = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "unknown"
        wanted = "inactive" if action == "stop" else "active"
        ok = state == wanted
        return Outcome(host.name, ok, f"{action}: {SERVICE} is {state}"
                       + ("" if ok else f"\n{r.stderr.strip()}"))
    return run


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def parse_sections(stdout: str) -> dict[str, list[str]]:
    """``==name==`` marker lines split one command's output into sections (pure)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("==") and line.endswith("==") and len(line) > 4:
            current = sections.setdefault(line.strip("="), [])
        elif current is not None:
            current.append(line)
    return sections


def status(host: Host, runner: Runner, lines: int = 5) -> Outcome:
    r = runner.run(chain(
        cmd("echo", "==props=="),
        cmd("systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
            "-p", "ActiveEnterTimestamp", "-p", "ActiveEnterTimestampMonotonic",
            "-p", "NRestarts", "--", SERVICE),
        cmd("echo", "==uptime=="),
        cmd("cat", "/proc/uptime"),
        cmd("echo", "==version=="),
        cmd(f"{env_dir(host)}/bin/jupyter-server", "--version"),
        cmd("echo", "==log=="),
        cmd("journalctl", "-u", SERVICE, "-n", lines, "--no-pager", "-o", "short-iso"),
        op=";"), timeout=60)
    sections = parse_sections(r.stdout)
    props = dict(line.split("=", 1) for line in sections.get("props", []) if "=" in line)
    version = (sections.get("version") or ["not installed"])[0]
    up = "-"
    if props.get("ActiveState") == "active" and sections.get("uptime"):
        seconds = float(sections["uptime"][0].split()[0]) - int(props["ActiveEnterTimestampMonotonic"]) / 1e6
        up = _duration(seconds)
    text = "\n".join([
        f"service:  {SERVICE} {props.get('ActiveState', '?')} ({props.get('SubState', '?')}), "
        f"pid {props.get('MainPID', '?')}, restarts {props.get('NRestarts', '?')}",
        f"uptime:   {up} (since {props.get('ActiveEnterTimestamp') or '-'})",
        f"jupyter:  Jupyter Server {version}",
        f"url:      {public_url(host)}",
        "log:", *[f"  {line}" for line in sections.get("log", [])],
    ])
    return Outcome(host.name, props.get("ActiveState") == "active", text)


def logs(host: Host, runner: Runner, lines: int = 50) -> Outcome:
    r = runner.run(cmd("journalctl", "-u", SERVICE, "-n", lines, "--no-pager", "-o", "short-iso"),
                   timeout=60)
    return Outcome(host.name, r.ok, r.stdout.rstrip() or r.stderr.strip())


def on_hosts(hosts: list[Host], action: Callable[[Host, Runner], Outcome],
             max_parallel: int = 8) -> list[Outcome]:
    """``action`` on every host in parallel; an unreachable host is one failed outcome."""
    def one(host: Host) -> Outcome:
        runner = None
        try:
            runner = open_runner(host)
            return action(host, runner)
        except HostUnreachable as exc:
            return Outcome(host.name, False, f"unreachable: {exc}")
        finally:
            if runner is not None:
                runner.close()

    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(hosts)))) as pool:
        return list(pool.map(one, hosts))


HASH_LINE = re.compile(r'^c\.PasswordIdentityProvider\.hashed_password = "(argon2:[^"]*)"$', re.M)


def rotate_password(config_file: str, hashes: "passwords.HashChooser"):
    """Only the config file's hash line changes, atomically, then one restart.

    The password never leaves this machine: the host gets the new file's content
    (with the hash) on stdin.
    """
    def run(host: Host, runner: Runner) -> Outcome:
        r = runner.run(cmd("cat", "--", config_file), timeout=30)
        match = HASH_LINE.search(r.stdout) if r.ok else None
        if not match:
            return Outcome(host.name, False, f"{config_file} has no password hash: deploy first")
        new_hash = hashes(match.group(1))
        if new_hash == match.group(1):
            return Outcome(host.name, True, "the password is already this one: nothing changed")
        content = HASH_LINE.sub(lambda m: m.group(0).replace(m.group(1), new_hash), r.stdout, count=1)
        tmp = posixpath.join(posixpath.dirname(config_file), f".{posixpath.basename(config_file)}.rotate")
        write = chain(cmd("sh", "-c", 'umask 077 && cat > "$1"', "sh", tmp),
                      cmd("chown", "--reference", config_file, "--", tmp),
                      cmd("chmod", "--reference", config_file, "--", tmp),
                      cmd("mv", "-f", "--", tmp, config_file),
                      cmd("systemctl", "restart", "--", SERVICE))
        w = runner.run(write, stdin=content.encode(), timeout=120)
        if not w.ok:
            runner.run(cmd("rm", "-f", "--", tmp))
            return Outcome(host.name, False, f"rotating the password failed: {w.stderr.strip()}")
        return Outcome(host.name, True, f"new password hash in {config_file}; {SERVICE} restarted")
    return run


def notebook_dir(host: Host) -> str:
    return host.vars["notebook_dir"]


def backup(dest_dir: Path, stamp: str):
    """A tarball of the notebook directory, made on the host, checked on arrival."""
    def run(host: Host, runner) -> Outcome:
        remote = f"/var/tmp/jupyterfab-backup-{stamp}.tar.gz"
        make = chain(cmd("tar", "-C", notebook_dir(host), "-czf", remote, "."),
                     cmd("chown", host.user, "--", remote),     # SFTP reads as the SSH user
                     cmd("sha256sum", "--", remote))
        r = runner.run(make, timeout=3600)
        if not r.ok:
            return Outcome(host.name, False, f"backup failed: {r.stderr.strip()}")
        expected = r.stdout.split()[0]
        try:
            data = runner.get(remote)
        finally:
            runner.run(cmd("rm", "-f", "--", remote))
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            return Outcome(host.name, False, f"backup corrupted in transit: sha256 {got} != {expected}")
        dest_dir.mkdir(parents=True, exist_ok=True)
        archive = dest_dir / f"{host.name}-notebooks-{stamp}.tar.gz"
        archive.write_bytes(data)
        archive.with_name(archive.name + ".sha256").write_text(f"{got}  {archive.name}\n")
        return Outcome(host.name, True, f"{archive} ({len(data)} bytes, sha256 {got[:16]}...)")
    return run


def restore(archive: Path):
    """Put a backup's notebooks back; files not in the backup are left alone."""
    def run(host: Host, runner) -> Outcome:
        data = archive.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        sidecar = archive.with_name(archive.name + ".sha256")
        if sidecar.exists() and sidecar.read_text().split()[0] != digest:
            return Outcome(host.name, False, f"{archive} does not match {sidecar.name}: not restoring")
        user = host.vars["jupyter_user"]
        # Checked on the host before a single file is written, then unpacked as the
        # notebook user, so every restored file is theirs.
        script = ('set -e; t=$(mktemp /var/tmp/jupyterfab-restore.XXXXXX); trap \'rm -f "$t"\' EXIT; '
                  'cat > "$t"; echo "$2  $t" | sha256sum -c --quiet; '
                  'runuser -u "$3" -- tar -xzf - -C "$1" < "$t"')
        r = runner.run(cmd("sh", "-c", script, "sh", notebook_dir(host), digest, user),
                       stdin=data, timeout=3600)
        if not r.ok:
            return Outcome(host.name, False, f"restore failed: {(r.stderr or r.stdout).strip()}")
        return Outcome(host.name, True, f"restored {archive.name} into {notebook_dir(host)}")
    return run
