"""What the internet can do to a deployed host: guess passwords (throttled per client
address), reach Jupyter by another name (never), read a version banner (none), forge
the client's address to Jupyter (never), and what notebook code can do to the server
(not rewrite it; the unit confines it).

The guessing happens from an address of its own, so every other check, and every
visitor, still logs in: behind Cloudflare's lockdown from --edge-address with the
attacker's address in CF-Connecting-IP (as Cloudflare would send it), otherwise from
the host's own loopback.
"""

import re
import socket
import ssl
import uuid

import pytest

from jupyterfab.engine import initsys
from jupyterfab.verify.jupyterclient import JupyterSession

# TEST-NET addresses (RFC 5737): never a real visitor.
ATTACKER = "203.0.113.66"
FORGED = "192.0.2.99"
OTHER_NAME = "not-this-host.invalid"
MAX_EXPOSURE = 4.5
SITE = "/etc/nginx/sites-enabled/jupyter.conf"

# Wrong passwords from the host's loopback; prints each answer's status. $1 scheme,
# $2 server_name, $3 how many.
GUESSES = r"""
import http.client, re, socket, ssl, sys
scheme, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
def connect():
    if scheme == "http":
        return http.client.HTTPConnection("127.0.0.1", 80, timeout=15)
    context = ssl._create_unverified_context()
    c = http.client.HTTPSConnection(name, 443, timeout=15, context=context)
    c.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", 443), 15), server_hostname=name)
    return c
c = connect()
c.request("GET", "/login", headers={"Host": name})
r = c.getresponse(); r.read()
xsrf = re.search(r"_xsrf=([^;]+)", r.getheader("Set-Cookie") or "").group(1)
for _ in range(count):
    c.request("POST", "/login", body="password=not-the-password&_xsrf=" + xsrf,
              headers={"Host": name, "Cookie": "_xsrf=" + xsrf, "Origin": scheme + "://" + name,
                       "Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse(); r.read()
    print(r.status)
    if r.getheader("Connection", "").lower() == "close":
        c = connect()
"""


