"""Ad-hoc tasks on deployed hosts: quick, one or two commands each, never the state tree."""

from __future__ import annotations

import hashlib
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import kernelenv, passwords, provider
from .facts import INIT_SCRIPT, InitctlStatus, parse_initctl_status
from .inventory import Host
from .runner import HostUnreachable, Runner, open_runner
from .shell import Command, chain, cmd

SERVICE = "jupyter"
UPSTART_LOG = f"/var/log/upstart/{SERVICE}.log"


@dataclass
class Outcome:
    host: str
    ok: bool
    text: str


# --- which init runs the host ------------------------------------------------------------

# $1 the service. Every day-2 task's first look, one small round trip: the init
# system (asked as the deploy asks) and, on Upstart, where the job is.
INIT_PROBE = INIT_SCRIPT + r"""[ "$init" = upstart ] && echo "status=$(initctl status "$1" 2>&1 | head -n 1)"
true
"""


@dataclass(frozen=True)
class HostInit:
    init: str                               # "systemd", "upstart", "none" ("": not known)
    pid1: str = ""
    job: InitctlStatus | None = None        # upstart: the job's status (None: not loaded)

    @property
    def upstart(self) -> bool:
        return self.init == "upstart"


class Unsupported(Exception):
    """The host runs neither systemd nor Upstart: the task did nothing there."""


def init_probe() -> Command:
    return cmd("sh", "-c", INIT_PROBE, "sh", SERVICE)


def parse_init(stdout: str) -> HostInit:
    """What ``INIT_PROBE`` printed (pure)."""
    values = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in values:
            values[key] = value.strip()
    init = values.get("init", "")          # "": the probe did not run (sudo, shell)
    job = parse_initctl_status(values.get("status", ""), SERVICE) if init == "upstart" else None
    return HostInit(init, values.get("pid1", ""), job)


def supported(name: str, found: HostInit, outcome: str, said: str = "") -> HostInit:
    """``found``, or Unsupported with the deploy's words for a host it would refuse
    (``said``: the probe's stderr, for when it could not even ask)."""
    if not found.init:
        raise Unsupported(f"{name}: could not tell which init system runs it "
                          f"({said.strip() or 'the probe printed nothing'}), so {outcome}")
    if found.init not in ("systemd", "upstart"):
        from .deploy import unsupported_init
        raise Unsupported(unsupported_init(name, {"pid1": found.pid1}, outcome))
    return found


def host_init(host: Host, runner: Runner, outcome: str = "it changed nothing on this host") -> HostInit:
    r = runner.run(init_probe(), timeout=30)
    return supported(host.name, parse_init(r.stdout), outcome, r.stderr)


def _refusing(outcome: str, action: Callable[[Host, Runner, HostInit], Outcome]
              ) -> Callable[[Host, Runner], Outcome]:
    """``action`` with the host's init; a host with neither is one failed outcome."""
    def run(host: Host, runner: Runner) -> Outcome:
        try:
            found = host_init(host, runner, outcome)
        except Unsupported as exc:
            return Outcome(host.name, False, str(exc))
        return action(host, runner, found)
    return run


def env_dir(host: Host) -> str:
    return provider.env_dir(host.vars)


def public_url(host: Host) -> str:
    """The URL users open: https:// once the host has TLS (Cloudflare or its own certificate)."""
    from . import edge
    if host.vars.get("public_url"):
        return host.vars["public_url"]
    try:
        tls = edge.plan_for(host.name, host.vars).tls != "off"
    except edge.EdgeConfigError:
        tls = False
    return f"{'https' if tls else 'http'}://{host.vars['server_name']}"


def control(action: str) -> Callable[[Host, Runner], Outcome]:
    """start, stop or restart the service; start and restart return once it answers
    (the unit's ExecStartPost, the Upstart job's post-start: at most 90 s)."""
    def systemd(host: Host, runner: Runner, found: HostInit) -> Outcome:
        r = runner.run(chain(cmd("systemctl", action, "--", SERVICE),
                             cmd("systemctl", "is-active", "--", SERVICE), op=";"), timeout=120)
        state = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "unknown"
        wanted = "inactive" if action == "stop" else "active"
        ok = state == wanted
        return Outcome(host.name, ok, f"{action}: {SERVICE} is {state}"
                       + ("" if ok else f"\n{r.stderr.strip()}"))

    def upstart(host: Host, runner: Runner, found: HostInit) -> Outcome:
        do = restart_command(found) if action == "restart" else cmd("initctl", action, SERVICE)
        # stop: up to the job's kill timeout (30 s); start: its post-start (90 s)
        r = runner.run(chain(do, cmd("echo", "==status=="),
                             cmd("initctl", "status", SERVICE), op=";"), timeout=150)
        line = (parse_sections(r.stdout).get("status") or [""])[0]
        now = parse_initctl_status(line, SERVICE)
        ok = now is not None and (now.goal == "stop" if action == "stop" else now.running)
        said = f"{now}" + (f", pid {now.pid}" if now and now.pid else "") if now else "not known to Upstart"
        return Outcome(host.name, ok, f"{action}: {SERVICE} is {said}"
                       + ("" if ok else f"\n{(r.stderr.strip() + chr(10) + line).strip()}"))

    return _refusing("it changed nothing on this host",
                     lambda h, r, found: (upstart if found.upstart else systemd)(h, r, found))


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


