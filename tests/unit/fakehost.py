"""A tiny in-memory Debian host that understands the commands jupyterfab emits.

``FakeRunner`` has the Runner interface. It interprets the engine's own
command vocabulary (the fact batch script, the deploy's host probe, coreutils
file commands, apt-get, dpkg-query, systemctl, useradd, tar, pip in a venv; on
a host with ``init = "upstart"``: initctl, service, update-rc.d and no systemctl)
against ``FakeHost`` state, and records every round trip. A command outside that vocabulary is an
error (rc 127), so a state that starts emitting something new fails loudly
here until the fake learns it. Deployer shell text (cmd.run, check_cmd,
unless) is answered from ``FakeHost.shell``, keyed by the exact text.
"""

from __future__ import annotations

import functools
import hashlib
import io
import posixpath
import re
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

from jupyterfab import initsys
from jupyterfab.facts import files, packages, users
from jupyterfab.facts.host import USER_MARKERS, HostInfo
from jupyterfab.facts.jupyter import VERSIONS_SCRIPT
from jupyterfab.initsys import upstart
from jupyterfab.kernelenv import KERNEL_ENV
from jupyterfab.runner import CmdResult
from jupyterfab.shell import Command, Raw, Secret, as_command, cmd
from jupyterfab.states import file as file_state
from jupyterfab.states import tls


@dataclass
class FakeFile:
    data: bytes
    mode: int = 0o644
    user: str = "root"
    group: str = "root"


@dataclass
class FakeDir:
    mode: int = 0o755
    user: str = "root"
    group: str = "root"


@dataclass
class FakeUser:
    name: str
    uid: int
    gid: int
    home: str
    shell: str = "/bin/sh"
    groups: list[str] = field(default_factory=list)


@dataclass
class FakeUnit:
    exists: bool = True
    active: bool = False
    enabled: bool = False
    need_reload: bool = False
    starts: int = 0
    restarts: int = 0
    reloads: int = 0
    waited_reloads: int = 0      # reloads through jupyterfab's wait script (Upstart hosts)
    fails_to_start: bool = False
    # Upstart: the job definition Upstart has loaded (on reload-configuration) and
    # the one the running instance was started from (restart keeps it).
    stops: int = 0
    loaded_job: bytes | None = None
    running_job: bytes | None = None


@functools.lru_cache(maxsize=8192)
def split_words(text: str) -> tuple[str, ...]:
    """shlex.split, remembered: the same probe texts come back on every run."""
    return tuple(shlex.split(text))


Handler = Callable[["FakeHost", dict, str], tuple[int, str, str]]   # (host, env, script)


class FakeHost:
    def __init__(self):
        self.files: dict[str, FakeFile] = {}
        self.dirs: dict[str, FakeDir] = {p: FakeDir() for p in
                                         ("/", "/etc", "/etc/systemd", "/etc/systemd/system",
                                          "/etc/ssh", "/opt", "/srv", "/tmp", "/var", "/var/lib",
                                          "/home")}
        self.packages: dict[str, str] = {}
        self.available: dict[str, str] = {}
        self.apt_lists_stale = False
        self.only_after_update: set[str] = set()   # apt finds these only after `apt-get update`
        self.apt_updates = 0
        self.apt_options: list[list[str]] = []
        self.users: dict[str, FakeUser] = {"root": FakeUser("root", 0, 0, "/root", "/bin/bash")}
        self.groups: dict[str, int] = {"root": 0}
        self.units: dict[str, FakeUnit] = {"ssh": FakeUnit(active=True, enabled=True)}
        # sshd reads /etc/ssh/sshd_config.d/*.conf (its config has the Include)
        self.sshd_reads_drop_ins = True
        # the properties of every transient unit a command ran in (systemd-run -p)
        self.confined_runs: list[dict[str, str]] = []
        self.daemon_reloads = 0
        self.pip: dict[str, list[str]] = {}         # venv -> requirements installed
        self.shell: dict[str, Handler | tuple[int, str, str]] = {}
        self.shell_patterns: list[tuple[re.Pattern, Handler | tuple[int, str, str]]] = []
        self.shell_runs: list[str] = []
        # what the deploy's HostInfo probe finds
        self.os = "debian 12"
        self.init = "systemd"                       # or "upstart", or "none"
        self.pid1 = "systemd"
        self.python = "3.11"
        self.config_reloads = 0                     # initctl reload-configuration
        self.uptime = 3723                          # seconds Jupyter's process has run (ps)
        self.disk: dict[str, tuple[int, int]] = {}  # df: path -> (size, available) in bytes
        self.jupyter_server = "2.17.0"              # the jupyter_server dist-info in {venv}
        self.jupyterlab = "4.5.11"                  # the jupyterlab dist-info beside it
        self.symlinks: dict[str, str] = {}          # path -> where readlink -f resolves it
        self.links: dict[str, str] = {}             # symbolic links: path -> target beside it (tls.pair)
        self.lock_holder: str | None = None         # who holds the host lock (hostlock)
        self.free_kb: dict[str, int] = {}           # df's free KB by path (default: plenty)

    # --- filesystem helpers -------------------------------------------------
    def add_file(self, path: str, data: bytes | str, mode: int = 0o644, user="root", group="root"):
        self._ensure_parents(path)
        self.files[path] = FakeFile(data.encode() if isinstance(data, str) else data, mode, user, group)

    def add_dir(self, path: str, mode: int = 0o755, user="root", group="root"):
        self._ensure_parents(path)
        self.dirs[path] = FakeDir(mode, user, group)

    def _ensure_parents(self, path: str):
        parent = posixpath.dirname(path)
        while parent not in self.dirs:
            self.dirs[parent] = FakeDir()
            parent = posixpath.dirname(parent)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def resolve(self, path: str) -> str:
        """``path`` with a symbolic link among its components followed."""
        for link, target in self.links.items():
            if path == link or path.startswith(link + "/"):
                return posixpath.join(posixpath.dirname(link), target) + path[len(link):]
        return path

    def text(self, path: str) -> str:
        return self.files[self.resolve(path)].data.decode()

    def unit(self, name: str) -> FakeUnit:
        return self.units.setdefault(name.removesuffix(".service"), FakeUnit(exists=False))


