"""Ad-hoc tasks on deployed hosts: quick, one or two commands each, never the state tree."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from jupyterfab.engine import initsys
from jupyterfab.engine.fleet import HostResult, outcome
from jupyterfab.engine.initsys import Found, Unsupported
from jupyterfab.engine.runner import HostUnreachable, Runner, open_runner
from jupyterfab.engine.shell import Command, chain, cmd, nofollow, nofollow_run
from jupyterfab.inventory import Host, schema
from jupyterfab.stack import passwords, serving
from jupyterfab.stack.envs import provider
from jupyterfab.stack.front import acme, tlsplan
from jupyterfab.stack.jupyter_versions import InstalledVersions, parse_versions

SERVICE = "jupyter"


# JupyterLab's language-server extension logs one ~300-character line at every start
# ("Skipped non-installed server(s): bash-language-server, ..."): noise in status and logs.
CHATTER = ("Skipped non-installed server(s)",)


def without_chatter(lines: list[str]) -> list[str]:
    return [line for line in lines if not any(noise in line for noise in CHATTER)]


# Asked of the log beyond what is shown, so that the last N lines are N once the
# chatter is filtered out (JupyterLab says it once per start).
CHATTER_MARGIN = 20


def last_lines(lines: list[str], count: int) -> list[str]:
    kept = without_chatter(lines)
    return kept[-count:] if count > 0 else []


class ChatterFilter:
    """A stream that passes whole lines to ``sink``, less the chatter, each after
    ``prefix``: what ``logs --follow`` prints. ``lock``: shared by the streams of
    several hosts writing to one sink, so that their lines never interleave."""

    def __init__(self, sink, prefix: str = "", lock: threading.Lock | None = None):
        self.sink, self.prefix, self.partial = sink, prefix, ""
        self.lock = lock or threading.Lock()

    def write(self, text: str) -> None:
        *complete, self.partial = (self.partial + text).split("\n")
        with self.lock:
            for line in without_chatter(complete):
                self.sink.write(self.prefix + line + "\n")
            self.sink.flush()

    def flush(self) -> None:
        self.sink.flush()


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


DISK_WARNING = 0.10      # fab status warns when a filesystem has less free than this


def usage_commands(host: Host, found: Found) -> list[tuple[str, Command]]:
    """status's sections on what Jupyter uses: the notebook user's processes (the
    kernels among them: pid, resident memory, age), the service's memory against its
    limit (systemd), and free disk for the home and the prefix."""
    user, memory = host.vars["jupyter_user"], found.system.memory_command(SERVICE)
    return [("kernels", cmd("ps", "-u", user, "-o", "pid=,rss=,etimes=,args=")),
            *([("memory", memory)] if memory else []),
            *((f"disk:{path}", cmd("df", "-P", "-B1", path))
              for path in (schema.home_dir(user), host.vars["prefix"]))]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def usage_lines(said: dict[str, list[str]]) -> tuple[list[str], bool]:
    """The kernels, memory against the limit, and disk lines of ``fab status``, and
    whether a disk is under DISK_WARNING free (pure)."""
    kernels, total_rss = [], 0
    for line in said.get("kernels", []):
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[1].isdigit():
            continue
        total_rss += int(parts[1]) * 1024
        if "ipykernel_launcher" in parts[3]:
            kernels.append((parts[0], int(parts[1]) * 1024, int(parts[2]) if parts[2].isdigit() else 0))
    out = [f"kernels:  {len(kernels)} running"
           + "".join(f"\n  pid {pid}: {_size(rss)} resident, up {_duration(age)}" for pid, rss, age in kernels)]
    props = dict(line.split("=", 1) for line in said.get("memory", []) if "=" in line)
    current, limit = props.get("MemoryCurrent", ""), props.get("MemoryMax", "")
    used = int(current) if current.isdigit() else total_rss
    if limit.isdigit() and int(limit) < 1 << 60:
        out.append(f"memory:   {_size(used)} of {_size(int(limit))} (MemoryMax, {used / int(limit):.0%})")
    else:
        out.append(f"memory:   {_size(used)} (no memory limit)")
    low = False
    for name, lines in said.items():
        fields = lines[-1].split() if name.startswith("disk:") and len(lines) > 1 else []
        if len(fields) < 6 or not fields[1].isdigit() or not fields[3].isdigit():
            continue
        size, avail = int(fields[1]), int(fields[3])
        share = avail / size if size else 0.0
        warn = share < DISK_WARNING
        low = low or warn
        out.append(f"disk:     {name.removeprefix('disk:')}: {_size(avail)} free of {_size(size)} "
                   f"({share:.0%})" + ("  WARNING: under 10% free" if warn else ""))
    return out, low


def status(host: Host, runner: Runner, plan: tlsplan.EdgePlan, lines: int = 5) -> HostResult:
    """``plan``: the host's Cloudflare/TLS plan as ``deploy.check_plans`` worked it out."""
    def run(host: Host, runner: Runner, found: Found) -> HostResult:
        certificate = plan.hostname if plan.tls == "acme" else None   # certbot's
        now, said = found.system.status(runner, SERVICE, found.job, [
            ("versions", InstalledVersions(provider.env_dir(host.vars)).command()),
            ("environment", cmd("readlink", "-f", "--", provider.env_dir(host.vars))),
            *(acme.state_commands(certificate) if certificate else []),
            *usage_commands(host, found),
            ("serving", serving.check_service(SERVICE, found.system.main_pid_shell)),
            ("log", found.system.log(SERVICE, lines + CHATTER_MARGIN))])
        versions = parse_versions("\n".join(said.get("versions", [])))
        answer = serving.parse("\n".join(said.get("serving", [])))
        lab, version = (versions[p] or "not installed" for p in ("jupyterlab", "jupyter_server"))
        in_use = (said.get("environment") or [provider.env_dir(host.vars)])[0]
        up = _duration(now.uptime_seconds) if now.uptime_seconds is not None else "-"
        return outcome(host.name, now.running and answer.ok, "\n".join([
            f"service:  {SERVICE} {now.state}, pid {now.pid}, restarts {now.restarts}",
            f"serving:  {'yes, ' if answer.ok else 'NO: '}{answer.why}",
            f"uptime:   {up} (since {now.since})",
            f"jupyter:  JupyterLab {lab}, Jupyter Server {version}",
            f"env:      {provider.env_dir(host.vars)}" + (f" -> {in_use}" if in_use != provider.env_dir(host.vars) else ""),
            f"url:      {tlsplan.public_url(host.vars, plan)}",
            *([f"certificate: {acme.parse_state(said, certificate).describe()}"] if certificate else []),
            *usage_lines(said)[0],
            "log:", *[f"  {line}" for line in last_lines(said.get("log", []), lines)]]))
    return _refusing(f"there is no {SERVICE} service to report on", run)(host, runner)