DISK_WARNING = 0.10      # fab status warns when a filesystem has less free than this


def _usage_commands(host: Host) -> list[Command]:
    """status's sections on what Jupyter uses: its kernels (the notebook user's
    ipykernel processes: pid, resident memory, age) and free disk for the home and
    the prefix."""
    user = host.vars["jupyter_user"]
    disks = []
    for path in (kernelenv.home_dir(user), host.vars["prefix"]):
        disks += [cmd("echo", f"==disk:{path}=="), cmd("df", "-P", "-B1", path)]
    return [cmd("echo", "==kernels=="), cmd("ps", "-u", user, "-o", "pid=,rss=,etimes=,args="), *disks]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def usage_lines(sections: dict[str, list[str]], host: Host, props: dict[str, str]) -> tuple[list[str], bool]:
    """The kernels, memory against the limit, and disk lines of ``fab status``, and
    whether a disk is under DISK_WARNING free (pure)."""
    kernels = []
    total_rss = 0
    for line in sections.get("kernels", []):
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[1].isdigit():
            continue
        total_rss += int(parts[1]) * 1024
        if "ipykernel_launcher" in parts[3] or "ipykernel " in parts[3]:
            kernels.append((parts[0], int(parts[1]) * 1024, int(parts[2]) if parts[2].isdigit() else 0))
    out = [f"kernels:  {len(kernels)} running"
           + "".join(f"\n  pid {pid}: {_size(rss)} resident, up {_duration(age)}" for pid, rss, age in kernels)]
    current = props.get("MemoryCurrent", "")
    used = int(current) if current.isdigit() else total_rss
    limit = props.get("MemoryMax", "")
    if limit.isdigit() and int(limit) < 1 << 60:
        out.append(f"memory:   {_size(used)} of {_size(int(limit))} (MemoryMax, {used / int(limit):.0%})")
    else:
        out.append(f"memory:   {_size(used)} (no memory limit)")
    low = False
    for name, lines in sections.items():
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


def status(host: Host, runner: Runner, lines: int = 5) -> Outcome:
    return _refusing(f"there is no {SERVICE} service to report on",
                     lambda h, r, found: (_upstart_status if found.upstart else _systemd_status)(
                         h, r, found, lines))(host, runner)


def _systemd_status(host: Host, runner: Runner, found: HostInit, lines: int) -> Outcome:
    r = runner.run(chain(
        cmd("echo", "==props=="),
        cmd("systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID",
            "-p", "ActiveEnterTimestamp", "-p", "ActiveEnterTimestampMonotonic",
            "-p", "NRestarts", "-p", "MemoryCurrent", "-p", "MemoryMax", "--", SERVICE),
        *_usage_commands(host),
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
        *usage_lines(sections, host, props)[0],
        "log:", *[f"  {line}" for line in sections.get("log", [])],
    ])
    return Outcome(host.name, props.get("ActiveState") == "active", text)


def _upstart_status(host: Host, runner: Runner, found: HostInit, lines: int) -> Outcome:
    """State and pid from ``initctl status`` (the probe's), uptime from the pid."""
    job = found.job
    pid = job.pid if job and job.running else None
    r = runner.run(chain(
        *([cmd("echo", "==uptime=="), cmd("ps", "-o", "etimes=,lstart=", "-p", pid)] if pid else []),
        *_usage_commands(host),
        cmd("echo", "==version=="),
        cmd(f"{env_dir(host)}/bin/jupyter-server", "--version"),
        cmd("echo", "==log=="),
        cmd("tail", "-n", lines, UPSTART_LOG),
        op=";"), timeout=60)
    sections = parse_sections(r.stdout)
    version = (sections.get("version") or ["not installed"])[0]
    up, since = "-", "-"
    elapsed, _, started = ((sections.get("uptime") or [""])[0]).strip().partition(" ")
    if elapsed.isdigit():
        up, since = _duration(int(elapsed)), " ".join(started.split()) or "-"
    state = f"{job}" if job else "not loaded by Upstart"
    text = "\n".join([
        # Upstart keeps no count of respawns (its log, or syslog, shows them)
        f"service:  {SERVICE} {state} (Upstart job), pid {pid or '-'}, restarts unknown",
        f"uptime:   {up} (since {since})",
        f"jupyter:  Jupyter Server {version}",
        f"url:      {public_url(host)}",
        *usage_lines(sections, host, {})[0],
        "log:", *[f"  {line}" for line in sections.get("log", [])],
    ])
    return Outcome(host.name, bool(job and job.running), text)