class FakeRunner:
    """Runner over a FakeHost; ``calls`` lists each round trip, the fact batch
    as ``facts: <n> probes`` and other commands by their display form."""

    def __init__(self, host: FakeHost | None = None, name: str = "fake"):
        self.fake = host or FakeHost()
        self.host = name
        self.calls: list[str] = []
        self.batches: list[list[str]] = []     # probe display forms, per batch
        self.locks: list[str] = []             # holder lines of the host locks taken
        self.under_lock: list[str] = []        # commands run in a lock's trip, once taken

    @property
    def round_trips(self) -> int:
        return len(self.calls)

    def commands(self) -> list[str]:
        """Round trips other than fact probing."""
        return [c for c in self.calls if not c.startswith("facts:")]

    def run(self, command: Command | str, *, stdin: bytes | None = None,
            timeout: float | None = None) -> CmdResult:
        command = as_command(command)
        parts = command.parts
        if len(parts) == 3 and parts[:2] == ("sh", "-c") and str(parts[2]).startswith("# jupyterfab facts"):
            return self._batch(parts[2])
        # Every command must survive the trip through a real shell's word
        # splitting: what the host parses is exactly the parts we built.
        words = [str(p) if isinstance(p, Raw) else (p.reveal() if isinstance(p, Secret) else str(p))
                 for p in parts]
        assert list(split_words(command.text)) == words, f"quoting broke: {command.display}"
        self.calls.append(command.display)
        return Interpreter(self.fake).run_parts(parts, stdin)

    def close(self) -> None:
        pass

    def put(self, data: bytes, remote_path: str) -> None:
        self.calls.append(f"put {remote_path}")
        parent = posixpath.dirname(remote_path)
        if parent not in self.fake.dirs:
            raise OSError(f"cannot write {remote_path}: no directory {parent}")
        self.fake.files[remote_path] = FakeFile(data, 0o600)

    def hold(self, command: Command) -> FakeHeld:
        """The host lock (hostlock.HOLD): taken unless ``fake.lock_holder`` says who has it;
        the command to run under it (a deploy's probe) runs once it is taken, in the
        lock's trip (listed in ``under_lock``, not in ``calls``)."""
        assert "flock" in command.text, f"only the host lock is held: {command.display}"
        holder, first, marker = (str(p) for p in command.parts[6:9])
        self.locks.append(holder)     # its own channel, beside the round trips
        busy = self.fake.lock_holder
        if busy is not None:
            return FakeHeld(self.fake, [f"waiting={busy}", f"busy={busy}"], owner=False)
        self.fake.lock_holder = holder
        lines = ["locked"]
        if first:
            self.under_lock.append(first)
            rc, stdout, _ = Interpreter(self.fake).run_argv(list(split_words(first)), None)
            lines += f"{stdout}\n{marker} {rc}".split("\n")
        return FakeHeld(self.fake, lines, owner=True)

    _PROBE = re.compile(r"echo '(?P<m>JFAB-\w+) (?P<i>\d+) begin'\n\( (?P<text>.*?)\n\) "
                        r"</dev/null 2>/dev/null\n", re.S)

    def _batch(self, script: str) -> CmdResult:
        probes = list(self._PROBE.finditer(script))
        self.calls.append(f"facts: {len(probes)} probes")
        out, shown = [], []
        for m in probes:
            text = m.group("text")
            if text.startswith("set -- "):     # an engine script run in the probe's subshell
                arguments, script = self._set_line(text)
                text = cmd("sh", "-c", script, "sh", *arguments[2:]).text
            argv = list(split_words(text))
            shown.append(text)
            rc, stdout, _ = Interpreter(self.fake).run_argv(argv, None)
            out.append(f"{m.group('m')} {m.group('i')} begin\n{stdout}\n{m.group('m')} {m.group('i')} rc {rc}\n")
        self.batches.append(shown)
        return CmdResult(0, "".join(out), "")


    @staticmethod
    def _set_line(text: str) -> tuple[tuple[str, ...], str]:
        """``set -- ARGS`` (whose quoted words may hold newlines) and the script after it."""
        end = text.index("\n")
        while True:
            try:
                return split_words(text[:end]), text[end + 1:]
            except ValueError:          # that newline was inside a quoted word
                end = text.index("\n", end + 1)


class FakeHeld:
    def __init__(self, fake: FakeHost, lines: list[str], owner: bool):
        self.fake, self.lines, self.owner = fake, lines, owner

    def readline(self, timeout: float) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def error(self) -> str:
        return ""

    def release(self) -> None:
        if self.owner:
            self.fake.lock_holder = None
            self.owner = False


