"""The origin as Cloudflare (and only Cloudflare) sees it: TLS on 443 with the
deployed certificate, HTTP redirected to HTTPS, and the lockdown to Cloudflare's
address ranges with the visitor's address in the logs.

Checks that do not apply to a host (no TLS, no lockdown) are skipped, saying why.
"""

import datetime as dt
import hashlib
import socket
import ssl
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jupyterfab.verify.jupyterclient import JupyterSession

# An address from TEST-NET-3 (RFC 5737): never a real visitor, easy to find in a log.
VISITOR = "203.0.113.77"


def _served_certificate(address, server_name, source, context):
    with socket.create_connection((address, 443), timeout=10,
                                  source_address=(source, 0) if source else None) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls_socket:
            return tls_socket.getpeercert(binary_form=True), tls_socket.version()


def _reachable_directly(v, edge_address):
    if v["origin_lockdown_enabled"] and not edge_address:
        pytest.skip("the origin admits Cloudflare only: give --edge-address to check it directly")


def _real_file(host, path):
    """The file itself, also where the path is a symlink (certbot's live/ points into archive/)."""
    f = host.file(path)
    return host.file(f.linked_to) if f.is_symlink else f


def test_nginx_listens_on_443_and_the_key_is_root_only(host, tls):
    assert host.socket("tcp://0.0.0.0:443").is_listening
    with host.sudo():
        key = _real_file(host, tls["tls_key_path"])
        assert key.user == "root" and key.mode == 0o600
        assert _real_file(host, tls["tls_certificate_path"]).mode == 0o644


def test_the_served_certificate_is_the_deployed_one_for_the_public_name(host, entry, tls, edge_address,
                                                                         source):
    _reachable_directly(tls, edge_address)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # checked below, by hand
    der, version = _served_certificate(entry.address, tls["server_name"], source, context)
    with host.sudo():
        deployed = host.file(tls["tls_certificate_path"]).content_string
    # the first certificate of the file: certbot's fullchain.pem has the chain after it
    leaf = x509.load_pem_x509_certificates(deployed.encode())[0]
    assert der == leaf.public_bytes(serialization.Encoding.DER), \
        "NGINX serves another certificate than the deployed one"
    certificate = x509.load_der_x509_certificate(der)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert tls["server_name"] in names.get_values_for_type(x509.DNSName)
    days_left = (certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    assert days_left > 14, f"the certificate expires in {days_left} days"
    assert version in ("TLSv1.2", "TLSv1.3")
    print(f"certificate sha256 {hashlib.sha256(der).hexdigest()[:16]}..., {days_left} days left, {version}")


def test_the_certificate_chains_to_the_given_ca(entry, tls, ca_file, edge_address, source):
    """To --ca-file; without it, an ACME certificate to this machine's CAs, as a browser would."""
    if not ca_file and not tls["acme_enabled"]:
        pytest.skip("no --ca-file: the chain is not checked (an Origin CA certificate chains to "
                    "Cloudflare's Origin CA root, which no system trusts)")
    _reachable_directly(tls, edge_address)
    context = ssl.create_default_context(cafile=ca_file)   # chain and hostname, as a client would
    _served_certificate(entry.address, tls["server_name"], source, context)


def test_only_tls_1_2_and_newer_are_offered(host, tls):
    site = host.file("/etc/nginx/sites-enabled/jupyter.conf")
    assert site.contains(r"^\s*ssl_protocols TLSv1.2 TLSv1.3;")


def test_http_redirects_to_https(entry, tls, edge_address, source):
    _reachable_directly(tls, edge_address)
    session = JupyterSession(entry.address, tls["server_name"], f"http://{tls['server_name']}",
                             source_address=source)
    r = session.get("/lab?reset")
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://{tls['server_name']}/lab?reset"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_origin_refuses_addresses_outside_cloudflare(entry, lockdown):
    """From this machine's own address, which is not Cloudflare's: NGINX itself answers 403
    (a refused connection would prove nothing: NGINX might just be down)."""
    for scheme in ("http", "https"):
        session = JupyterSession(entry.address, lockdown["server_name"],
                                 f"{scheme}://{lockdown['server_name']}", verify=False)
        r = session.get("/login")
        assert r.status_code == 403, f"{scheme}: answered {r.status_code}"
        assert r.headers.get("Server", "").startswith("nginx"), f"{scheme}: {r.headers.get('Server')}"


def test_the_origin_serves_cloudflare_and_logs_the_visitor(host, entry, lockdown, browser, edge_address):
    marker = f"/login?verify={uuid.uuid4().hex}"
    r = browser.get(marker, headers={"CF-Connecting-IP": VISITOR})
    assert r.status_code == 200, f"from inside Cloudflare's ranges: {r.status_code}"
    if not edge_address:
        return   # through Cloudflare itself: the visitor is this machine, not VISITOR
    with host.sudo():
        log = host.run("grep -F -- %s /var/log/nginx/access.log", marker.split("?")[1]).stdout
    assert log.startswith(VISITOR + " "), f"the access log shows {log.split(' ')[0] or 'nothing'}"
