"""Local tasks: sandbox hosts, tests, verification and benchmarks.

Run ``./run --list`` for the list and ``./run --help TASK`` for each task's options.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from invoke import Collection, Exit, task

from jupyterfab.cli import one_line
from jupyterfab.dev import demo_record
from jupyterfab.dev import sandbox as sb
from jupyterfab.engine import shell
from jupyterfab.inventory import schema, selection
from jupyterfab.stack import deploy as deploying
from jupyterfab.stack import passwords

PROJECT = Path(__file__).resolve().parent
ARTIFACTS = PROJECT / "artifacts"       # the bench's logs, verify's screenshots


REPLACE_HELP = ("destroy the sandbox hosts already running (notebooks included) instead of "
                "refusing to")


@task(help={"count": "how many hosts to boot (default 1)",
            "replace": REPLACE_HELP,
            "release": f"Debian release: {' or '.join(sb.RELEASES)} (default {sb.DEFAULT_RELEASE})",
            "subnet": f"address range for the hosts (default {sb.DEFAULT_SUBNET}, reserved for testing)"})
@one_line
def up(c, count="1", replace=False, release=sb.DEFAULT_RELEASE, subnet=sb.DEFAULT_SUBNET):
    """Boot fresh sandbox hosts (Debian + systemd + sshd) and write .sandbox/hosts.yaml.

    Refuses while sandbox hosts run, naming them, unless --replace."""
    if not str(count).isdigit() or not 1 <= int(count) <= 250:
        raise Exit(f"error: --count takes a number of hosts (1 to 250), not {count!r}", code=2)
    sb.check_release(release)   # a bad --release or --subnet: one line before the lock and any host
    sb.Network.parse(subnet)
    with sb.exclusive():   # never under a test session's or a demo's hosts
        booted = sb.up(PROJECT, count=int(count), release=release, subnet=subnet, replace=replace)
    out = sb.workdir_for(PROJECT)
    for h in booted:
        print(f"{h.name}\t{h.address}")
    print(f"inventory: {out / 'hosts.yaml'}\nssh:       ssh -F {out / 'ssh_config'} {booted[0].name}")


@task
@one_line
def down(c):
    """Stop every sandbox host and remove all it made, its inventories included.

    Namespaces, links, mounts, processes, and the inventories and ssh files written
    for the hosts."""
    with sb.exclusive():
        sb.down(project_dir=PROJECT)


@task(name="list")
@one_line
def list_(c):
    """Show the sandbox hosts, their addresses and whether they run."""
    hosts = sb.list_hosts()
    if not hosts:
        print("no sandbox hosts (./run sandbox.up boots some)")
    for h in hosts:
        print(f"{h.name}\t{h.address}\t{'running' if sb.is_running(h.name) else 'stopped'}")


@task(positional=["name"], help={"name": "host name, e.g. sandbox1", "command": "run this instead of a shell"})
@one_line
def ssh(c, name, command=""):
    """Open a root shell (or run a command) on a sandbox host."""
    config = sb.workdir_for(PROJECT) / "ssh_config"
    known = [line.split()[1] for line in config.read_text().splitlines()
             if line.startswith("Host ")] if config.is_file() else []
    if name not in known:   # else ssh looks the name up in DNS and tries whatever answers
        raise Exit(f"error: no sandbox host named {name!r}"
                   + (f" (this project's: {', '.join(known)})" if known else
                      " (this project has none running: `./run sandbox.up`)"), code=2)
    args = ["ssh", "-F", str(config), name] + ([command] if command else [])
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
    args = [sys.executable, "-m", "pytest", *([] if e2e else ["-m", "not e2e"]), *pytest_args.split()]
    raise Exit(code=subprocess.call(args, cwd=PROJECT))


@task(name="update-golden")
@one_line
def update_golden(c):
    """Rewrite tests/unit/golden/ from the templates (after a deliberate change); review git diff."""
    from jupyterfab.dev.doubles import golden

    for path in golden.update():
        print(f"rewrote {path.relative_to(PROJECT)}: review `git diff` before committing")


def _sandbox_password_file() -> Path:
    """A generated password for sandbox hosts, kept beside their inventory (0600)."""
    path = sb.workdir_for(PROJECT) / "password"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(12) + "\n")
        sb.give_back(path.parent)      # under sudo: the user's, as the rest of .sandbox
    return path


def _fab(*args: str, log=None) -> int:
    return _fab_measured(*args, log=log)[0]


def _fab_measured(*args: str, log=None) -> tuple[int, float, int]:
    """`fab ARGS`: (exit code, wall seconds, its peak resident memory in KiB); its output
    into the open file ``log`` when given, else on this terminal."""
    started = time.monotonic()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "fab"), *args], cwd=PROJECT,
                            **({"stdout": log, "stderr": subprocess.STDOUT} if log else {}))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - started, usage.ru_maxrss


@task(help={"cloudflare": "also put Cloudflare in front: a local stand-in of Cloudflare's API "
                          "issues the origin certificate (HTTPS on 443) and keeps DNS and "
                          "zone settings; NGINX admits Cloudflare's ranges only",
            "replace": REPLACE_HELP})
@one_line
def demo(c, cloudflare=False, replace=False):
    """Boot a sandbox host, deploy Jupyter to it, verify it and print the URL.

    A host the last demo deployed is reused while it runs: deployed again (nothing
    changes unless the project did) and verified; --replace builds a fresh one. Refuses
    while other sandbox hosts run, unless --replace."""
    with sb.exclusive():
        if not replace and _reuse_demo(c, "cloudflare" if cloudflare else "acme"):
            return
        sb.refuse_to_destroy(replace)
        if cloudflare:
            _demo_with_cloudflare(c)
        else:
            _demo(c)


def _reuse_demo(c, kind: str) -> bool:
    """Deploy again to the running host of the last demo of this ``kind`` and verify it:
    False when there is none (the caller then boots one, or refuses for other hosts)."""
    last = demo_record.last_demo(PROJECT)
    running = {h.name: h for h in sb.running_hosts()}
    if last.get("host") not in running:
        return False
    host = running[last["host"]]
    if last.get("kind") != kind:
        said = {"acme": "without Cloudflare", "cloudflare": "with Cloudflare (--cloudflare)"}
        raise Exit(f"demo: {host.name} runs the demo {said[last.get('kind', 'acme')]}; add "
                   f"--replace to rebuild it {said[kind].split(' (')[0]} (its notebooks go), or "
                   f"verify it with `{shell.as_root('./run verify')}`", code=1)
    if kind == "cloudflare":
        # its Cloudflare stand-in lived only as long as the demo that made it
        print(f"demo: {host.name} already runs the Cloudflare demo: verifying it (a deploy would "
              "need the Cloudflare stand-in, which ended with that demo: --replace rebuilds it)",
              flush=True)
    else:
        print(f"demo: {host.name} already runs the demo: deploying it again (it changes nothing "
              "unless the project changed), then verifying it", flush=True)
        if _fab("-H", host.name, "deploy", "--inventory", last["inventory"], "--password-file",
                last["password_file"]):
            raise Exit("demo: the deploy failed (see above); "
                       f"`{shell.as_root('./run demo --replace')}` builds a fresh host", code=1)
    verify(c)
    if kind == "acme":
        _say_acme_demo(host, Path(last["inventory"]), Path(last["ca_file"]), Path(last["password_file"]))
    else:
        print(f"""
