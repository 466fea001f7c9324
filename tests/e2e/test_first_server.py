"""docs/first-server.md followed literally by a newcomer, on one sandbox host.

The newcomer is a user of this machine without root (the page's one root step on the
controller, installing python3-venv, is done here already), with a fresh copy of the
project in their home and an SSH key of their own; the server is a sandbox host with a sudo user `admin` holding
that key, as a VPS provider hands it over. Each command of the page's ```sh blocks is
typed as the page shows it, with the page's example values (address, name, e-mail)
replaced by this sandbox's, as a reader puts in theirs; the page's hosts.yaml block is
the inventory, plus what this sandbox needs and a real server does not (the apt proxy,
wheels from here, Pebble as the ACME CA). The name resolves on the host through Pebble's
DNS, as public DNS would.

First the name points elsewhere (the reader skipped step 2): the dry run and the deploy
stop with the page's own line, and the host shows that nothing ran, certbot least of
all. Then the record is pointed at the host, and the same commands go through.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from e2e_support import PROJECT

from jupyterfab.dev import sandbox
from jupyterfab.dev.doubles import pebble as pebble_mod

pytestmark = pytest.mark.e2e
PAGE = PROJECT / "docs" / "first-server.md"
USER = "jfnewcomer"
PASSWORD = "e2e-first-server-password"
NAME = "jupyter.newcomer-e2e.net"       # public-looking: only the sandbox's DNS knows it
EMAIL = "ops@newcomer-e2e.net"
ELSEWHERE = "198.51.100.7"              # the page's example of a wrong A record
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"     # util-linux: root becomes the user

# Every command of the page's ```sh blocks, in its order: None runs it, a text is why not
# (test_the_list_is_the_pages_commands keeps the two the same).
PAGE_COMMANDS: dict[str, str | None] = {
    "python3 -m venv .venv": None,
    ".venv/bin/pip install .": None,
    ".venv/bin/fab --list": None,
    "ssh admin@203.0.113.10 sudo -n true": None,
    "install -m 600 /dev/null ~/.jupyter-password": None,
    "cat > ~/.jupyter-password": None,
    ".venv/bin/fab -H jupyter1 deploy --dry-run": None,
    ".venv/bin/fab -H jupyter1 deploy --password-file ~/.jupyter-password": None,
    ".venv/bin/invoke verify --hosts jupyter1 --password-file ~/.jupyter-password": None,
}
DRY_RUN, DEPLOY = ".venv/bin/fab -H jupyter1 deploy --dry-run", \
    ".venv/bin/fab -H jupyter1 deploy --password-file ~/.jupyter-password"


def blocks(text: str, kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", text, re.M | re.S)


def page_commands(text: str) -> list[str]:
    """The commands of the page's ```sh blocks, less their comments, in order."""
    return [re.split(r"\s+#", line)[0].strip() for block in blocks(text, "sh")
            for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_list_is_the_pages_commands():
    assert page_commands(PAGE.read_text()) == list(PAGE_COMMANDS)


def on_host(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(sandbox.ssh_command(sandbox.workdir_for(PROJECT), "sandbox1", command),
                          capture_output=True, text=True, timeout=120)


class Newcomer:
    """A user of this machine, without root: their home, their copy, their shell."""

    def __init__(self, base: Path):
        self.home = base / "home"
        subprocess.run(["userdel", "--remove", USER], capture_output=True)
        subprocess.run(["useradd", "--create-home", "--home-dir", str(self.home), "--shell", "/bin/bash",
                        USER], check=True, capture_output=True)
        self.uid = pwd.getpwnam(USER).pw_uid
        self.copy = self.home / "jupyterfab"

    def env(self) -> dict[str, str]:
        passed = {k: v for k, v in os.environ.items()
                  if k.startswith("PIP_") or k == sandbox.LOCK_HOLDER_ENV}   # this machine's index
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home), "USER": USER,
                "LOGNAME": USER, "SHELL": "/bin/bash", "LANG": "C.UTF-8", **passed}

    def typed(self, command: str, stdin: str = "", timeout: float = 900, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``command`` typed into the newcomer's shell, in their copy."""
        return subprocess.run([RUNUSER, "-u", USER, "--", "bash", "-c", command], cwd=cwd or self.copy,
                              env={**self.env(), **(env or {})}, input=stdin, capture_output=True,
                              text=True, timeout=timeout)

    def write(self, path: Path, text: str) -> None:
        path.write_text(text)
        os.chown(path, self.uid, self.uid)

    def remove(self) -> None:
        # what the test's commands left running as the newcomer (an ssh master, say): by id
        left = subprocess.run(["ps", "-u", USER, "-o", "pid="], capture_output=True, text=True).stdout
        for pid in left.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["userdel", "--remove", USER], capture_output=True)


