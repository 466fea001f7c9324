"""Local tasks: sandbox hosts, tests, verification and benchmarks.

Run ``invoke --list`` for the list and ``invoke --help TASK`` for each task's options.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from jupyterfab import deploy, schema
from jupyterfab import sandbox as sb
from jupyterfab.errors import one_line

PROJECT = Path(__file__).resolve().parent


@task(help={"hosts": "how many hosts to boot (default 1)",
            "release": f"Debian release: {' or '.join(sb.RELEASES)} (default {sb.DEFAULT_RELEASE})",
            "subnet": f"address range for the hosts (default {sb.DEFAULT_SUBNET}, reserved for testing)"})
@one_line
def up(c, hosts="1", release=sb.DEFAULT_RELEASE, subnet=sb.DEFAULT_SUBNET):
    """Boot fresh sandbox hosts (Debian + systemd + sshd) and write .sandbox/hosts.yaml."""
    if not str(hosts).isdigit() or not 1 <= int(hosts) <= 250:
        raise Exit(f"error: --hosts takes a number of hosts (1 to 250), not {hosts!r}", code=2)
    with sb.exclusive():   # never under a test session's or a demo's hosts
        booted = sb.up(PROJECT, count=int(hosts), release=release, subnet=subnet)
    out = sb.workdir_for(PROJECT)
    for h in booted:
        print(f"{h.name}\t{h.address}")
    print(f"inventory: {out / 'hosts.yaml'}\nssh:       ssh -F {out / 'ssh_config'} {booted[0].name}")


@task
@one_line
def down(c):
    """Stop every sandbox host and remove namespaces, links, mounts and processes."""
    with sb.exclusive():
        sb.down()


@task(name="list")
@one_line
def list_(c):
    """Show the sandbox hosts, their addresses and whether they run."""
    hosts = sb.list_hosts()
    if not hosts:
        print("no sandbox hosts (invoke sandbox.up boots some)")
    for h in hosts:
        print(f"{h.name}\t{h.address}\t{'running' if sb.is_running(h.name) else 'stopped'}")


@task(positional=["name"], help={"name": "host name, e.g. sandbox1", "command": "run this instead of a shell"})
@one_line
def ssh(c, name, command=""):
    """Open a root shell (or run a command) on a sandbox host."""
    out = sb.workdir_for(PROJECT)
    args = ["ssh", "-F", str(out / "ssh_config"), name] + ([command] if command else [])
    os.execvp("ssh", args)


@task(positional=["name"], help={"name": "host name, e.g. sandbox1"})
@one_line
def reboot(c, name):
    """Reboot a sandbox host from inside and wait until it is back."""
    boot_id = sb.reboot(PROJECT, name)
    print(f"{name} is back (boot id {boot_id})")


@task(help={"e2e": "also run the end-to-end tests on sandbox hosts (needs root)",
            "pytest_args": "extra arguments for pytest"})
@one_line
def test(c, e2e=True, pytest_args=""):
    """Run the test suite: unit tests, and end-to-end tests on sandbox hosts."""
    args = [sys.executable, "-m", "pytest"]
    if not e2e:
        args += ["-m", "not e2e"]
    args += pytest_args.split()
    rc = subprocess.call(args, cwd=PROJECT)
    raise Exit(code=rc)


@task(name="update-golden")
@one_line
def update_golden(c):
    """Rewrite tests/unit/golden/ from the templates (after a deliberate change); review git diff."""
    from jupyterfab.testing import golden

    for path in golden.update():
        print(f"rewrote {path.relative_to(PROJECT)}: review `git diff` before committing")


def _sandbox_password_file() -> Path:
    """A generated password for sandbox hosts, kept beside their inventory (0600)."""
    import secrets

    path = sb.workdir_for(PROJECT) / "password"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(12) + "\n")
    return path


def _fab(*args: str) -> int:
    return subprocess.call([str(Path(sys.executable).parent / "fab"), *args], cwd=PROJECT)


@task(help={"cloudflare": "also put Cloudflare in front: a local stand-in of Cloudflare's API "
                          "issues the origin certificate (HTTPS on 443) and keeps DNS and "
                          "zone settings; NGINX admits Cloudflare's ranges only"})
@one_line
def demo(c, cloudflare=False):
    """The main job on the built-in default: boot a sandbox host, deploy Jupyter, verify it."""
    with sb.exclusive():
        if cloudflare:
            _demo_with_cloudflare(c)
        else:
            _demo(c)


def _demo_with_cloudflare(c):
    """As the demo, with the Cloudflare stand-in; this machine plays Cloudflare's edge."""
    import contextlib

    hosts = sb.up(PROJECT, count=1)
    edge = sb.add_edge_address()
    work = sb.workdir_for(PROJECT)
    password = _sandbox_password_file()
    ca_file, inventory_file = work / "cloudflare-ca.pem", work / "hosts-cloudflare.yaml"
    host = hosts[0]
    with contextlib.ExitStack() as stack:
        standin, token_file = _start_cloudflare_standin(stack)
        ca_file.write_text(standin.ca_certificate_pem)
        _write_cloudflare_inventory(str(inventory_file))
        if _fab("-H", host.name, "deploy", "--inventory", str(inventory_file), "--password-file",
                str(password), "--cloudflare-token-file", str(token_file)):
            raise Exit("demo: the deploy failed (see above)", code=1)
        records = [r for z in standin.zones for r in standin.records(z)]
    verify(c, hosts=host.name, inventory=str(inventory_file), password_file=str(password),
           ca_file=str(ca_file), edge_address=edge)
    print(f"""
Jupyter is running on {host.name} ({host.address}) behind NGINX with HTTPS, as if behind Cloudflare:
  DNS (stand-in): {', '.join(f"{r['type']} {r['name']} -> {r['content']} (proxied)" for r in records)}
  Only Cloudflare's ranges get in; this machine plays Cloudflare's edge from {edge}:
    curl --interface {edge} --resolve jupyter.example.com:443:{host.address} \\
         --cacert {ca_file} https://jupyter.example.com/login
  From anywhere else the origin answers 403:
    curl -k --resolve jupyter.example.com:443:{host.address} https://jupyter.example.com/login
  Password:  in {password} (mode 0600)
  Tear down: sudo ./run sandbox.down""")