Jupyter is running on {host.name} ({host.address}) behind NGINX with HTTPS, as if behind Cloudflare.
  Password:  in {last["password_file"]} (mode 0600)
  Verify:    {shell.as_root("./run verify")}     (checks {last["inventory"]})
  Again:     {shell.as_root("./run demo --cloudflare --replace")}     (a fresh host and Cloudflare stand-in)
  Tear down: {shell.as_root("./run sandbox.down")}""")
    return True


def _demo_with_cloudflare(c):
    """As the demo, with the Cloudflare stand-in; this machine plays Cloudflare's edge."""
    [host] = sb.up(PROJECT, count=1, replace=True)   # the caller checked for running hosts
    edge = sb.add_edge_address()
    work = sb.workdir_for(PROJECT)
    password = _sandbox_password_file()
    ca_file, inventory_file = work / "cloudflare-ca.pem", work / "hosts-cloudflare.yaml"
    with contextlib.ExitStack() as stack:
        standin, token_file = _start_cloudflare_standin(stack)
        ca_file.write_text(standin.ca_certificate_pem)
        _write_cloudflare_inventory(str(inventory_file))
        if _fab("-H", host.name, "deploy", "--inventory", str(inventory_file), "--password-file",
                str(password), "--cloudflare-token-file", str(token_file)):
            raise Exit("demo: the deploy failed (see above)", code=1)
        records = [r for z in standin.zones for r in standin.records(z)]
    demo_record.remember_demo(PROJECT, inventory_file, kind="cloudflare", host=host.name,
                                 password_file=str(password), ca_file=str(ca_file), edge_address=edge)
    sb.give_back(work)
    verify(c)   # as a plain `./run verify` would: the inventory rule finds what was deployed
    print(f"""
Jupyter is running on {host.name} ({host.address}) behind NGINX with HTTPS, as if behind Cloudflare:
  DNS (stand-in): {', '.join(f"{r['type']} {r['name']} -> {r['content']} (proxied)" for r in records)}
  Only Cloudflare's ranges get in; this machine plays Cloudflare's edge from {edge}:
    curl --interface {edge} --resolve jupyter.example.com:443:{host.address} \\
         --cacert {ca_file} https://jupyter.example.com/login
  From anywhere else the origin answers 403:
    curl -k --resolve jupyter.example.com:443:{host.address} https://jupyter.example.com/login
  Password:  in {password} (mode 0600)
  Verify:    {shell.as_root("./run verify")}     (checks {inventory_file}: the demo recorded it in .sandbox/demo.json)
  Again:     {shell.as_root("./run demo --cloudflare --replace")}     (the Cloudflare stand-in lives only as long as the demo)
  Tear down: {shell.as_root("./run sandbox.down")}""")


