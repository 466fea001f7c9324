"""A host facing the internet, end to end on one sandbox host with its own TLS
certificate (one deploy for the whole module): `invoke verify` proves throttled
logins, one name only, no banner, the unit's exposure and the config out of
notebook code's reach; then the notebook workload under the hardened unit, old
NGINX workers letting go after a reload, private backups, and sessions across a
restart and a password rotation (last: it changes the password)."""

import json
import re
import time

import pytest
import websocket
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.dev.doubles.certificate_authority import TestCertificateAuthority
from jupyterfab.engine.runner import open_runner
from jupyterfab.stack.envs import wheelhouse
from jupyterfab.verify.jupyterclient import JupyterSession, execute

pytestmark = pytest.mark.e2e
NAME = "jupyter.example.com"
PASSWORD = "e2e-internet-password"
SHUTDOWN_TIMEOUT = 5          # seconds; the default (30) would only make CI wait longer
CONFIG = "/etc/jupyterfab/jupyter_server_config.py"
NOTEBOOKS = "/home/jupyter/notebooks"


@pytest.fixture(scope="module")
def site(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    tmp = tmp_path_factory.mktemp("internet")
    ca = TestCertificateAuthority.generate("e2e own CA")
    key = rsa.generate_private_key(65537, 2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
           .sign(key, hashes.SHA256()))
    certificate = ca.issue(csr.public_bytes(serialization.Encoding.PEM).decode(), [NAME], 90, "rsa")
    (tmp / "own.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp / "own.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (tmp / "own.key").chmod(0o600)
    (tmp / "ca.pem").write_text(ca.certificate_pem)
    data = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
    data["defaults"]["vars"].update(tls_certificate=str(tmp / "own.crt"), tls_key=str(tmp / "own.key"),
                                    nginx_worker_shutdown_timeout=SHUTDOWN_TIMEOUT)
    inventory = tmp / "hosts.yaml"
    inventory.write_text(yaml.safe_dump(data))
    secret = secret_file(tmp, PASSWORD)
    run_tool("fab", "-H", "sandbox1", "deploy", "--inventory", str(inventory), "--password-file", str(secret))
    host = inv.hosts["sandbox1"]
    return {"host": host, "inventory": str(inventory), "secret": secret, "tmp": tmp,
            "ca": str(tmp / "ca.pem"), "runner": open_runner(host)}


def session(site) -> JupyterSession:
    return JupyterSession(site["host"].address, NAME, f"https://{NAME}", verify=site["ca"])


def logged_in(site, password=PASSWORD) -> JupyterSession:
    s = session(site)
    assert s.login(password)
    return s


def fab(site, *args, check=True):
    return run_tool("fab", "-H", "sandbox1", *args, "--inventory", site["inventory"], check=check)


def test_verify_proves_throttling_one_name_no_banner_and_a_confined_unit(site):
    result = run_tool("invoke", "verify", "--hosts", "sandbox1", "--inventory", site["inventory"],
                      "--password-file", str(site["secret"]), "--ca-file", site["ca"],
                      "--pytest-args=-rA -s -k test_exposure", check=False, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for check in ("another_host_name_gets_no_answer_on_http", "another_sni_name_gets_no_tls_handshake",
                  "no_version_banner", "a_login_post_is_small", "hsts_for_two_years_with_tls", "jupyter_sees_the_address_nginx_saw",
                  "password_guessing_is_throttled_per_client_address", "old_nginx_workers_let_go",
                  "the_jupyter_unit_is_confined", "notebook_code_cannot_rewrite_what_the_deploy_owns"):
        assert re.search(rf"^PASSED \S*::test_{check}", out, re.M), f"{check} did not pass:\n{out}"
    score = float(re.search(r"systemd-analyze security jupyter.service: ([\d.]+)", out).group(1))
    print(f"exposure of jupyter.service: {score}")
    assert score <= 4.5


def test_the_notebook_workload_runs_under_the_hardened_unit(site):
    s = logged_in(site)
    kernel = s.start_kernel()
    try:
        ws = s.kernel_channels(kernel)
        run = lambda code: execute(ws, code, timeout=180)   # noqa: E731
        assert run("import subprocess; subprocess.run(['sh', '-c', 'echo $((6*7))'], "
                   "capture_output=True, text=True).stdout.strip()") == "'42'"
        assert run("import os; open('written-by-a-kernel.txt', 'w').write('hello'); os.getcwd()") \
            == repr(NOTEBOOKS)
        # the config: root's, 0640, and this process cannot write it
        said = run(f"import errno, os\nst = os.stat({CONFIG!r})\ntry:\n    open({CONFIG!r}, 'a').close()"
                   f"\n    v = 'written'\nexcept OSError as e:\n    v = errno.errorcode[e.errno]\n"
                   f"(st.st_uid, oct(st.st_mode & 0o777), v)")
        uid, mode, verdict = eval(said)
        assert (uid, mode) == (0, "0o640") and verdict in ("EACCES", "EROFS", "EPERM"), said
        # pip into the notebook user's own environment under their home, then native code
        wheels = wheelhouse.ensure(["numpy"], python="3.11", machine="x86_64", glibc=(2, 36))
        [numpy] = [w for w in wheels.iterdir() if w.name.startswith("numpy-")]
        site["runner"].put(numpy.read_bytes(), f"{NOTEBOOKS}/{numpy.name}")
        site["runner"].run(f"chown jupyter: {NOTEBOOKS}/{numpy.name}")
        installed = run(
            "import subprocess, sys, os\n"
            "env = os.path.expanduser('~/e2e-env')\n"
            "subprocess.run(['/usr/bin/python3', '-m', 'venv', env], check=True)\n"
            f"subprocess.run([env + '/bin/pip', 'install', '--quiet', '--no-index', {numpy.name!r}], "
            "check=True, capture_output=True)\n"
            "sys.path.insert(0, subprocess.run([env + '/bin/python', '-c', 'import sysconfig; "
            "print(sysconfig.get_paths()[\"purelib\"])'], capture_output=True, text=True).stdout.strip())\n"
            "import numpy\n"
            "int((numpy.arange(1000.0) @ numpy.ones(1000)).item()), numpy.__file__.startswith(env)")
        assert installed == "(499500, True)", installed
        ws.close()
    finally:
        s.api("DELETE", f"/api/kernels/{kernel}")
    owner = site["runner"].run(f"stat -c %U {NOTEBOOKS}/written-by-a-kernel.txt").stdout.strip()
    assert owner == "jupyter"
    # a terminal, through the terminals API and its WebSocket
    r = s.api("POST", "/api/terminals")
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    term = s.websocket(f"/terminals/websocket/{name}")
    try:
        term.send(json.dumps(["stdin", "echo term-$((6*7)) && id -un\r"]))
        seen, deadline = "", time.monotonic() + 30
        while not re.search(r"term-42\r?\njupyter", seen) and time.monotonic() < deadline:
            kind, *payload = json.loads(term.recv())
            if kind == "stdout":
                seen += payload[0]
        assert re.search(r"term-42\r?\njupyter", seen), seen
    finally:
        term.close()
        s.api("DELETE", f"/api/terminals/{name}")


def test_after_a_reload_old_workers_cut_kernel_sockets_and_a_new_socket_works(site):
    s = logged_in(site)
    kernel = s.start_kernel()
    try:
        before = s.kernel_channels(kernel)
        assert execute(before, "x = 6 * 7; x") == "42"
        assert site["runner"].run("systemctl reload nginx").ok
        reloaded = time.monotonic()
        deadline = reloaded + SHUTDOWN_TIMEOUT + 15
        before.settimeout(1)
        cut_after = None
        while cut_after is None and time.monotonic() < deadline:
            try:   # messages may still come; then the old worker closes the socket
                if before.recv() in ("", b""):
                    cut_after = time.monotonic() - reloaded
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                cut_after = time.monotonic() - reloaded
        assert cut_after is not None, f"the kernel socket still stood {deadline - reloaded:.0f} s after the reload"
        print(f"kernel socket of the old worker cut {cut_after:.1f} s after the reload")
        assert cut_after < SHUTDOWN_TIMEOUT + 10
        # what JupyterLab does next: a new socket to the same kernel, which kept its state
        after = s.kernel_channels(kernel)
        assert execute(after, "x") == "42"
        after.close()
        workers = site["runner"].run("ps -eo args | grep -c '[n]ginx: worker process is shutting down'")
        assert workers.stdout.strip() == "0"
    finally:
        s.api("DELETE", f"/api/kernels/{kernel}")


def test_backups_are_private_and_leave_nothing_on_the_host(site):
    dest = site["tmp"] / "backups"
    out = fab(site, "backup", "--dest", str(dest))
    assert "sandbox1: ok" in out.stdout, out.stdout
    assert dest.stat().st_mode & 0o777 == 0o700
    files = sorted(dest.iterdir())
    assert [f.suffix for f in files] == [".gz", ".sha256"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert site["runner"].run("ls /var/tmp | grep -c jupyterfab-backup").stdout.strip() == "0"


def test_a_session_survives_a_restart_and_ends_with_a_password_rotation(site):
    s = logged_in(site)
    assert s.api("GET", "/api/contents").status_code == 200
    fab(site, "restart")
    assert s.api("GET", "/api/contents").status_code == 200, "a plain restart ended the session"
    new = secret_file(site["tmp"], "a-brand-new-password", "new-password")
    rotated = fab(site, "rotate-password", "--password-file", str(new))
    assert "every earlier session ended" in rotated.stdout, rotated.stdout
    assert site["runner"].run(f"stat -c '%U %G %a' {CONFIG}").stdout.split() == ["root", "jupyter", "640"]
    assert s.api("GET", "/api/contents").status_code == 403, "the old session outlived the rotation"
    assert not session(site).login(PASSWORD)
    assert logged_in(site, "a-brand-new-password").api("GET", "/api/contents").status_code == 200