def _demo(c):
    hosts = sb.up(PROJECT, count=1)
    inventory_file = str(sb.workdir_for(PROJECT) / "hosts.yaml")
    password = _sandbox_password_file()
    names = ",".join(h.name for h in hosts)
    if _fab("-H", names, "deploy", "--inventory", inventory_file, "--password-file", str(password)):
        raise Exit("demo: the deploy failed (see above)", code=1)
    verify(c, hosts=names, inventory=inventory_file, password_file=str(password))
    host = hosts[0]
    print(f"""
Jupyter is running on {host.name} ({host.address}), behind NGINX, as jupyter.example.com.
  Open it:   curl -H 'Host: jupyter.example.com' http://{host.address}/login
             or add "{host.address} jupyter.example.com" to /etc/hosts and browse http://jupyter.example.com/
  Password:  in {password} (mode 0600)
  Redeploy:  .venv/bin/fab -H {host.name} deploy --inventory {inventory_file} --password-file {password}
  Tear down: sudo ./run sandbox.down""")


def _wait_until_serving(hosts, timeout: float = 120.0, edge: str | None = None) -> None:
    """Freshly started Jupyter servers spend their first seconds busy; wait them out.
    ``edge``: the host is locked down to Cloudflare and serves HTTPS; ask from there."""
    import time

    from jupyterfab.jupyterclient import JupyterSession

    deadline = time.monotonic() + timeout
    url = "https://jupyter.example.com" if edge else "http://jupyter.example.com"
    for h in hosts:
        session = JupyterSession(h.address, "jupyter.example.com", url, verify=not edge,
                                 source_address=edge)
        while time.monotonic() < deadline:
            try:
                if session.get("/login").status_code == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
    time.sleep(5)


@task(help={"sizes": "comma-separated host counts to measure (default 1,4)",
            "warm": "run one unmeasured deploy first so controller caches (wheels, apt) are warm",
            "cloudflare": "with Cloudflare in front (the API stand-in): certificate, TLS, "
                          "lockdown, zone settings and DNS in every deploy"})