def _demo(c):
    """HTTPS from an ACME CA: Pebble (Let's Encrypt's test server) runs on the sandbox
    bridge for the demo's deploy, answers the host's certbot, and is stopped after."""
    from jupyterfab.dev.doubles import pebble as pebble_mod

    missing = pebble_mod.available()
    if missing:
        raise Exit(f"demo: {missing}; ./run installs it when run as root", code=1)
    [host] = sb.up(PROJECT, count=1, replace=True)   # the caller checked for running hosts
    work = sb.workdir_for(PROJECT)
    inventory_file, roots = work / "hosts-acme.yaml", work / "acme-roots.pem"
    password = _sandbox_password_file()
    with pebble_mod.Pebble(sb.bridge_address(), work / "pebble") as pebble:
        pebble.add_a(DEMO_NAME, host.address)
        _write_acme_inventory(inventory_file, pebble)
        if _fab("-H", host.name, "deploy", "--inventory", str(inventory_file), "--password-file",
                str(password)):
            raise Exit("demo: the deploy failed (see above)", code=1)
        roots.write_text(pebble.issuing_roots_pem())
    demo_record.remember_demo(PROJECT, inventory_file, kind="acme", host=host.name,
                                 password_file=str(password), ca_file=str(roots))
    sb.give_back(work)
    verify(c)   # as a plain `./run verify` would: the inventory rule finds what was deployed
    _say_acme_demo(host, inventory_file, roots, password)


def _say_acme_demo(host, inventory_file: Path, roots: Path, password: Path) -> None:
    print(f"""
Jupyter is running on {host.name} ({host.address}), behind NGINX with HTTPS, as {DEMO_NAME}:
its certificate comes from an ACME CA (Pebble, Let's Encrypt's test server, played on this
machine for the deploy), issued and renewed by certbot on the host, as Let's Encrypt would.
  Open it:   curl --cacert {roots} --resolve {DEMO_NAME}:443:{host.address} https://{DEMO_NAME}/login
             or add "{host.address} {DEMO_NAME}" to /etc/hosts and browse https://{DEMO_NAME}/
             (your browser does not know the test CA: accept its warning)
  Port 80 only redirects to HTTPS (and answers the CA's challenge).
  Password:  in {password} (mode 0600)
  Verify:    {shell.as_root("./run verify")}     (checks {inventory_file}: the demo recorded it in .sandbox/demo.json)
  Status:    .venv/bin/fab -H {host.name} status     (certificate expiry and the last renewal error)
  Again:     {shell.as_root("./run demo")}     (deploys this host again and verifies it; --replace: a fresh host)
  Tear down: {shell.as_root("./run sandbox.down")}""")