def logs(host: Host, runner: Runner, lines: int = 50) -> HostResult:
    def run(host: Host, runner: Runner, found: Found) -> HostResult:
        r = runner.run(found.system.log(SERVICE, lines + CHATTER_MARGIN), timeout=60)
        return outcome(host.name, r.ok, "\n".join(last_lines(r.stdout.rstrip().splitlines(), lines))
                       or r.stderr.strip())
    return _refusing(f"there is no {SERVICE} log to show", run)(host, runner)


# A pseudo-terminal makes journalctl color its lines: the colors go, the text stays.
_TERMINAL_COLOR = re.compile(r"\x1b\[[0-9;]*m")


def follow_logs(hosts: list[Host], lines: int, sink=None) -> list[HostResult]:
    """``fab logs --follow``: every host's log at once, each line after its host's name,
    until Ctrl-C (or until every stream ends); the hosts it could not follow (unreachable,
    neither init), each said on stderr when it happens while the others go on."""
    sink = sink or sys.stdout
    lock, failed, runners = threading.Lock(), [], []

    def follow(host: Host) -> None:
        out = ChatterFilter(sink, f"{host.name}: ", lock)
        try:
            runner = open_runner(host)
            runners.append(runner)
            found = host_init(host, runner, f"there is no {SERVICE} log to follow")
            for line in runner.stream(found.system.log(SERVICE, lines, follow=True)):
                out.write(_TERMINAL_COLOR.sub("", line) + "\n")
        except Exception as exc:
            if not isinstance(exc, (HostUnreachable, Unsupported)):
                failed.append(outcome(host.name, False, f"{type(exc).__name__}: {exc}"))
                raise       # a bug: its traceback, and the run fails
            if not stopping.is_set():
                failed.append(outcome(host.name, False, f"unreachable: {exc}"
                                      if isinstance(exc, HostUnreachable) else str(exc)))
                with lock:      # one write: two hosts' lines never run into each other
                    sys.stderr.write(f"{host.name}: FAILED: {failed[-1].text}\n")
                    sys.stderr.flush()

    stopping = threading.Event()
    threads = [threading.Thread(target=follow, args=(h,), daemon=True) for h in hosts]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        pass        # Ctrl-C: the end of following, not an error
    finally:
        stopping.set()
        for runner in list(runners):
            runner.close()
    order = [h.name for h in hosts]
    return sorted(failed, key=lambda r: order.index(r.host))


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
                      *([forget_secret(host.vars["jupyter_user"], secret.group(1))] if secret else []),
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