@pytest.fixture(scope="module")
def newcomer(sandbox_factory, tmp_path_factory):
    """The newcomer, their copy of the project and key; the host with its sudo user;
    Pebble as the CA and DNS, the name pointing elsewhere for now."""
    missing = pebble_mod.available()
    if missing:
        pytest.fail(f"the first-server test needs Pebble: {missing}")
    inv = sandbox_factory(1)
    host = inv.hosts["sandbox1"]
    base = Path(tempfile.mkdtemp(prefix="jupyterfab-newcomer-"))
    base.chmod(0o755)
    user = None
    try:
        user = Newcomer(base)
        shutil.copytree(PROJECT, user.copy, ignore=shutil.ignore_patterns(
            ".venv", ".sandbox", ".git", "site", "artifacts", "backups", "build", "__pycache__",
            "*.egg-info", ".pytest_cache", ".hypothesis", ".ruff_cache"))
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(user.copy)], check=True)
        keygen = user.typed("ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519", cwd=user.home)
        assert keygen.returncode == 0, keygen.stderr
        # said yes to the host key once, after checking it (the page's step 4)
        user.write(user.home / ".ssh" / "known_hosts",
                   (sandbox.workdir_for(PROJECT) / "known_hosts").read_text())
        public_key = (user.home / ".ssh" / "id_ed25519.pub").read_text().strip()
        made = on_host("useradd --create-home --shell /bin/bash admin && install -d -m 700 -o admin "
                       f"-g admin ~admin/.ssh && echo '{public_key}' > ~admin/.ssh/authorized_keys && "
                       "chown admin: ~admin/.ssh/authorized_keys && "
                       "echo 'admin ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/admin")
        assert made.returncode == 0, made.stderr
        with pebble_mod.Pebble(sandbox.bridge_address(), tmp_path_factory.mktemp("pebble")) as pebble:
            pebble.add_a(NAME, ELSEWHERE)
            ca_bundle = user.home / "pebble-ca.pem"
            user.write(ca_bundle, pebble.ca_bundle_path.read_text())
            sandboxed = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
            yield {"user": user, "host": host, "pebble": pebble,
                   "values": {"203.0.113.10": host.address, "jupyter.example.org": NAME,
                              "ops@example.org": EMAIL},
                   # what this sandbox needs and a server on the internet does not
                   "sandbox_vars": {"apt_proxy": sandboxed["defaults"]["vars"]["apt_proxy"],
                                    "wheelhouse": "build", "acme_server": pebble.directory_url,
                                    "acme_ca_bundle": str(ca_bundle)}}
    finally:
        if user:
            user.remove()
        shutil.rmtree(base, ignore_errors=True)


def yours(text: str, values: dict[str, str]) -> str:
    """The page's example values replaced by this reader's."""
    for example, value in values.items():
        text = text.replace(example, value)
    return text


@pytest.fixture(scope="module")
def followed(newcomer):
    """The page, command by command; what each printed, by step."""
    user, values = newcomer["user"], newcomer["values"]
    text = PAGE.read_text()
    [inventory_block] = blocks(text, "yaml")
    said: dict[str, subprocess.CompletedProcess] = {}
    for command in page_commands(text):
        if PAGE_COMMANDS[command] is not None:
            continue
        if command.startswith("ssh "):       # step 3 comes before it: hosts.yaml
            user.write(user.copy / "hosts.yaml", inventory_block)
            said["copied unchanged"] = user.typed(DRY_RUN)
            data = yaml.safe_load(yours(inventory_block, values))
            data["defaults"]["vars"].update(newcomer["sandbox_vars"])
            user.write(user.copy / "hosts.yaml", yaml.safe_dump(data))
        if command == DRY_RUN and "elsewhere: " + DRY_RUN not in said:
            # the name still points elsewhere (the reader skipped step 2)
            for attempt in (DRY_RUN, DEPLOY):
                said["elsewhere: " + attempt] = user.typed(attempt)
            said["host after the refusals"] = on_host(
                "for p in /etc/letsencrypt /var/log/letsencrypt /etc/nginx /etc/jupyterfab; do "
                '[ -e "$p" ] && echo "there: $p"; done; '
                'command -v certbot >/dev/null && echo "there: certbot"; '
                "journalctl --no-pager -q _COMM=certbot | head -3; echo end")
            newcomer["pebble"].clear_a(NAME)          # step 2, done: the A record points at the host
            newcomer["pebble"].add_a(NAME, newcomer["host"].address)
        started = time.monotonic()
        said[command] = user.typed(yours(command, values),
                                   stdin=PASSWORD + "\n" if command.startswith("cat >") else "",
                                   env=trusting(newcomer) if "verify" in command else None)
        print(f"\n{command}: {time.monotonic() - started:.1f} s")     # the report's figures (-s)
    said["again"] = user.typed(DEPLOY)
    return said