DEMO_NAME = "jupyter.example.com"


def _write_acme_inventory(inventory_file: Path, pebble) -> None:
    """The sandbox inventory with ACME from ``pebble`` instead of plain HTTP."""
    data = yaml.safe_load((sb.workdir_for(PROJECT) / "hosts.yaml").read_text())
    data["defaults"]["vars"].pop("allow_plain_http", None)
    data["defaults"]["vars"].update(server_name=DEMO_NAME, **pebble.inventory_vars("demo@example.org"))
    inventory_file.write_text(yaml.safe_dump(data))


QUIET = 0.15       # this machine's CPUs busy below this, over a second: the hosts are at rest
AT_REST = 5        # no-ops timed at rest, for their median


def cpu_times(stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's text (pure)."""
    fields = [int(x) for x in stat.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)        # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time spent busy between two ``cpu_times`` (pure)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def _wait_until_quiet(timeout: float = 120.0) -> None:
    """Until this machine's CPUs are busy under ``QUIET`` over a second (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    before = cpu_times(Path("/proc/stat").read_text())
    while time.monotonic() < deadline:
        time.sleep(1)
        after = cpu_times(Path("/proc/stat").read_text())
        if busy_fraction(before, after) < QUIET:
            return
        before = after


def _wait_until_serving(hosts, timeout: float = 120.0, edge: str | None = None) -> None:
    """Freshly started Jupyter servers spend their first seconds busy; wait them out.
    ``edge``: the host is locked down to Cloudflare and serves HTTPS; ask from there."""
    from jupyterfab.verify.jupyterclient import JupyterSession

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


@task(help={"sizes": "comma-separated host counts to measure (default 1,4; 1,4,16 for a big fleet)",
            "warm": "run one unmeasured deploy first so controller caches (wheels, apt) are warm",
            "cloudflare": "with Cloudflare in front (the API stand-in): certificate, TLS, "
                          "lockdown, zone settings and DNS in every deploy",
            "latency": "measure the cell round trip instead: p50/p99 of a trivial cell through "
                       "NGINX, and through TLS with the Cloudflare stand-in, with "
                       "jupyterfab_nodelay on and off, side by side",
            "cells": "with --latency: executions per measurement (default 200)"})
@one_line
def bench(c, sizes="1,4", warm=True, cloudflare=False, latency=False, cells=200):
    """Benchmark deploys (wall time, peak memory) or, with --latency, a cell's round trip.

    Per host count, a first deploy and a no-op redeploy, the no-op again with this machine
    quiet (the median of five); or (--latency) a cell's round trip.
    Boots hosts of its own (bench1.., in 198.18.1.0/24) beside any sandbox hosts, which it
    leaves alone, and tears its own down after."""
    if latency:
        return _bench_latency(int(cells))
    counts = host_counts(sizes)
    password = _sandbox_password_file()
    figures = []
    # the deploys' output goes there, so the bench prints only its table
    log_path = ARTIFACTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(exist_ok=True)
    with sb.exclusive(), contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "w"))
        print(f"bench: the deploys' output goes to {log_path}", flush=True)
        inventory_file, extra = str(BENCH_WORK / "hosts.yaml"), []
        if cloudflare:   # a Cloudflare stand-in for the benchmark's lifetime
            _, token = _start_cloudflare_standin(stack)
            inventory_file = str(BENCH_WORK / "hosts-cloudflare.yaml")   # rewritten after each boot
            extra = ["--cloudflare-token-file", str(token)]
        _bench_rows(figures, counts, warm, password, inventory_file, extra, cloudflare, log)
    what = "with Cloudflare (stand-in), " if cloudflare else ""
    print(f"\nhosts   first deploy   no-op redeploy   no-op at rest   peak memory   load   ({what}wall "
          "time of `fab -H ... deploy`, sandbox hosts; the no-op once every server answers, "
          f"and the median of {AT_REST} once this machine is quiet (under {QUIET:.0%} busy); "
          "the controller's peak RSS over all the runs; the 1-minute load average before them)")
    for n, load, (first, first_kb), (noop, noop_kb), (rest, rest_kb) in figures:
        print(f"{n:>5}   {first:>10.1f} s   {noop:>12.2f} s   {rest:>11.2f} s"
              f"   {max(first_kb, noop_kb, rest_kb) / 1024:>7.0f} MB   {load:4.1f}")
    print(f"log: {log_path}")


BENCH_WORK = sb.workdir_for(PROJECT) / "bench"    # the bench hosts' inventory and ssh files


def _bench_up(count: int) -> list:
    """``count`` fresh bench hosts (bench1.., their own range), replacing only the bench's."""
    return sb.up(PROJECT, count=count, prefix=sb.BENCH_PREFIX, subnet=sb.BENCH_SUBNET, workdir=BENCH_WORK)


def _bench_down() -> None:
    """The bench's hosts and files go; the sandbox's own hosts stay (with nothing else
    left, the whole sandbox goes as sandbox.down takes it)."""
    others = [h for h in sb.list_hosts() if not h.name.startswith(sb.BENCH_PREFIX)]
    if others:
        sb.destroy_hosts([h.name for h in sb.list_hosts() if h not in others])
    else:
        sb.down(quiet=True, project_dir=PROJECT)
    shutil.rmtree(BENCH_WORK, ignore_errors=True)


def _bench_latency(cells: int) -> None:
    """Two sandbox hosts, one as the plain demo (NGINX, HTTP), one as the Cloudflare demo
    (TLS, lockdown; reached from the edge address); deployed with nodelay on, then off."""
    from jupyterfab.verify.jupyterclient import JupyterSession, percentile

    password = _sandbox_password_file()
    name, url = "jupyter.example.com", "https://jupyter.example.com"
    samples: dict[tuple[str, bool], list[float]] = {}
    with sb.exclusive(), contextlib.ExitStack() as stack:
        try:
            plain, behind = _bench_up(2)
            edge = sb.add_edge_address()
            standin, token = _start_cloudflare_standin(stack)
            ca_file, inventory_file = BENCH_WORK / "cloudflare-ca.pem", BENCH_WORK / "hosts-latency.yaml"
            ca_file.write_text(standin.ca_certificate_pem)
            _write_cloudflare_inventory(str(inventory_file), only=behind.name, work=BENCH_WORK)
            paths = {
                "NGINX (HTTP)": (plain, lambda: JupyterSession(plain.address, name, f"http://{name}")),
                "TLS, Cloudflare stand-in": (behind, lambda: JupyterSession(
                    behind.address, name, url, verify=str(ca_file), source_address=edge)),
            }
            for nodelay in (True, False):
                if _fab("-H", f"{plain.name},{behind.name}", "deploy", "--inventory", str(inventory_file),
                        "--password-file", str(password), "--cloudflare-token-file", str(token),
                        "--set", f"nodelay={str(nodelay).lower()}"):
                    raise Exit("bench: the deploy failed (see above)", code=1)
                _wait_until_serving([plain])
                _wait_until_serving([behind], edge=edge)
                for path, (host, session) in paths.items():
                    s = session()
                    if not s.login(password.read_text().strip()):
                        raise Exit(f"bench: cannot log in to {host.name}", code=1)
                    samples[path, nodelay] = s.cell_round_trips(cells)
        finally:
            _bench_down()
    print(f"\ncell round trip, {cells} executions of `i * 2` over one kernel WebSocket "
          "(p50 / p99, ms; sandbox hosts)")
    print(f"{'path':<26} {'nodelay on':>15} {'nodelay off':>15}   off/on (p50)")
    for path in paths:
        on, off = samples[path, True], samples[path, False]
        cells_ = [f"{percentile(x, 50) * 1000:6.1f} / {percentile(x, 99) * 1000:5.1f}" for x in (on, off)]
        print(f"{path:<26} {cells_[0]:>15} {cells_[1]:>15}   {percentile(off, 50) / percentile(on, 50):5.1f}x")


def _start_cloudflare_standin(stack):
    """The Cloudflare API stand-in with the zone example.com, until ``stack`` closes;
    and a token for it in a 0600 file: (stand-in, token file)."""
    from jupyterfab.dev.doubles.cloudflare_api import CloudflareStandIn

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


def _write_cloudflare_inventory(inventory_file: str, only: str = "", work: Path | None = None) -> None:
    """The sandbox's inventory (the one in ``work``) with every host (or only the host
    ``only``) in the zone example.com; the stand-in itself is named by
    $JUPYTERFAB_CLOUDFLARE_API_URL (an inventory may name no endpoint but Cloudflare's)."""
    data = yaml.safe_load(((work or sb.workdir_for(PROJECT)) / "hosts.yaml").read_text())
    cloudflare = {"cloudflare_zone": "example.com"}
    if only:
        data["hosts"][only].setdefault("vars", {}).update(cloudflare)
    else:
        data["defaults"]["vars"].update(cloudflare)
    Path(inventory_file).write_text(yaml.safe_dump(data))


def host_counts(sizes: str) -> list[int]:
    """--sizes as host counts (pure); anything but positive whole numbers is refused in one line."""
    counts = [x.strip() for x in sizes.split(",")]
    if not all(x.isdigit() and int(x) > 0 for x in counts):
        raise Exit(f"error: --sizes takes host counts separated by commas (e.g. 1,4,16), not {sizes!r}",
                   code=2)
    return [int(x) for x in counts]


def _bench_rows(figures, counts, warm, password, inventory_file, extra=(), cloudflare=False, log=None):
    edge = sb.EDGE_ADDRESS if cloudflare else None

    def up(count):
        hosts = _bench_up(count)
        if cloudflare:   # on the new bridge, in the new inventory
            sb.add_edge_address(edge)
            _write_cloudflare_inventory(inventory_file, work=BENCH_WORK)
        return hosts

    try:
        if warm:
            [host] = up(1)
            _fab("-H", host.name, "deploy", "--inventory", inventory_file, "--password-file",
                 str(password), *extra, log=log)
        for n in counts:
            hosts = up(n)
            # The previous hosts' teardown deleted ~0.5 GB each; let the disk finish
            # that (sync) so it is not billed to this deploy.
            os.sync()
            time.sleep(2)
            names = ",".join(h.name for h in hosts)
            row = [n, os.getloadavg()[0]]
            # The password is needed for the first deploy only (or to change it). The
            # no-op is timed once every server answers, while the hosts may still be
            # busy on this machine's cores, then AT_REST times with the machine quiet
            # (as a real fleet's own machines would leave the controller): the median.
            row.append(_bench_deploy(names, inventory_file, ["--password-file", str(password), *extra], log))
            _wait_until_serving(hosts, edge=edge)
            row.append(_bench_deploy(names, inventory_file, list(extra), log))
            at_rest = []
            for _ in range(AT_REST):
                _wait_until_quiet()
                at_rest.append(_bench_deploy(names, inventory_file, list(extra), log))
            row.append((statistics.median(s for s, _ in at_rest), max(kb for _, kb in at_rest)))
            figures.append(row)
    finally:
        _bench_down()


def _bench_deploy(names: str, inventory_file: str, args: list[str], log) -> tuple[float, int]:
    """One timed `fab -H NAMES deploy ARGS`: (wall seconds, peak KiB); a failure ends the bench."""
    rc, seconds, peak_kb = _fab_measured("-H", names, "deploy", "--inventory", inventory_file, *args, log=log)
    if rc:
        raise Exit(f"bench: deploy to {names} failed (its output: {log.name})", code=1)
    return seconds, peak_kb


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


@task(iterable=["set"],
      help={"hosts": "comma-separated inventory names (default: every host in the inventory, "
                     "or in --group)",
            "group": "every host of this inventory group (with or instead of --hosts)",
            "set": selection.SET_HELP + ": give verify the --set the deploy had",
            "inventory": selection.HELP,
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
def verify(c, hosts="", group="", set=None, inventory="", password_file="", ca_file="", edge_address="",
           pytest_args="", browser=False):
    """Prove deployed hosts work, end to end, from this machine.

    Files, services, ports, login and a kernel through NGINX; with TLS and Cloudflare
    also the certificate, the HTTPS redirect and the lockdown; with --browser also
    JupyterLab in a real browser."""
    if browser:
        from jupyterfab.verify import browser as browser_mod
        browser_mod.require_browser()
    overrides = selection.overrides(set)
    path, chosen = selection.select(inventory, [h for h in hosts.split(",") if h], PROJECT,
                                    preferred=demo_record.sandbox_inventories(PROJECT),
                                    group=group or None, overrides=overrides)
    plans = deploying.check_plans(chosen)   # the variables the deploy used: checked, and TLS or not
    if ca_file:
        _check_ca_file(ca_file, [name for name, plan in plans.items() if plan.tls == "off"])
    recorded = demo_record.verify_options(PROJECT, path)   # after a demo: what it deployed with
    password_file = password_file or recorded.get("password_file", "")
    passwords.from_sources(password_file, prompt=False)    # a missing or open file: one line, not every check's
    ca_file, edge_address = ca_file or recorded.get("ca_file", ""), edge_address or recorded.get("edge_address", "")
    with tempfile.TemporaryDirectory(prefix="jupyterfab-verify-") as tmp:
        cfg = Path(tmp) / "ssh_config"
        cfg.write_text(_ssh_config_for(chosen, tmp))
        given = {"JUPYTERFAB_PASSWORD_FILE": password_file,
                 "JUPYTERFAB_VERIFY_CA": ca_file and str(Path(ca_file).resolve()),
                 "JUPYTERFAB_VERIFY_EDGE_ADDRESS": edge_address}
        env = {**os.environ, "JUPYTERFAB_VERIFY_INVENTORY": str(path),
               selection.OVERRIDES_ENV: json.dumps(overrides), **{k: v for k, v in given.items() if v}}
        env.setdefault("JUPYTERFAB_ARTIFACTS", str(ARTIFACTS))   # browser screenshots
        args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=",
                "--rootdir", str(PROJECT / "jupyterfab/verify"), "-q", "-rfEs",   # s: each skip with its reason
                str(PROJECT / "jupyterfab/verify"), f"--ssh-config={cfg}",
                "--hosts=" + ",".join(f"ssh://{h.name}" for h in chosen),
                *(["--browser"] if browser else []), *pytest_args.split()]
        rc = subprocess.call(args, cwd=PROJECT, env=env)
        for h in chosen:   # close the master connections before their folder goes
            subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", h.name], capture_output=True)
    if rc:
        raise Exit(f"verify failed for {', '.join(h.name for h in chosen)}", code=rc)
    print(f"verified: {', '.join(h.name for h in chosen)}")


def _check_ca_file(ca_file: str, plain: list[str]) -> None:
    """--ca-file is used, or refused: never ignored."""
    if not Path(ca_file).is_file():
        raise Exit(f"error: --ca-file {ca_file}: no such file", code=2)
    if plain:
        raise Exit(f"error: --ca-file: {', '.join(plain)} serve(s) no TLS by the inventory, so no "
                   "certificate would be checked; if the deploy had --set (e.g. cloudflare_zone), "
                   "give verify the same --set", code=2)


@task(help={"build": "build the site into site/ strictly (a broken link or a page left out "
                     "of the nav fails) instead of serving it",
            "port": "port on 127.0.0.1 to serve on (default 8000)"})
def docs(c, build=False, port="8000"):
    """Serve the documentation site on http://127.0.0.1:8000 (rebuilt on every change); --build builds it."""
    if not str(port).isdigit() or not 1 <= int(port) <= 65535:
        raise Exit(f"error: --port takes a TCP port (1 to 65535), not {port!r}", code=2)
    mkdocs = [sys.executable, "-m", "mkdocs"]
    if build:
        args = [*mkdocs, "build", "--strict", "--clean", "--site-dir", str(PROJECT / "site")]
    else:
        print(f"docs: http://127.0.0.1:{int(port)}/ (Ctrl-C stops)", flush=True)
        args = [*mkdocs, "serve", "--strict", "--dev-addr", f"127.0.0.1:{int(port)}"]
    # Material's banner about MkDocs 2 says nothing about this site
    rc = subprocess.call(args, cwd=PROJECT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    if rc:
        raise Exit(f"docs: mkdocs {'build' if build else 'serve'} failed (see above)", code=rc)


sandbox = Collection("sandbox", up, down, list_, ssh, reboot)
ns = Collection(sandbox, test, demo, verify, bench, update_golden, docs)