# $1 the notebook user, $2 the cookie secret. Removed by its owner: it lives in their
# home, where a link they planted would lead root's rm elsewhere. One they cannot remove
# is not theirs to lose, and the new hash ends every session all the same.
FORGET_SECRET = 'runuser -u "$1" -- rm -f -- "$2" || :'


def forget_secret(user: str, path: str) -> Command:
    return cmd("sh", "-c", FORGET_SECRET, "sh", user, path)


# $1 the SSH user (SFTP reads as them); the rest, the command that writes the archive to
# its stdout. The archive is private from its first byte (umask 077, a mktemp name) and
# removed on any way out but success: a failed tar, a lost connection (HUP), a signal.
# On success its sha256 and path are printed, and the controller removes it once fetched.
BACKUP_SCRIPT = r"""umask 077
owner=$1; shift
t=$(mktemp /var/tmp/jupyterfab-backup.XXXXXXXX) || exit 1
trap 'rm -f -- "$t"' EXIT HUP INT TERM
"$@" > "$t" && chown -- "$owner" "$t" && sha256sum -- "$t" && trap - EXIT HUP INT TERM
"""


def backup_command(notebook_dir: str, user: str, ssh_user: str) -> Command:
    """The notebook dir's tarball, read by the notebook user (what they cannot read is
    not theirs to back up) on its one file system, in the folder nofollow reached: a
    linked notebook dir (~/notebooks -> /etc/letsencrypt) is refused in one line."""
    tar = cmd("runuser", "-u", user, "--", "tar", "--one-file-system", "-czf", "-", ".")
    reader = nofollow(*nofollow_run(notebook_dir, "need", tar), verb="archiving")
    return cmd("sh", "-c", BACKUP_SCRIPT, "sh", ssh_user, *reader.parts)


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
        r = runner.run(backup_command(host.vars["notebook_dir"], host.vars["jupyter_user"], host.user),
                       timeout=3600)
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


SNAPSHOT_DIR = "/var/backups/jupyterfab"

# $1 the archive's sha256, the archive on stdin; the rest, the command that restores it
# (RESTORE_IN_DIR in the notebook dir), run with $T the checked archive. Checked on the
# host before a single file is written.
RESTORE = r"""
set -e
sum=$1; shift
t=$(mktemp /var/tmp/jupyterfab-restore.XXXXXX); trap 'rm -f "$t" "$t.names" "$t.over"' EXIT
(umask 077; : > "$t.names"; : > "$t.over")
cat > "$t"; echo "$sum  $t" | sha256sum -c --quiet
T=$t "$@"
"""