class Interpreter:
    def __init__(self, host: FakeHost):
        self.h = host

    def run_parts(self, parts, stdin) -> CmdResult:
        segments, ops, current = [], [], []
        for p in parts:
            if isinstance(p, Raw):
                segments.append(current)
                ops.append(str(p))
                current = []
            else:
                current.append(p.reveal() if isinstance(p, Secret) else str(p))
        segments.append(current)
        out, err, rc = [], [], 0
        for i, argv in enumerate(segments):
            if i and ops[i - 1] == "&&" and rc != 0:
                break
            if i and ops[i - 1] not in ("&&", ";"):
                return CmdResult(127, "", f"fake: operator {ops[i - 1]} not supported")
            rc, o, e = self.run_argv(argv, stdin)
            out.append(o)
            err.append(e)
        return CmdResult(rc, "".join(out), "".join(err))

    # --- dispatch -------------------------------------------------------------
    def run_argv(self, argv: list[str], stdin: bytes | None, env: dict | None = None):
        env = dict(env or {})
        name = argv[0]
        if name == "env":
            rest = argv[1:]
            while rest and (rest[0] in ("-C", "-i") or "=" in rest[0]):
                if rest[0] == "-i":
                    env = {}
                    rest = rest[1:]
                elif rest[0] == "-C":
                    if rest[1] not in self.h.dirs:
                        return 125, "", f"env: cannot change directory to '{rest[1]}'"
                    env["PWD"] = rest[1]
                    rest = rest[2:]
                else:
                    k, _, v = rest[0].partition("=")
                    env[k] = v
                    rest = rest[1:]
            return self.run_argv(rest, stdin, env)
        if name == "systemd-run":       # a transient unit: the command, as its User=
            end = argv.index("--")
            props = dict(a.split("=", 1) for a in argv[1:end] if "=" in a and not a.startswith("--"))
            self.h.confined_runs.append(props)
            if props.get("User") not in self.h.users:
                return 217, "", f"run-u1.service: Failed to determine user credentials: {props.get('User')}"
            command = [word.replace("$$", "$") for word in argv[end + 1:]]     # systemd's $ expansion
            return self.run_argv(command, stdin, {**env, "USER": props["User"]})
        if name == "timeout":
            assert argv[1] == "-k", argv
            return self.run_argv(argv[4:], stdin, env)
        if name == "runuser":
            assert argv[1] == "-u" and argv[3] == "--", argv
            if argv[2] not in self.h.users:
                return 1, "", f"runuser: user {argv[2]} does not exist"
            env["USER"] = argv[2]
            return self.run_argv(argv[4:], stdin, env)
        if name == "sh" and argv[1] == "-c":
            return self.sh(argv[2], argv[4:], stdin, env)
        if tuple(argv) == packages.APT_LISTS_FIND:
            return 0, ("sources 200.0\nlists 100.0\n" if self.h.apt_lists_stale
                       else "sources 100.0\nlists 200.0\n"), ""
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if name.endswith("/bin/python"):
            handler = self.venv_python
        if handler is None:
            return 127, "", f"fake: unknown command {name}"
        return handler(argv, stdin, env)

    # --- sh -c: the engine's own scripts, or deployer text -------------------
    def sh(self, script: str, args: list[str], stdin, env):
        if script == files.STAT_SCRIPT:
            return self.stat(args[0], args[1] == "sha256")
        if script == files.STAT_GROUP_SCRIPT:
            return self.stat_group(args[0], args[1:])
        if script == VERSIONS_SCRIPT:
            has_env = f"{args[0]}/bin/jupyter-server" in self.h.files
            return 0, (f"jupyterlab={self.h.jupyterlab}\njupyter_server={self.h.jupyter_server}\n"
                       if has_env else ""), ""
        if script == files.FILE_CONTENT_SCRIPT:
            path, limit = args[0], int(args[1])
            if path in self.h.files:
                return 0, "present\n" + self.h.files[path].data[:limit].decode("utf-8", "replace"), ""
            return 0, ("not-a-file\n" if path in self.h.dirs else "absent\n"), ""
        if script == users.USER_SCRIPT:
            u = self.h.users.get(args[0])
            if u is None:
                return 2, "", ""
            primary = next((g for g, gid in self.h.groups.items() if gid == u.gid), str(u.gid))
            return 0, (f"{u.name}:x:{u.uid}:{u.gid}::{u.home}:{u.shell}\n{primary}\n"
                       f"{' '.join([primary] + u.groups)}\n"), ""
        if script == upstart.UPSTART_SCRIPT:
            return self.upstart_probe(args[0])
        if script == HostInfo.SCRIPT:
            return self.host_info(*args)
        if script == initsys.PROBE:
            return self.init_probe(args[0])
        if script == packages.UNSATISFIED_PROBE:
            return self.unsatisfied(args[0], args[1], args[2])
        if script == 'umask 077 && cat > "$1"':
            if posixpath.dirname(args[0]) not in self.h.dirs:
                return 1, "", f"sh: 1: cannot create {args[0]}: Directory nonexistent\n"
            self.h.files[args[0]] = FakeFile(stdin or b"", 0o600)
            return 0, "", ""
        if script == upstart.ADD_MANUAL:
            f = self.h.files.get(args[0]) or FakeFile(b"")
            self.h.files[args[0]] = FakeFile(f.data + b"manual\n", f.mode, f.user, f.group)
            return 0, "", ""
        if script in self.h.shell:       # a test's own answer wins (e.g. a mismatched pair)
            self.h.shell_runs.append(script)
            answer = self.h.shell[script]
            return answer(self.h, env, script) if callable(answer) else answer
        if script == tls.STAGE_PAIR:
            return self.tls_stage(args[0])
        if script == tls.CHECK_PAIR:
            return self.tls_check(args[0])
        if script == tls.SWITCH_PAIR:
            return self.tls_switch(*args[:3])
        if script == upstart.RELOAD_VIA:
            return self.reload_via(args[0], args[1:], stdin, env)
        if script == file_state.CANDIDATE_CHECK:
            return self.candidate_check(*args[:4], env)
        if script == files.TREE_SCRIPT:
            root = args[0].rstrip("/") + "/"
            lines = [f"{hashlib.sha256(f.data).hexdigest()}  ./{p[len(root):]}"
                     for p, f in sorted(self.h.files.items())
                     if p.startswith(root) and p != root + files.MANIFEST_NAME]
            return 0, "".join(line + "\n" for line in lines), ""
        if script.startswith("sshd -t -f /etc/ssh/sshd_config && "):
            return self.sshd_check(script)
        self.h.shell_runs.append(script)
        answer = self.h.shell.get(script)
        if answer is None:
            answer = next((a for pattern, a in self.h.shell_patterns if pattern.search(script)), None)
        if answer is None:
            if script in ("true", ":"):
                return 0, "", ""
            if script == "false":
                return 1, "", ""
            return 127, "", f"fake sh: no scripted answer for {script!r}"
        if callable(answer):
            return answer(self.h, env, script)
        return answer

    def reload_via(self, waiter: str, plain: list[str], stdin, env):
        """The waiting reload where the deploy installed it (an executable file at
        its path): it returns once new workers serve, here a reload counted as waited
        for; else the plain reload."""
        script = self.h.files.get(waiter)
        if script is None or not script.mode & 0o111:
            return self.run_argv(plain, stdin, env)
        [name] = [n for n, path in upstart.WAITING_RELOADS.items() if path == waiter]
        unit = self.h.unit(name)
        if not unit.active:
            return 1, "", "jupyterfab-nginx-reload: no nginx master running\n"
        unit.reloads += 1
        unit.waited_reloads += 1
        return 0, "", ""

    def sshd_check(self, script: str):
        """login.drop_in_check: sshd refuses the user when it reads a drop-in saying so."""
        user = re.search(r"-C user=([^,]+),", script).group(1)
        said = re.search(r'echo "(.*?)" >&2', script).group(1)
        refused = any(f"\nDenyUsers {user}\n".encode() in b"\n" + f.data for path, f in self.h.files.items()
                      if path.startswith("/etc/ssh/sshd_config.d/") and path.endswith(".conf"))
        return (0, "", "") if refused and self.h.sshd_reads_drop_ins else (1, "", said + "\n")

    def candidate_check(self, tree: str, tmp: str, target: str, check: str, env):
        """The check sees the candidate where the target is, in a copy of the tree;
        here: the candidate put there for the check only, the live file back after."""
        if tree not in self.h.dirs or tmp not in self.h.files:
            return 1, "", f"cp: cannot stat '{tree}/.' or '{tmp}'\n"
        live = self.h.files.get(target)
        self.h.files[target] = self.h.files[tmp]
        try:
            return self.sh(check.replace('"$TREE"', tree), [], None, env)
        finally:
            if live is None:
                del self.h.files[target]
            else:
                self.h.files[target] = live

    def stat(self, path: str, checksum: bool):
        link = "link" if path in self.h.links else ""
        path = self.h.resolve(path)
        if path in self.h.files:
            f = self.h.files[path]
            out = f"regular file|{f.mode:o}|{f.user}|{f.group}|{link}\n"
            if checksum:
                out += hashlib.sha256(f.data).hexdigest() + "  -\n"
            return 0, out, ""
        if path in self.h.dirs:
            d = self.h.dirs[path]
            return 0, f"directory|{d.mode:o}|{d.user}|{d.group}|{link}\n", ""
        return 0, ("broken-link\n" if link else "absent\n"), ""

    def stat_group(self, flags: str, paths: list[str]):
        """STAT_GROUP_SCRIPT's answer, made of each path's own ``stat``."""
        kinds, stats, sums = [], [], []
        for flag, path in zip(flags, paths, strict=True):
            lines = self.stat(path, flag == "s")[1].splitlines()
            if lines[0] in ("absent", "broken-link"):
                kinds.append(lines[0])
                continue
            kind, mode, user, group, link = lines[0].split("|")
            kinds.append(f"exists|{link}|{'sha256' if len(lines) > 1 else ''}")
            stats.append(f"{kind}|{mode}|{user}|{group}")
            sums += [f"{lines[1][:64]}  {path}"] if len(lines) > 1 else []
        return 0, "".join(f"{line}\n" for line in kinds + ["%%stat"] + stats + ["%%sha256"] + sums), ""

    # --- tls.pair's scripts ----------------------------------------------------------
    def tls_stage(self, staged: str):
        self.cmd_rm(["rm", "-rf", "--", staged], None, {})
        self.h.add_dir(staged, 0o700)
        return 0, "", ""

    def tls_check(self, staged: str):
        """Modes set; every pair's key is its certificate's here (a test that wants a
        mismatch scripts ``host.shell[tls.CHECK_PAIR]``)."""
        self.h.dirs[staged].mode = 0o755
        self.h.files[f"{staged}/{tls.CERTIFICATE}"].mode = 0o644
        self.h.files[f"{staged}/{tls.KEY}"].mode = 0o600
        return 0, "", ""

    def tls_switch(self, link: str, staged: str, version: str):
        folder, base = posixpath.split(link)
        old = self.h.links.get(link)
        self.cmd_rm(["rm", "-rf", "--", f"{folder}/{version}"], None, {})
        self.h.dirs[f"{folder}/{version}"] = self.h.dirs.pop(staged)
        for path in [p for p in self.h.files if p.startswith(staged + "/")]:
            self.h.files[f"{folder}/{version}/{path[len(staged) + 1:]}"] = self.h.files.pop(path)
        self.h.links[link] = version
        for d in [d for d in self.h.dirs if posixpath.dirname(d) == folder
                  and re.fullmatch(re.escape(base) + r"\.[0-9a-f]{16}", posixpath.basename(d))]:
            if posixpath.basename(d) not in (version, old):
                self.cmd_rm(["rm", "-rf", "--", d], None, {})
        return 0, "", ""

    # --- coreutils ----------------------------------------------------------------
    @staticmethod
    def _operands(argv: list[str]) -> tuple[list[str], list[str]]:
        i = argv.index("--")
        return argv[1:i], argv[i + 1:]

    def cmd_test(self, argv, stdin, env):
        assert argv[1] == "-e"
        return (0 if self.h.exists(argv[2]) else 1), "", ""

    def cmd_mkdir(self, argv, stdin, env):
        opts, (path,) = self._operands(argv)
        mode = int(opts[opts.index("-m") + 1], 8) if "-m" in opts else 0o755
        parent = posixpath.dirname(path)
        if path in self.h.dirs:
            return (0, "", "") if "-p" in opts else (1, "", f"mkdir: {path}: File exists")
        if parent not in self.h.dirs:
            if "-p" not in opts:
                return 1, "", f"mkdir: cannot create directory '{path}': No such file or directory"
            self.h._ensure_parents(path)
        self.h.dirs[path] = FakeDir(mode)
        return 0, "", ""

    def _meta(self, path):
        return self.h.files.get(path) or self.h.dirs.get(path)

    def cmd_chmod(self, argv, stdin, env):
        opts, (path,) = self._operands(argv)
        target = self._meta(path)
        if target is None:
            return 1, "", f"chmod: cannot access '{path}'"
        if opts[0] == "--reference":
            target.mode = self._meta(opts[1]).mode
            return 0, "", ""
        target.mode = int(opts[0], 8)
        return 0, "", ""

    def cmd_chown(self, argv, stdin, env):
        opts, operands = self._operands(argv)
        if opts[:1] == ["--reference"]:
            ref, target = self._meta(opts[1]), self._meta(operands[0])
            if ref is None or target is None:
                return 1, "", f"chown: cannot access '{operands[0]}'"
            target.user, target.group = ref.user, ref.group
            return 0, "", ""
        spec, path = operands
        user, _, group = spec.partition(":")
        if user and user not in self.h.users or group and group not in self.h.groups:
            return 1, "", f"chown: invalid user: '{spec}'"
        recursive = "-R" in opts
        targets = [p for p in list(self.h.files) + list(self.h.dirs)
                   if p == path or (recursive and p.startswith(path.rstrip("/") + "/"))]
        if not targets:
            return 1, "", f"chown: cannot access '{path}'"
        for p in targets:
            meta = self._meta(p)
            meta.user = user or meta.user
            meta.group = group or meta.group
        return 0, "", ""

    def cmd_mv(self, argv, stdin, env):
        opts, (src, dst) = self._operands(argv)
        if src not in self.h.files:
            return 1, "", f"mv: cannot stat '{src}'"
        if posixpath.dirname(dst) not in self.h.dirs:
            return 1, "", f"mv: cannot move to '{dst}'"
        self.h.files[dst] = self.h.files.pop(src)
        return 0, "", ""

    def cmd_ln(self, argv, stdin, env):
        opts, (src, dst) = self._operands(argv)
        if src not in self.h.files:
            return 1, "", f"ln: failed to access '{src}'"
        self.h.files[dst] = self.h.files[src]      # same object: a hard link
        return 0, "", ""

    def cmd_touch(self, argv, stdin, env):
        opts, paths = self._operands(argv)
        for path in paths:
            if posixpath.dirname(path) not in self.h.dirs:
                return 1, "", f"touch: cannot touch '{path}': No such file or directory"
            self.h.files.setdefault(path, FakeFile(b""))
        return 0, "", ""

    def cmd_rm(self, argv, stdin, env):
        opts, paths = self._operands(argv)
        for path in paths:
            if path in self.h.dirs:
                assert "-rf" in opts, "rm of a directory needs -rf"
                prefix = path.rstrip("/") + "/"
                for p in [p for p in self.h.files if p.startswith(prefix)]:
                    del self.h.files[p]
                for p in [p for p in self.h.dirs if p.startswith(prefix) or p == path]:
                    del self.h.dirs[p]
            else:
                self.h.files.pop(path, None)
        return 0, "", ""

    def cmd_tar(self, argv, stdin, env):
        assert argv[1:3] == ["-x", "--no-same-owner"] and argv[-2:] == ["-f", "-"], argv
        dest = argv[argv.index("-C") + 1]
        if dest not in self.h.dirs:
            return 2, "", f"tar: {dest}: Cannot open"
        with tarfile.open(fileobj=io.BytesIO(stdin), mode="r") as tar:
            for member in tar.getmembers():
                path = posixpath.join(dest, member.name)
                if member.isdir():
                    self.h.dirs[path] = FakeDir(member.mode)
                else:
                    if posixpath.dirname(path) not in self.h.dirs:
                        self.h._ensure_parents(path)
                    self.h.files[path] = FakeFile(tar.extractfile(member).read(), member.mode)
        return 0, "", ""

    def cmd_find(self, argv, stdin, env):
        root, kind = argv[1], argv[3]
        assert argv[2] == "-type" and argv[4:6] == ["-exec", "chmod"] and argv[7:] == ["--", "{}", "+"], argv
        mode = int(argv[6], 8)
        table = self.h.files if kind == "f" else self.h.dirs
        for path, meta in table.items():
            if path == root or path.startswith(root.rstrip("/") + "/"):
                meta.mode = mode
        return 0, "", ""

    def cmd_journalctl(self, argv, stdin, env):
        return 0, "fake journal: the unit exited\n", ""

    def cmd_echo(self, argv, stdin, env):
        return 0, " ".join(argv[1:]) + "\n", ""

    def cmd_cat(self, argv, stdin, env):
        path = argv[-1]
        if path == "/proc/uptime":
            return 0, "123456.78 234567.89\n", ""
        if path not in self.h.files:
            return 1, "", f"cat: {path}: No such file or directory\n"
        return 0, self.h.text(path), ""

    def cmd_ps(self, argv, stdin, env):
        if argv[1] == "-u":     # status: the notebook user's processes (the server, a kernel)
            assert argv[3:] == ["-o", "pid=,rss=,etimes=,args="], argv
            if not any(u.active for u in self.h.units.values()):
                return 1, "", ""
            return 0, ("   4242 102400   3723 /opt/jupyterfab/venv/bin/python /opt/jupyterfab/venv/bin/jupyter-lab\n"
                       "   4300  65536    600 /bin/sh -c ... /home/jupyter/.local/share/jupyterfab/kernel-env/bin/python "
                       "-Xfrozen_modules=off -m ipykernel_launcher -f /home/jupyter/k.json\n"), ""
        # the day-2 status's question: how long has this process run, since when
        assert argv[1:4] == ["-o", "etimes=,lstart=", "-p"], argv
        running = {4242, 4243} if any(u.active for u in self.h.units.values()) else set()
        if int(argv[4]) not in running:
            return 1, "", ""
        return 0, f"{self.h.uptime:>7} Thu Nov 26 02:13:58 2026\n", ""

    def cmd_df(self, argv, stdin, env):
        assert argv[1:3] == ["-P", "-B1"], argv
        out = "Filesystem 1-blocks Used Available Capacity Mounted on\n"
        for path in argv[3:]:
            size, avail = self.h.disk.get(path, (10 << 30, 6 << 30))
            out += f"/dev/fake {size} {size - avail} {avail} 40% /\n"     # the mount point
        return 0, out, ""

    def cmd_readlink(self, argv, stdin, env):
        assert argv[1:3] == ["-f", "--"], argv
        return 0, self.h.symlinks.get(argv[3], argv[3]) + "\n", ""

    def cmd_getent(self, argv, stdin, env):
        assert argv[1] == "group"
        gid = self.h.groups.get(argv[2])
        if gid is None:
            return 2, "", ""
        members = [u.name for u in self.h.users.values() if argv[2] in u.groups]
        return 0, f"{argv[2]}:x:{gid}:{','.join(members)}\n", ""

    # --- packages ----------------------------------------------------------------
    def cmd_dpkg_query(self, argv, stdin, env):
        assert argv[1:3] == ["-W", "-f"]
        names = argv[4:]
        out = [f"{n}\tinstall ok installed\t{self.h.packages[n]}\n" for n in names if n in self.h.packages]
        missing = [n for n in names if n not in self.h.packages]
        return (1 if missing else 0), "".join(out), "".join(
            f"dpkg-query: no packages found matching {n}\n" for n in missing)

    def cmd_apt_get(self, argv, stdin, env):
        assert env.get("DEBIAN_FRONTEND") == "noninteractive", "apt-get must run noninteractive"
        rest, options = argv[1:], []
        while rest and rest[0].startswith("-"):
            if rest[0] == "-o":
                options.append(rest[1])
                rest = rest[2:]
            else:
                rest = rest[1:]
        self.h.apt_options.append(options)
        if rest[0] == "update":
            self.h.apt_updates += 1
            self.h.apt_lists_stale = False
            self.h.only_after_update.clear()
            return 0, "Reading package lists...\n", ""
        assert rest[0] == "install" and "-y" in rest and "--no-install-recommends" in rest, rest
        specs = [s for s in rest[1:] if not s.startswith("-")]
        for spec in specs:
            name, _, version = spec.partition("=")
            if name not in self.h.available or name in self.h.only_after_update:
                return 100, "", f"E: Unable to locate package {name}\n"
            if version and version != self.h.available[name]:
                return 100, "", f"E: Version '{version}' for '{name}' was not found\n"
        for spec in specs:
            name = spec.partition("=")[0]
            self.h.packages[name] = self.h.available[name]
        return 0, f"Setting up {' '.join(specs)}\n", ""

    # --- users -------------------------------------------------------------------
    @staticmethod
    def _options(argv: list[str]) -> tuple[dict[str, str | bool], str]:
        opts, (name,) = Interpreter._operands(argv)
        parsed: dict[str, str | bool] = {}
        i = 0
        while i < len(opts):
            if i + 1 < len(opts) and not opts[i + 1].startswith("--"):
                parsed[opts[i]] = opts[i + 1]
                i += 2
            else:
                parsed[opts[i]] = True
                i += 1
        return parsed, name

    def cmd_useradd(self, argv, stdin, env):
        o, name = self._options(argv)
        if name in self.h.users:
            return 9, "", f"useradd: user '{name}' already exists"
        groups = [g for g in str(o.get("--groups", "")).split(",") if g]
        if any(g not in self.h.groups for g in groups):
            return 6, "", "useradd: group does not exist"
        uid = int(o.get("--uid", 1000 + len(self.h.users)))
        if "--user-group" in o:
            if name in self.h.groups:
                return 9, "", f"useradd: group {name} exists - if you want to add this user to that group, use -g."
            self.h.groups[name] = uid
        elif "--gid" in o:
            gid = str(o["--gid"])
            if not gid.isdigit() and gid not in self.h.groups:
                return 6, "", f"useradd: group '{gid}' does not exist"
        home = str(o.get("--home-dir", f"/home/{name}"))
        gid = o.get("--gid")
        gid = (int(gid) if str(gid).isdigit() else self.h.groups[gid]) if gid else self.h.groups[name]
        self.h.users[name] = FakeUser(name, uid, gid, home,
                                      str(o.get("--shell", "/bin/sh")), groups)
        if "--create-home" in o:
            self.h.add_dir(home, user=name, group=name if name in self.h.groups else "root")
        return 0, "", ""

    def cmd_usermod(self, argv, stdin, env):
        o, name = self._options(argv)
        user = self.h.users.get(name)
        if user is None:
            return 6, "", f"usermod: user '{name}' does not exist"
        if "--shell" in o:
            user.shell = str(o["--shell"])
        if "--home" in o:
            user.home = str(o["--home"])
        if "--groups" in o:
            groups = [g for g in str(o["--groups"]).split(",") if g]
            user.groups = sorted(set(user.groups) | set(groups)) if "--append" in o else groups
        return 0, "", ""

    def cmd_groupadd(self, argv, stdin, env):
        o, name = self._options(argv)
        if name in self.h.groups:
            return 9, "", f"groupadd: group '{name}' already exists"
        self.h.groups[name] = int(o.get("--gid", 2000 + len(self.h.groups)))
        return 0, "", ""

    # --- systemd -----------------------------------------------------------------
    def cmd_systemctl(self, argv, stdin, env):
        if self.h.init != "systemd":
            return 127, "", "sh: 1: systemctl: not found\n"
        verb = argv[1]
        if verb == "daemon-reload":
            self.h.daemon_reloads += 1
            for name, unit in self.h.units.items():
                unit.need_reload = False
                if any(p.endswith(f"/{name}.service") for p in self.h.files):
                    unit.exists = True
            return 0, "", ""
        if verb == "show" and argv.count("--") and len(argv) - argv.index("--") > 2:
            answers = [self.cmd_systemctl([*argv[:argv.index("--") + 1], name], stdin, env)
                       for name in argv[argv.index("--") + 1:]]
            return 0, "\n".join(out for _, out, _ in answers), ""   # a blank line between units
        name = argv[-1]
        unit = self.h.unit(name)
        if verb == "is-active":
            return (0, "active\n", "") if unit.exists and unit.active else (3, "inactive\n", "")
        if verb == "show":
            if not unit.exists:
                return 0, ("LoadState=not-found\nActiveState=inactive\nSubState=dead\n"
                           "UnitFileState=\nNeedDaemonReload=no\n"), ""
            return 0, (f"LoadState=loaded\nActiveState={'active' if unit.active else 'inactive'}\n"
                       f"SubState={'running' if unit.active else 'dead'}\n"
                       f"UnitFileState={'enabled' if unit.enabled else 'disabled'}\n"
                       f"NeedDaemonReload={'yes' if unit.need_reload else 'no'}\n"
                       f"MainPID={4242 if unit.active else 0}\nNRestarts={unit.restarts}\n"
                       f"ActiveEnterTimestamp=Thu 2026-11-26 02:13:58 UTC\n"
                       f"ActiveEnterTimestampMonotonic={int((123456.78 - self.h.uptime) * 1e6)}\n"), ""
        assert argv[2] == "--", argv
        if not unit.exists:
            return 5, "", f"Failed to {verb} {name}.service: Unit {name}.service not found.\n"
        if verb in ("start", "restart"):
            if unit.fails_to_start:
                unit.active = False
                return 0, "", ""
            unit.active = True
            if verb == "start":
                unit.starts += 1
            else:
                unit.restarts += 1
        elif verb == "reload":
            if not unit.active:
                return 1, "", f"{name}.service is not active, cannot reload.\n"
            unit.reloads += 1
        elif verb == "stop":
            unit.active = False
        elif verb == "enable":
            unit.enabled = True
        elif verb == "disable":
            unit.enabled = False
        else:
            return 1, "", f"fake systemctl: {verb}?"
        return 0, "", ""

    # --- the deploy's host probe -----------------------------------------------------
    def host_info(self, config_file: str, env_dir: str = "", certificate: str = "", key: str = "",
                  acme_certificate: str = "", space_paths: str = "", prefix: str = "",
                  notebook_user: str = "", addresses: str = ""):
        h = self.h
        out = [f"os={h.os}", "machine=x86_64", "glibc=2.36", f"init={h.init}", f"pid1={h.pid1}",
               f"python={h.python}"]
        out += [f"free={h.free_kb.get(p, 10 ** 8)} {p}" for p in space_paths.splitlines() if p]
        u = h.users.get(notebook_user) if notebook_user else None
        if u is not None:
            primary = next((g for g, gid in h.groups.items() if gid == u.gid), str(u.gid))
            out += [f"notebook_user={u.name}:x:{u.uid}:{u.gid}::{u.home}:{u.shell}",
                    f"notebook_user_groups={' '.join([primary] + u.groups)}"]
            config = h.files.get(config_file)
            if f"{USER_MARKERS}/{notebook_user}" in h.files or (config and config.user == u.name):
                out.append("notebook_user_ours=yes")
            if f"{u.home}/{KERNEL_ENV}/bin/python" in h.files:
                out.append("notebook_user_kernel_env=yes")
        if config_file in h.files:
            m = re.search(r'^c\.PasswordIdentityProvider\.hashed_password = "(argon2:[^"]*)"$',
                          h.text(config_file), re.M)
            if m:
                out.append(f"hashed_password={m.group(1)}")
        return 0, "\n".join(out) + "\n", ""

    # --- the day-2 tasks' init probe -------------------------------------------------
    def init_probe(self, name: str):
        h = self.h
        out = [f"init={h.init}", f"pid1={h.pid1}"]
        if h.init == "upstart":
            out.append("status=" + self._initctl_status(name, h.unit(name)))
        return 0, "\n".join(out) + "\n", ""

    # --- Upstart, and the SysV scripts it runs ---------------------------------------
    MANUAL = re.compile(r"^\s*manual\s*(#.*)?$", re.M)
    START_ON = re.compile(r"^\s*start\s+on(\s|$)", re.M)

    def _job_text(self, name: str, suffix: str) -> str:
        f = self.h.files.get(f"/etc/init/{name}.{suffix}")
        return f.data.decode() if f else ""

    def upstart_probe(self, name: str):
        job, override = self._job_text(name, "conf"), self._job_text(name, "override")
        unit = self.h.unit(name)
        if f"/etc/init/{name}.conf" in self.h.files:
            out = ["kind=upstart"]
            if self.START_ON.search(job) or self.START_ON.search(override):
                out.append("start_on=yes")
            if self.MANUAL.search(job):
                out.append("manual=job")
            if self.MANUAL.search(override):
                out.append("manual=override")
            out.append("status=" + self._initctl_status(name, unit))
        elif f"/etc/init.d/{name}" in self.h.files:
            out = ["kind=sysv"] + (["links=yes"] if unit.enabled else [])
            out.append(f"status_rc={0 if unit.active else 3}")
        else:
            out = ["kind=missing"]
        return 0, "\n".join(out) + "\n", ""

    @staticmethod
    def _initctl_status(name: str, unit: FakeUnit) -> str:
        if unit.loaded_job is None:
            return f"initctl: Unknown job: {name}"
        return f"{name} start/running, process 4242" if unit.active else f"{name} stop/waiting"

    def cmd_initctl(self, argv, stdin, env):
        if self.h.init != "upstart":
            return 127, "", "sh: 1: initctl: not found\n"
        verb = argv[1]
        if verb == "version":
            return 0, "init (upstart 1.12.1)\n", ""
        if verb == "reload-configuration":
            # Upstart (re)reads every job file; a running instance keeps its definition
            self.h.config_reloads += 1
            for path, f in self.h.files.items():
                if path.startswith("/etc/init/") and path.endswith(".conf"):
                    self.h.unit(posixpath.basename(path)[:-5]).loaded_job = f.data
            return 0, "", ""
        (name,) = argv[2:]
        unit = self.h.unit(name)
        if unit.loaded_job is None:
            return 1, "", f"initctl: Unknown job: {name}\n"
        if verb == "status":
            return 0, self._initctl_status(name, unit) + "\n", ""
        if verb == "start":
            if unit.active:
                return 1, "", f"initctl: Job is already running: {name}\n"
            if unit.fails_to_start:
                return 1, "", "initctl: Job failed to start\n"
            unit.active, unit.starts, unit.running_job = True, unit.starts + 1, unit.loaded_job
            return 0, f"{name} start/running, process 4242\n", ""
        if not unit.active:
            return 1, "", "initctl: Unknown instance: \n"
        if verb == "stop":
            unit.active, unit.stops = False, unit.stops + 1
            return 0, f"{name} stop/waiting\n", ""
        if verb == "restart":       # the same definition as before: Upstart does not re-read it
            if unit.fails_to_start:
                unit.active = False
                return 1, "", "initctl: Job failed to start\n"
            unit.restarts += 1
            return 0, f"{name} start/running, process 4243\n", ""
        if verb == "reload":
            unit.reloads += 1
            return 0, "", ""
        return 1, "", f"fake initctl: {verb}?"

    def cmd_service(self, argv, stdin, env):
        name, verb = argv[1], argv[2]
        if f"/etc/init.d/{name}" not in self.h.files:
            return 1, "", f"{name}: unrecognized service\n"
        unit = self.h.unit(name)
        if verb == "status":
            return (0, f" * {name} is running\n", "") if unit.active else (3, f" * {name} is not running\n", "")
        if verb == "start":
            unit.active, unit.starts = True, unit.starts + (0 if unit.active else 1)
        elif verb == "stop":
            unit.active, unit.stops = False, unit.stops + 1
        elif verb == "restart":
            unit.active, unit.restarts = True, unit.restarts + 1
        elif verb == "reload":
            if not unit.active:
                return 1, "", f" * {name} is not running\n"
            unit.reloads += 1
        else:
            return 1, "", f"fake service: {verb}?"
        return 0, "", ""

    def cmd_update_rc_d(self, argv, stdin, env):
        name, verb = argv[1], argv[2]
        if f"/etc/init.d/{name}" not in self.h.files:
            return 1, "", f"update-rc.d: /etc/init.d/{name}: file does not exist\n"
        if verb in ("enable", "disable"):
            self.h.unit(name).enabled = verb == "enable"
        elif verb != "defaults":
            return 1, "", f"fake update-rc.d: {verb}?"
        return 0, "", ""

    def cmd_sed(self, argv, stdin, env):
        # only the override edit the service state makes: drop `manual` lines
        assert argv[1:4] == ["-i", "-E", "/^[[:space:]]*manual[[:space:]]*(#.*)?$/d"] and argv[4] == "--", argv
        path = argv[5]
        if path not in self.h.files:
            return 2, "", f"sed: can't read {path}: No such file or directory\n"
        f = self.h.files[path]
        f.data = "".join(line for line in f.data.decode().splitlines(keepends=True)
                         if not self.MANUAL.match(line.rstrip("\n"))).encode()
        return 0, "", ""

    def cmd_tail(self, argv, stdin, env):
        assert argv[1] == "-n", argv
        path = argv[3]
        if path not in self.h.files:
            return 1, "", f"tail: cannot open '{path}' for reading: No such file or directory\n"
        lines = self.h.text(path).splitlines(keepends=True)
        return 0, "".join(lines[-int(argv[2]):]), ""

    # --- python -----------------------------------------------------------------
    def cmd_python3(self, argv, stdin, env):
        assert argv[1:3] == ["-m", "venv"], argv
        venv = argv[-1]
        self.h.add_dir(venv)
        self.h.add_file(f"{venv}/bin/python", b"#!fake python\n", 0o755)
        return 0, "", ""

    def unsatisfied(self, ask: str, venv: str, globs: str):
        """The probe: installed means named; every bare name installed is answered from
        the dist-info folders (``globs``), anything else by the interpreter (``ask``)."""
        if f"{venv}/bin/python" not in self.h.files:
            return 0, "absent\n", ""
        argv = list(split_words(ask))
        requirements = argv[argv.index(packages.UNSATISFIED_SCRIPT) + 1:]
        if globs and not self._lacking(venv, requirements):
            return 0, "ok\n", ""
        rc, out, err = self.run_argv(argv, None, {})
        return 0, ("ok\n" + out) if rc == 0 else f"broken\n{err}", ""

    def _lacking(self, venv: str, requirements: list[str]) -> list[str]:
        have = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in self.h.pip.get(venv, [])}
        return [r for r in requirements if re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() not in have]

    def venv_python(self, argv, stdin, env):
        venv = posixpath.dirname(posixpath.dirname(argv[0]))
        if self.h.files[argv[0]].data == b"broken":
            return 1, "", "ImportError: libpython3.11.so.1.0\n"
        if argv[1:4] == ["-I", "-c", packages.UNSATISFIED_SCRIPT]:
            return 0, "".join(r + "\n" for r in self._lacking(venv, argv[4:])), ""
        assert argv[1:4] == ["-m", "pip", "install"], argv
        if "--find-links" in argv:
            links = argv[argv.index("--find-links") + 1]
            if links not in self.h.dirs:
                return 1, "", f"ERROR: find-links {links} does not exist"
        reqs = [a for a in argv[4:] if not a.startswith("-") and a != argv[argv.index("--find-links") + 1]
                ] if "--find-links" in argv else [a for a in argv[4:] if not a.startswith("-")]
        self.h.pip.setdefault(venv, []).extend(reqs)
        return 0, f"Successfully installed {' '.join(reqs)}\n", ""


__all__ = ["FakeHost", "FakeRunner", "FakeFile", "FakeDir", "FakeUser", "FakeUnit"]
