"""The SSH connection cut after command k of a first deploy, a certificate renewal
and an upgrade (tests/support/faults.py). After every cut the host is sound:
`nginx -t` passes on the live configuration (NGINX loads the certificate and key,
so a mismatched pair fails it), the Jupyter config parses, the live environment is
complete, no stray file sits in sites-enabled, and the notebook is byte-identical.
Then a re-run converges: the deploy (or upgrade) succeeds and the site serves.

CI cuts a sample: JUPYTERFAB_FAULT_POINTS (default 2) points spread evenly inside
each run (a third and two thirds of the way). The full sweep is opt-in:
JUPYTERFAB_FAULT_POINTS=25 (or any number) spreads that many over each run,
JUPYTERFAB_FAULT_POINTS=all cuts after every command. Each sweep prints its
table: points, sound after the cut, converged, files lost, and how long it took.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from e2e_support import PROJECT, run_tool, secret_file
from support.faults import CutAfter, cut_points

from jupyterfab.dev import sandbox
from jupyterfab.dev.doubles.certificate_authority import TestCertificateAuthority
from jupyterfab.engine import hostlock
from jupyterfab.engine.runner import HostUnreachable, open_runner
from jupyterfab.engine.shell import Secret, cmd
from jupyterfab.stack import deploy as deploying
from jupyterfab.stack import upgrade as upgrading
from jupyterfab.stack.front.tlsplan import TLS_DIR
from jupyterfab.verify.jupyterclient import JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-faults-password"
NAME = "jupyter.example.com"
NOTEBOOK = "/home/jupyter/notebooks/precious.ipynb"
NOTEBOOK_BYTES = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n\x00\xff'
POINTS = os.environ.get("JUPYTERFAB_FAULT_POINTS", "2")
SAMPLE = None if POINTS == "all" else int(POINTS)

# Everything a deploy made except packages, the user and the notebooks: the next
# deploy is a first deploy again.
RESET = r"""
systemctl disable --now jupyter 2>/dev/null
rm -rf /etc/systemd/system/jupyter.service /etc/systemd/system/nginx.service.d \
       /usr/local/sbin/jupyterfab-nginx-reload /opt/jupyterfab /etc/jupyterfab /etc/ssl/jupyterfab
rm -f /etc/nginx/sites-enabled/jupyter.conf /etc/nginx/sites-enabled/.jupyter.conf*
systemctl daemon-reload
[ -e /etc/nginx/sites-available/default ] && ln -sfn ../sites-available/default /etc/nginx/sites-enabled/default
systemctl reload nginx 2>/dev/null || true
"""

# An upgrade to a version the host has never had: the environment kept as the
# previous one (the target of the last upgrade, switched back from) goes, so each
# cut upgrade builds and unpacks its environment as the counted one did.
FORGET_PREVIOUS = r"""
p=/opt/jupyterfab/venv.previous
t=$(readlink "$p" 2>/dev/null) && rm -rf "/opt/jupyterfab/$t"
rm -f "$p"
"""

# What must hold after any cut: prints UNSOUND: <why> otherwise.
SOUND = r"""
bad() { echo "UNSOUND: $*"; }
if command -v nginx >/dev/null 2>&1; then nginx -t -q 2>&1 || bad "nginx -t fails on the live configuration"; fi
c=/etc/jupyterfab/jupyter_server_config.py
[ ! -e $c ] || python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' $c || bad "$c does not parse"
v=/opt/jupyterfab/venv
if [ -e $v ] || [ -L $v ]; then [ -x $v/bin/jupyter-lab ] || bad "$v is not a complete environment"; fi
for f in /etc/nginx/sites-enabled/*; do
    case "${f##*/}" in jupyter.conf|default|"*") ;; *) bad "stray file $f" ;; esac; done