# In the notebook dir as nofollow reached it; $1 notebook user, $2 snapshot path ("": a
# dry run), $T the archive. Every file the archive would overwrite is listed
# (overwrites=) and, unless a dry run, first saved into the snapshot $2 (kept on the
# host, root's); then the archive is unpacked. Looking, saving and unpacking are the
# notebook user's: a link in the notebook dir leads them only where they may go.
RESTORE_IN_DIR = r"""
set -e
t=$T; user=$1; snap=$2
as_user() { runuser -u "$user" -- "$@"; }
tar -tzf "$t" > "$t.names"
as_user sh -c 'while IFS= read -r f; do case $f in /*) continue;; esac
    if [ -f "$f" ] && [ ! -L "$f" ]; then printf "%s\\n" "$f"; fi; done' < "$t.names" > "$t.over"
sed 's/^/overwrites=/' "$t.over"
[ -n "$snap" ] || exit 0
if [ -s "$t.over" ]; then
    mkdir -p -m 0700 "${snap%/*}"
    (umask 077; as_user tar -czf - -T - < "$t.over" > "$snap.partial")
    mv -f "$snap.partial" "$snap"
    echo "snapshot=$snap"
fi
# --no-overwrite-dir: the notebook dir (and any that exist) keep their mode and owner;
# an archive made elsewhere (its "./" 0755) would open a 0750 notebook dir to everyone
as_user tar --no-overwrite-dir -xzf - < "$t"
"""


def restore_command(notebook_dir: str, digest: str, user: str, snapshot: str) -> Command:
    """restore's one command: a linked notebook dir is refused in one line."""
    in_dir = cmd("sh", "-c", RESTORE_IN_DIR, "sh", user, snapshot)
    restorer = nofollow(*nofollow_run(notebook_dir, "need", in_dir), verb="restoring into")
    return cmd("sh", "-c", RESTORE, "sh", digest, *restorer.parts)


def restore(archive: Path, stamp: str = "", dry_run: bool = False):
    """Put a backup's notebooks back; files not in the backup are left alone. Every
    notebook it overwrites is saved first, on the host (``SNAPSHOT_DIR``); with
    ``dry_run`` it only lists them."""
    def run(host: Host, runner) -> HostResult:
        data = archive.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        sidecar = archive.with_name(archive.name + ".sha256")
        if sidecar.exists() and sidecar.read_text().split()[0] != digest:
            return outcome(host.name, False, f"{archive} does not match {sidecar.name}: not restoring")
        # Without the .sha256 backup wrote beside it, nothing says the archive is the one
        # backup pulled: restored all the same (it may be all there is), but said so.
        unverified = ("" if sidecar.exists() else
                      f" (unverified: no {sidecar.name} beside it to check the archive against)")
        snapshot = "" if dry_run else f"{SNAPSHOT_DIR}/notebooks-before-restore-{stamp}.tar.gz"
        r = runner.run(restore_command(host.vars["notebook_dir"], digest, host.vars["jupyter_user"],
                                       snapshot), stdin=data, timeout=3600)
        said = r.stdout.splitlines()
        overwrites = [line.partition("=")[2] for line in said if line.startswith("overwrites=")]
        listing = "".join(f"\n  {name}" for name in overwrites)
        if not r.ok:
            return outcome(host.name, False, f"restore {'check ' if dry_run else ''}failed: "
                                             f"{(r.stderr or r.stdout).strip()}")
        if dry_run:
            return outcome(host.name, True, f"would restore {archive.name}{unverified} into "
                           f"{host.vars['notebook_dir']}, overwriting {len(overwrites)} file(s){listing}")
        saved = next((line.partition("=")[2] for line in said if line.startswith("snapshot=")), "")
        kept = (f"; the {len(overwrites)} file(s) it overwrote were saved first in {saved} (on the host)"
                if saved else "; it overwrote no existing file")
        return outcome(host.name, True,
                       f"restored {archive.name}{unverified} into {host.vars['notebook_dir']}{kept}")
    return run