def trusting(newcomer) -> dict[str, str]:
    """This machine's CAs and the test CA's root, as a machine trusts Let's Encrypt's."""
    user = newcomer["user"]
    bundle = user.home / "trusted.pem"
    user.write(bundle, Path(ssl.get_default_verify_paths().cafile).read_text()
               + newcomer["pebble"].issuing_roots_pem())
    return {"SSL_CERT_FILE": str(bundle)}


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def test_the_pages_hosts_yaml_copied_unchanged_fails_loudly_naming_server_name(followed):
    proc = followed["copied unchanged"]
    assert proc.returncode == 2, output(proc)
    assert proc.stderr.startswith("error: jupyter1: server_name: jupyter.example.org is an example name")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in output(proc)


def test_with_the_name_pointing_elsewhere_the_page_s_line_stops_the_deploy(newcomer, followed):
    [line] = [line for line in blocks(PAGE.read_text(), "text")[0].splitlines() if line.strip()]
    expected = yours(line, newcomer["values"])
    for attempt in (DRY_RUN, DEPLOY):
        proc = followed["elsewhere: " + attempt]
        assert proc.returncode == 1 and "Traceback" not in output(proc), output(proc)
        assert expected in output(proc), f"{attempt}:\n{output(proc)}"
        print(f"{attempt}: {len(output(proc).splitlines())} lines")       # the report's figures (-s)


def test_the_refused_deploy_changed_nothing_and_never_ran_certbot(followed):
    host = followed["host after the refusals"]
    assert host.returncode == 0 and host.stdout == "end\n", host.stdout + host.stderr


def test_each_command_of_the_page_exits_0_without_a_traceback(followed):
    for command, why in PAGE_COMMANDS.items():
        if why is None:
            proc = followed[command]
            assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{output(proc)[-3000:]}"
            assert "Traceback" not in output(proc), f"{command}:\n{output(proc)[-3000:]}"


def test_the_controller_is_a_plain_venv_the_newcomer_made(newcomer, followed):
    user = newcomer["user"]
    venv = user.copy / ".venv"
    assert venv.stat().st_uid == user.uid and (venv / "bin" / "fab").stat().st_uid == user.uid
    [installed] = venv.glob("lib/python*/site-packages/jupyterfab/__init__.py")    # not an editable
    assert installed.stat().st_uid == user.uid
    assert user.typed("id -u").stdout.strip() != "0"


def test_the_deploy_got_its_certificate_from_the_acme_ca(newcomer, followed):
    said = output(followed[DEPLOY])
    assert f"certificate for {NAME} issued by {newcomer['pebble'].directory_url}" in said, said
    assert "jupyter1  ok, " in said


def test_a_second_deploy_changes_nothing(followed):
    proc = followed["again"]
    assert proc.returncode == 0 and "jupyter1  ok, no changes" in proc.stdout, output(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_quick_starts_tunnel_reaches_a_host_on_a_private_bridge_by_name(newcomer, followed):
    """quickstart.md's SOCKS tunnel, with the deployed host as the remote machine: the
    name resolves there (here through Pebble's DNS, there through its /etc/hosts)."""
    [tunnel] = [c for c in page_commands((PROJECT / "docs" / "quickstart.md").read_text())
                if c.startswith("ssh -N -D")]
    port = free_port()
    command = tunnel.replace("1080", str(port)).replace("you@vps.example.net",
                                                        f"admin@{newcomer['host'].address}")
    user = newcomer["user"]
    roots = user.home / "roots.pem"
    user.write(roots, newcomer["pebble"].issuing_roots_pem())
    process = subprocess.Popen([RUNUSER, "-u", USER, "--", "bash", "-c", f"exec {command}"],
                               env=user.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            subprocess.run(["sleep", "0.2"])
        got = user.typed(f"curl -sS -o /dev/null -w '%{{http_code}}' --socks5-hostname 127.0.0.1:{port} "
                         f"--cacert {roots} https://{NAME}/login", cwd=user.home, timeout=60)
        assert got.stdout == "200", output(got)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