@one_line
def bench(c, sizes="1,4", warm=True, cloudflare=False):
    """Benchmark: wall time of a first deploy and of a no-op redeploy, per host count."""
    import contextlib

    password = _sandbox_password_file()
    figures = []
    with sb.exclusive(), contextlib.ExitStack() as stack:
        extra: list[str] = []
        inventory_file, api_url = str(sb.workdir_for(PROJECT) / "hosts.yaml"), ""
        if cloudflare:
            inventory_file, extra, api_url = _bench_cloudflare(stack)
        _bench_rows(figures, sizes, warm, password, inventory_file, extra, api_url)
    what = "with Cloudflare (stand-in), " if cloudflare else ""
    print(f"\nhosts   first deploy   no-op redeploy   ({what}wall time of `fab -H ... deploy`, sandbox hosts)")
    for n, first, noop in figures:
        print(f"{n:>5}   {first:>10.1f} s   {noop:>12.2f} s")


def _bench_cloudflare(stack) -> tuple[str, list[str], str]:
    """A Cloudflare stand-in for the benchmark's lifetime: (inventory, fab arguments, API URL)."""
    standin, token = _start_cloudflare_standin(stack)
    inventory_file = sb.workdir_for(PROJECT) / "hosts-bench-cloudflare.yaml"   # rewritten after each sandbox.up
    return str(inventory_file), ["--cloudflare-token-file", str(token)], standin.base_url


def _start_cloudflare_standin(stack):
    """The Cloudflare API stand-in with the zone example.com, until ``stack`` closes;
    and a token for it in a 0600 file: (stand-in, token file)."""
    from jupyterfab.testing.cloudflare_api import CloudflareStandIn

    standin = stack.enter_context(CloudflareStandIn())
    standin.add_zone("example.com")
    # the stand-in is reached as an override (never from an inventory): the deploys run
    # from here inherit it
    os.environ[schema.CLOUDFLARE_API_URL_ENV] = standin.base_url
    stack.callback(os.environ.pop, schema.CLOUDFLARE_API_URL_ENV, None)
    work = sb.workdir_for(PROJECT)
    work.mkdir(exist_ok=True)
    token = work / "cloudflare-token"
    token.write_text(standin.add_token() + "\n")
    token.chmod(0o600)
    return standin, token


def _write_cloudflare_inventory(inventory_file: str) -> None:
    import yaml

    data = yaml.safe_load((sb.workdir_for(PROJECT) / "hosts.yaml").read_text())
    data["defaults"]["vars"].update(cloudflare_zone="example.com")
    Path(inventory_file).write_text(yaml.safe_dump(data))


def _bench_rows(figures, sizes, warm, password, inventory_file, extra=(), api_url=""):
    import time

    edge = None

    def up(count):
        nonlocal edge
        hosts = sb.up(PROJECT, count=count)
        if api_url:
            edge = sb.add_edge_address()
            _write_cloudflare_inventory(inventory_file)
        return hosts

    try:
        if warm:
            up(1)
            _fab("-H", "sandbox1", "deploy", "--inventory", inventory_file, "--password-file",
                 str(password), *extra)
        for n in [int(x) for x in sizes.split(",")]:
            hosts = up(n)
            # The previous hosts' teardown deleted ~0.5 GB each; let the disk finish
            # that (sync) so it is not billed to this deploy.
            os.sync()
            time.sleep(2)
            names = ",".join(h.name for h in hosts)
            row = [n]
            # The password is needed for the first deploy only (or to change it).
            for password_args in (["--password-file", str(password)], []):
                started = time.monotonic()
                rc = _fab("-H", names, "deploy", "--inventory", inventory_file, *password_args, *extra)
                row.append(time.monotonic() - started)
                if rc:
                    raise Exit(f"bench: deploy to {n} host(s) failed", code=1)
                _wait_until_serving(hosts, edge=edge)   # measure the redeploy in steady state
            figures.append(row)
    finally:
        sb.down(quiet=True)