def _connect(address, port, source, sni=None):
    """A connection to the origin; with ``sni`` (None: no SNI at all) a TLS one."""
    raw = socket.create_connection((address, port), timeout=10,
                                   source_address=(source, 0) if source else None)
    if port != 443:
        return raw
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # names, not trust, here
    try:
        return context.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def _raw_answer(address, port, host_header, *, sni=None, source=None) -> bytes:
    """What the origin answers a plain GET for ``host_header`` (b"": nothing at all)."""
    with _connect(address, port, source, sni) as conn:
        conn.sendall(f"GET /login HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def test_another_host_name_gets_no_answer_on_http(entry, v, source):
    assert _raw_answer(entry.address, 80, v["server_name"], source=source).startswith(b"HTTP/1.1 ")
    for other in (OTHER_NAME, entry.address):
        assert _raw_answer(entry.address, 80, other, source=source) == b"", other


def test_another_sni_name_gets_no_tls_handshake_and_another_host_no_answer(entry, v, source):
    if not v["tls_enabled"]:
        pytest.skip("TLS is not configured for this host: there is no port 443")
    _connect(entry.address, 443, source, v["server_name"]).close()
    for sni in (OTHER_NAME, None):   # None: no SNI at all, as a scan of the bare address sends
        with pytest.raises(ssl.SSLError, match="(?i)unrecognized.name|alert"):
            _connect(entry.address, 443, source, sni).close()
    # our name in SNI but another in Host: NGINX picks the catch-all for the request
    assert _raw_answer(entry.address, 443, OTHER_NAME, sni=v["server_name"], source=source) == b""


def test_no_version_banner(browser):
    page = browser.get("/login")
    assert page.headers.get("Server") == "nginx", page.headers.get("Server")
    missing = browser.get(f"/static/jupyterfab-{uuid.uuid4().hex}.none")
    assert missing.headers.get("Server") == "nginx"
    assert not re.search(r"nginx/\d", missing.text)


def test_a_login_post_is_small_and_uploads_keep_their_limit(browser, v):
    # NGINX refuses it on its Content-Length, before the throttle counts it
    big = browser.http.post(browser.base + "/login", data={"password": "x" * 32768}, timeout=15,
                            allow_redirects=False)
    assert big.status_code == 413, big.status_code
    upload = browser.http.put(browser.base + "/api/contents/jupyterfab-verify.txt", timeout=15,
                              data=b"x" * 2_000_000, headers={"Origin": browser.origin})
    assert upload.status_code == 403, upload.status_code   # Jupyter's (not logged in), not NGINX's 413


def test_hsts_for_two_years_with_tls(browser, v):
    if not v["tls_enabled"]:
        pytest.skip("TLS is not configured for this host: no HSTS over plain HTTP")
    assert browser.get("/login").headers.get("Strict-Transport-Security") == "max-age=63072000"


def test_jupyter_sees_the_address_nginx_saw_not_one_the_client_claims(host, init, browser):
    marker = f"jupyterfab-verify-{uuid.uuid4().hex}"
    forged = {"X-Forwarded-For": FORGED, "X-Real-IP": FORGED, "X-Forwarded-Proto": "gopher",
              "X-Scheme": "gopher"}
    assert browser.get(f"/api/contents/{marker}", headers=forged).status_code == 403
    with host.sudo():
        log = host.run(initsys.for_init(init).log("jupyter", 400).text).stdout
    lines = [line for line in log.splitlines() if marker in line]
    assert lines, f"Jupyter logged no request for {marker}"
    seen = re.search(r"\(\S*@([0-9a-fA-F.:]+)\)", lines[-1])
    assert seen and seen.group(1) != FORGED, lines[-1]


def test_password_guessing_is_throttled_per_client_address(host, entry, v, way_in, password, edge_address):
    """A burst of wrong passwords from one address ends in 429; another still logs in."""
    burst = v["login_burst"]
    address, verify, source = way_in
    if v["origin_lockdown_enabled"]:
        if not edge_address:
            pytest.skip("the origin admits Cloudflare only: give --edge-address to guess from "
                        "there as two visitors")
        attacker = JupyterSession(entry.address, v["server_name"], v["public_url"], verify=verify,
                                  source_address=source)
        attacker.http.headers["CF-Connecting-IP"] = ATTACKER
        attacker.get("/login")
        statuses = [attacker.http.post(attacker.base + "/login", timeout=15, allow_redirects=False,
                                       data={"password": "not-the-password", "_xsrf": attacker._xsrf()},
                                       headers={"Origin": attacker.origin}).status_code
                    for _ in range(burst + 3)]
    else:
        scheme = "https" if v["tls_enabled"] else "http"
        out = host.run("python3 -c %s %s %s %s", GUESSES, scheme, v["server_name"], str(burst + 3))
        assert out.rc == 0, out.stderr
        statuses = [int(s) for s in out.stdout.split()]
    checked = [s for s in statuses if s != 429]
    assert statuses[-1] == 429, f"{len(statuses)} wrong passwords in a row, answers: {statuses}"
    assert len(checked) <= burst + 1, statuses
    assert all(s in (200, 401, 403) for s in checked), statuses
    visitor = JupyterSession(address or v["server_name"], v["server_name"], v["public_url"],
                             verify=verify, source_address=source)
    if v["origin_lockdown_enabled"]:
        visitor.http.headers["CF-Connecting-IP"] = "203.0.113.77"
    assert visitor.login(password), "another address could not log in after the guessing"


def test_old_nginx_workers_let_go_after_a_reload(host, v):
    with host.sudo():
        effective = host.run("nginx -T 2>/dev/null").stdout
    assert re.search(rf"^\s*worker_shutdown_timeout {v['nginx_worker_shutdown_timeout']}s;", effective, re.M)


def test_the_jupyter_unit_is_confined(host, init):
    if init != "systemd":
        pytest.skip("Upstart has no sandboxing: the job runs as the notebook user (setuid), "
                    "with a umask and limits")
    with host.sudo():
        said = host.run("systemd-analyze security --no-pager jupyter.service").stdout
    score = re.search(r"Overall exposure level for jupyter\.service: ([\d.]+)", said)
    assert score, said[-500:]
    print(f"systemd-analyze security jupyter.service: {score.group(1)}")
    assert float(score.group(1)) <= MAX_EXPOSURE, said


def test_notebook_code_cannot_rewrite_what_the_deploy_owns(host, init, v):
    with host.sudo():   # /etc/jupyterfab is not the SSH user's to look into when it is a sudoer
        config = host.file(v["config_file"])
        assert (config.user, config.group, config.mode) == ("root", v["jupyter_user"], 0o640)
    owned = [v["config_dir"], v["prefix"], SITE, v["env_dir"] + "/",
             initsys.for_init(init).unit_path("jupyter")]
    if init == "systemd":       # on Upstart the notebook user is in the socket's group
        owned.append(v["jupyter_socket_dir"])
    if v["tls_enabled"]:
        owned.append(v["tls_dir"])
    with host.sudo():
        writable = host.run("runuser -u %s -- find " + " ".join(["%s"] * len(owned)) + " -writable -print",
                            v["jupyter_user"], *owned)
    assert writable.stdout.strip() == "", f"the notebook user can write: {writable.stdout.strip()}"