sha256sum "$1"
"""


def own_pair(ca: TestCertificateAuthority, folder, tag: str) -> dict:
    key = rsa.generate_private_key(65537, 2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    certificate = ca.issue(csr, [NAME], 90, "rsa")
    crt, pem = folder / f"{tag}.crt", folder / f"{tag}.key"
    crt.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return {"tls_certificate": str(crt), "tls_key": str(pem)}


@pytest.fixture(scope="module")
def site(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    folder = tmp_path_factory.mktemp("faults")
    ca = TestCertificateAuthority.generate("faults test CA")
    (folder / "ca.pem").write_text(ca.certificate_pem)
    host = inv.hosts["sandbox1"]
    runner = open_runner(host)
    # the account as an earlier deploy left it (RESET keeps it): with jupyterfab's
    # marker, so the deploy's probe knows jupyterfab created it
    runner.run("id jupyter >/dev/null 2>&1 || useradd --system --create-home --home-dir /home/jupyter "
               "--shell /bin/bash jupyter; install -d -o jupyter -g jupyter -m 0750 /home/jupyter/notebooks"
               f" && install -d -m 0755 {deploying.USER_MARKERS}"
               f" && echo 'the notebook user: created by jupyterfab' > {deploying.USER_MARKERS}/jupyter")
    runner.put(NOTEBOOK_BYTES, NOTEBOOK)
    runner.run(f"chown jupyter: {NOTEBOOK}")
    runner.close()
    return {"host": host, "ca": ca, "folder": folder, "inv": inv, "pairs": 0,
            "inventory": sandbox.workdir_for(PROJECT) / "hosts.yaml",
            "notebook": hashlib.sha256(NOTEBOOK_BYTES).hexdigest()}


def with_pair(site, tag: str | None = None):
    """The host with its own certificate: a fresh pair (a renewal) unless ``tag`` names one."""
    if tag is None:
        site["pairs"] += 1
        tag = f"pair{site['pairs']}"
    return dataclasses.replace(site["host"], vars={**site["host"].vars,
                                                   **own_pair(site["ca"], site["folder"], tag)})


def deploy(host, runner):
    options = deploying.Options(password=Secret(PASSWORD), log=lambda _: None, progress=False)
    try:
        return deploying.deploy_host(host, options, runner)
    finally:
        options.edge.close()


def on_host(site, script: str, *args: str) -> str:
    runner = open_runner(site["host"])
    try:
        return runner.run(cmd("sh", "-c", script, "sh", *args), timeout=400).stdout
    finally:
        runner.close()


def sound(site) -> list[str]:
    """What is wrong with the host right now ([] when sound), the notebook included."""
    out = on_host(site, SOUND, NOTEBOOK)
    wrong = [line for line in out.splitlines() if line.startswith("UNSOUND")]
    if site["notebook"] not in out:
        wrong.append(f"UNSOUND: {NOTEBOOK} changed or lost")
    return wrong


def serves(site) -> bool:
    session = JupyterSession(site["host"].address, NAME, f"https://{NAME}",
                             verify=str(site["folder"] / "ca.pem"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if session.get("/login").status_code == 200:
                return True
        except Exception:
            pass
        time.sleep(0.5)
    return False


def serves_the_deployed_certificate(site) -> bool:
    """What NGINX hands out for NAME is the live cert.pem: a re-run that found the
    new pair in place but never reloaded NGINX would leave the old one served
    (any pair from this CA passes `serves`)."""
    live = on_host(site, 'cat -- "$1"', f"{TLS_DIR}/{NAME}/cert.pem")
    wanted = ssl.PEM_cert_to_DER_cert(live[:live.index("-----END CERTIFICATE-----") + 25])
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + 10
    while True:
        with socket.create_connection((site["host"].address, 443), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=NAME) as tls:
            if tls.getpeercert(binary_form=True) == wanted:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def sweep(site, what: str, total: int, attempt, rerun, reset=lambda: None) -> list[dict]:
    """Cut ``attempt`` after each chosen k; check the host; ``rerun`` must converge."""
    rows, unreached = [], []
    started = time.monotonic()
    for k in cut_points(total, SAMPLE):
        reset()
        cut = CutAfter(open_runner(site["host"]), k)
        try:
            outcome = attempt(cut)
        except HostUnreachable as exc:
            outcome = str(exc)
        finally:
            cut.close()
        if not cut.cut:          # this run took fewer commands (e.g. packages already there)
            unreached.append(k)
            continue
        # an upgrade's guard may still be judging on the host: wait for its verdict
        on_host(site, f"flock -w 300 {hostlock.WATCH_LOCK} true")
        after_cut = sound(site)
        try:
            converged = rerun()
        except Exception as exc:          # recorded in the table, the sweep goes on
            converged = False
            outcome = f"re-run raised {exc!r}"
        rows.append({"k": k, "cut": cut.cut, "unsound": after_cut, "converged": converged,
                     "served": serves(site) and serves_the_deployed_certificate(site), "after_rerun": sound(site), "outcome": outcome})
    lost = sum(1 for r in rows if any("lost" in w for w in r["unsound"] + r["after_rerun"]))
    print(f"\n{what}: {total} commands; cut points tried {len(rows)}, "
          f"converged {sum(1 for r in rows if r['converged'] and r['served'])}, "
          f"unsound after a cut {sum(1 for r in rows if r['unsound'])}, files lost {lost}"
          + (f"; not reached (the run was shorter): {unreached}" if unreached else "")
          + f"; {time.monotonic() - started:.0f} s")
    for r in rows:
        print(f"  after command {r['k']:>3}: sound={not r['unsound']} "
              f"converged={r['converged']} serves={r['served']} {' '.join(r['unsound'])}"
              + ("" if r["converged"] else f" ({r['outcome']})"))
    return rows


def check(rows: list[dict]) -> None:
    assert rows
    for r in rows:
        assert not r["unsound"], r
        assert r["converged"] and r["served"] and not r["after_rerun"], r


def reset(site):
    on_host(site, RESET)


def test_a_first_deploy_cut_after_any_command_is_sound_and_a_rerun_converges(site):
    pinned = with_pair(site, "first")
    # The very first deploy also installs the packages, which RESET keeps: the run
    # that is counted starts where every cut run starts, so no cut point is past its end.
    reset(site)
    assert deploy(pinned, None).ok
    reset(site)
    counter = CutAfter(open_runner(site["host"]), None)
    try:
        first = deploy(pinned, counter)
    finally:
        counter.close()
    assert first.ok, first.text or [r.comment for r in first.results if r.ok is False]
    site["deploy_commands"] = counter.done
    rows = sweep(site, "first deploy", counter.done,
                 attempt=lambda cut: deploy(pinned, cut),
                 rerun=lambda: deploy(pinned, None).ok,
                 reset=lambda: reset(site))
    check(rows)


def test_a_certificate_renewal_cut_after_any_command_is_sound_and_a_rerun_converges(site):
    # what a deploy from before tls.pair left beside the pair: gone once the site reads the pair
    before_pair = [f"{TLS_DIR}/{NAME}.crt", f"{TLS_DIR}/{NAME}.key"]
    on_host(site, 'for f in "$@"; do echo old > "$f"; done', *before_pair)
    assert deploy(with_pair(site), None).ok
    assert on_host(site, 'ls -- "$@" 2>/dev/null; true', *before_pair) == ""
    # the renewal that is counted: a new pair, nothing else
    counter = CutAfter(open_runner(site["host"]), None)
    renewed = with_pair(site)
    try:
        assert deploy(renewed, counter).ok
    finally:
        counter.close()
    state = {}

    def attempt(cut):
        state["host"] = with_pair(site)          # a new certificate and key each time
        return deploy(state["host"], cut)

    rows = sweep(site, "certificate renewal", counter.done, attempt,
                 rerun=lambda: deploy(state["host"], None).ok)
    check(rows)
    # the whole product, once at the end: invoke verify, against this CA
    inventory = site["folder"] / "hosts.yaml"
    pair = "".join(f"      {k}: {state['host'].vars[k]}\n" for k in ("tls_certificate", "tls_key"))
    inventory.write_text(site["inventory"].read_text().replace(
        "    groups: [sandbox]\n", "    groups: [sandbox]\n    vars:\n" + pair, 1))
    secret = secret_file(site["folder"], PASSWORD)
    v = run_tool("invoke", "verify", "--hosts", "sandbox1", "--inventory", str(inventory),
                 "--password-file", str(secret), "--ca-file", str(site["folder"] / "ca.pem"),
                 check=False, timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr


def test_an_upgrade_cut_after_any_command_is_sound_and_a_rerun_converges(site):
    host = with_pair(site, "first")
    assert deploy(host, None).ok
    runner = open_runner(site["host"])
    before = upgrading.parse_probe(runner.run(cmd(
        "sh", "-c", upgrading.PROBE, "sh", "/opt/jupyterfab/venv", "systemd")).stdout)["jupyterlab"]
    runner.close()
    target = "4.2.5" if not before.startswith("4.2.") else "4.3.0"
    options = upgrading.Options(spec=f"=={target}", log=lambda _: None)
    back = upgrading.Options(spec=f"=={before}", log=lambda _: None)

    def upgrade(opts, runner):
        own = runner is None
        runner = runner or open_runner(site["host"])
        try:
            with hostlock.held(runner, "upgrade"):
                return upgrading.upgrade_host(host, runner, opts)
        finally:
            if own:
                runner.close()

    on_host(site, FORGET_PREVIOUS)
    counter = CutAfter(open_runner(site["host"]), None)
    try:
        assert upgrade(options, counter).ok
    finally:
        counter.close()
    assert upgrade(back, None).ok
    rows = sweep(site, "upgrade", counter.done, attempt=lambda cut: upgrade(options, cut),
                 rerun=lambda: upgrade(options, None).ok and upgrade(back, None).ok,
                 reset=lambda: on_host(site, FORGET_PREVIOUS))
    check(rows)