def _ssh_config_for(hosts, control_dir: str) -> str:
    """ssh_config for testinfra's ssh backend: strict host keys when the inventory
    names a known_hosts, and one master connection per host for every check."""
    blocks = []
    for h in hosts:
        lines = [f"Host {h.name}", f"  HostName {h.address}", f"  User {h.user}", f"  Port {h.port}",
                 "  BatchMode yes", "  ConnectTimeout 10", "  ControlMaster auto",
                 f"  ControlPath {control_dir}/%C", "  ControlPersist 30"]
        if h.key:
            lines += [f"  IdentityFile {h.key}", "  IdentitiesOnly yes"]
        if h.known_hosts:
            lines += [f"  UserKnownHostsFile {h.known_hosts}", "  StrictHostKeyChecking yes"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _inventory_path(inventory_file):
    if inventory_file:
        return Path(inventory_file)
    if os.environ.get("JUPYTERFAB_INVENTORY"):
        return Path(os.environ["JUPYTERFAB_INVENTORY"])
    sandbox_inv = sb.workdir_for(PROJECT) / "hosts.yaml"
    return sandbox_inv if sandbox_inv.exists() and sb.list_hosts() else PROJECT / "hosts.yaml"


@task(help={"hosts": "comma-separated inventory names (default: every host in the inventory)",
            "inventory": "inventory file (default: $JUPYTERFAB_INVENTORY, the sandbox's when it runs, else hosts.yaml)",
            "password_file": "file (mode 0600) with the Jupyter password; else $JUPYTERFAB_PASSWORD",
            "ca_file": "CA certificate(s) the origin's TLS certificate must chain to "
                       "(e.g. Cloudflare's Origin CA root); default: chain not checked for "
                       "Origin CA certificates, the system's CAs for your own",
            "edge_address": "a local address inside Cloudflare's ranges to test the origin "
                            "lockdown from; default: through Cloudflare, by the public name",
            "pytest_args": "extra arguments for pytest, e.g. '-k websocket'",
            "browser": "also drive headless Chromium to the public_url: log in, open a notebook, "
                       "run a cell, keep a screenshot in artifacts/ (needs Debian's chromium and "
                       "chromium-driver)"})
@one_line
def verify(c, hosts="", inventory="", password_file="", ca_file="", edge_address="", pytest_args="",
           browser=False):
    """Prove deployed hosts work: files, services, ports, login and a kernel through NGINX;
    with TLS and Cloudflare also the certificate, the HTTPS redirect and the lockdown;
    with --browser also JupyterLab in a real browser."""
    import tempfile

    from jupyterfab import inventory as inventory_mod

    if browser:
        from jupyterfab.verify import browser as browser_mod
        browser_mod.require_browser()
    path = _inventory_path(inventory)
    inv = inventory_mod.load(path)
    chosen = inv.select(hosts.split(",") if hosts else list(inv.hosts))
    deploy.check_plans(chosen)      # Cloudflare/TLS settings, before any connection
    with tempfile.TemporaryDirectory(prefix="jupyterfab-verify-") as tmp:
        cfg = Path(tmp) / "ssh_config"
        cfg.write_text(_ssh_config_for(chosen, tmp))
        env = {**os.environ, "JUPYTERFAB_VERIFY_INVENTORY": str(path)}
        if password_file:
            env["JUPYTERFAB_PASSWORD_FILE"] = password_file
        if ca_file:
            env["JUPYTERFAB_VERIFY_CA"] = str(Path(ca_file).resolve())
        if edge_address:
            env["JUPYTERFAB_VERIFY_EDGE_ADDRESS"] = edge_address
        env.setdefault("JUPYTERFAB_ARTIFACTS", str(PROJECT / "artifacts"))   # browser screenshots
        args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=",
                "--rootdir", str(PROJECT / "jupyterfab/verify"), "-q", "-rfE",
                str(PROJECT / "jupyterfab/verify"), f"--ssh-config={cfg}",
                "--hosts=" + ",".join(f"ssh://{h.name}" for h in chosen),
                *(["--browser"] if browser else []), *pytest_args.split()]
        rc = subprocess.call(args, cwd=PROJECT, env=env)
        for h in chosen:   # close the master connections before their folder goes
            subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", h.name], capture_output=True)
    if rc:
        raise Exit(f"verify failed for {', '.join(h.name for h in chosen)}", code=rc)
    print(f"verified: {', '.join(h.name for h in chosen)}")


sandbox = Collection("sandbox", up, down, list_, ssh, reboot)
ns = Collection(sandbox, test, demo, verify, bench, update_golden)