def logs(host: Host, runner: Runner, lines: int = 50) -> Outcome:
    def run(host: Host, runner: Runner, found: HostInit) -> Outcome:
        r = runner.run(log_command(found, lines), timeout=60)
        return Outcome(host.name, r.ok, r.stdout.rstrip() or r.stderr.strip())
    return _refusing(f"there is no {SERVICE} log to show", run)(host, runner)


def log_command(found: HostInit, lines: int, follow: bool = False) -> Command:
    """Jupyter's last ``lines`` log lines (and, with ``follow``, what comes after)."""
    if found.upstart:
        # -F: keeps following across logrotate's rename
        return cmd("tail", "-n", lines, *(["-F"] if follow else []), UPSTART_LOG)
    if follow:
        return cmd("journalctl", "-u", SERVICE, "-n", lines, "-f", "--no-pager")
    return cmd("journalctl", "-u", SERVICE, "-n", lines, "--no-pager", "-o", "short-iso")


def follow_logs(host: Host, lines: int) -> Outcome | None:
    """``fab logs --follow``: streams the log on a terminal until interrupted; an
    Outcome only when it cannot (unreachable, neither init)."""
    runner = None
    try:
        runner = open_runner(host)
        found = host_init(host, runner, f"there is no {SERVICE} log to follow")
        text = log_command(found, lines, follow=True).text
        # The journal is readable as the SSH user (as before); Upstart's log is root's.
        if found.upstart and runner.sudo:
            text = f"sudo -n -- {text}"
        runner.connection.run(text, pty=True, warn=True)
        return None
    except (HostUnreachable, Unsupported) as exc:
        return Outcome(host.name, False, f"unreachable: {exc}" if isinstance(exc, HostUnreachable)
                       else str(exc))
    finally:
        if runner is not None:
            runner.close()


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
        # One read: the init system (for the restart) and the config file.
        r = runner.run(chain(init_probe(), cmd("echo", CONFIG_MARK),
                             cmd("cat", "--", config_file), op=";"), timeout=30)
        probed, mark, current = r.stdout.partition(f"{CONFIG_MARK}\n")
        try:
            found = supported(host.name, parse_init(probed), "it changed nothing on this host",
                              r.stderr)
        except Unsupported as exc:
            return Outcome(host.name, False, str(exc))
        match = HASH_LINE.search(current) if r.ok and mark else None
        if not match:
            return Outcome(host.name, False, f"{config_file} has no password hash: deploy first")
        new_hash = hashes(match.group(1))
        if new_hash == match.group(1):
            return Outcome(host.name, True, "the password is already this one: nothing changed")
        content = HASH_LINE.sub(lambda m: m.group(0).replace(m.group(1), new_hash), current, count=1)
        tmp = posixpath.join(posixpath.dirname(config_file), f".{posixpath.basename(config_file)}.rotate")
        write = chain(cmd("sh", "-c", 'umask 077 && cat > "$1"', "sh", tmp),
                      cmd("chown", "--reference", config_file, "--", tmp),
                      cmd("chmod", "--reference", config_file, "--", tmp),
                      cmd("mv", "-f", "--", tmp, config_file),
                      restart_command(found))
        w = runner.run(write, stdin=content.encode(), timeout=150)
        if not w.ok:
            runner.run(cmd("rm", "-f", "--", tmp))
            return Outcome(host.name, False, f"rotating the password failed: {w.stderr.strip()}")
        return Outcome(host.name, True, f"new password hash in {config_file}; {SERVICE} restarted")
    return run


CONFIG_MARK = "==config=="


def restart_command(found: HostInit) -> Command:
    """Restart (or start, when it is not running) Jupyter; returns once it answers."""
    if not found.upstart:
        return cmd("systemctl", "restart", "--", SERVICE)
    # as systemctl restart does, a stopped job is started (initctl restart would refuse it)
    running = found.job is not None and found.job.goal == "start"
    return cmd("initctl", "restart" if running else "start", SERVICE)


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
