"""The browser check's certificate step: with a CA file, the server certificate is
checked in Python (the browser then ignores certificate errors, as it does not know
the CA), so this step alone decides whether a wrong certificate is caught.

A real TLS server on loopback, with certificates made here."""

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jupyterfab.verify.browser import BrowserCheckFailed, check_certificate

NAME = "jupyter.example.com"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, *, ca, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_ca(tmp_path, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(cn, key, cn, key, ca=True)
    (tmp_path / f"{cn}.pem").write_bytes(_pem(cert))
    return cert, key, tmp_path / f"{cn}.pem"


@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on 127.0.0.1 presenting a certificate for NAME from 'Test CA'."""
    ca_cert, ca_key, ca_file = _new_ca(tmp_path, "Test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(NAME, key, "Test CA", ca_key, ca=False, san=NAME)
    (tmp_path / "server.pem").write_bytes(_pem(cert) + _pem(ca_cert))
    (tmp_path / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)   # so the thread sees `stop` soon after the test
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass   # the client refused our certificate: expected in some tests

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield {"port": listener.getsockname()[1], "ca_file": str(ca_file), "tmp": tmp_path}
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_certificate_from_the_given_ca_for_the_public_name_passes(tls_server):
    cert = check_certificate(f"https://{NAME}:{tls_server['port']}", "127.0.0.1", tls_server["ca_file"])
    assert ("commonName", NAME) in [pair for rdn in cert["subject"] for pair in rdn]


def test_a_certificate_from_another_ca_fails_with_the_reason(tls_server):
    _, _, other_ca = _new_ca(tls_server["tmp"], "Other CA")
    with pytest.raises(BrowserCheckFailed) as failed:
        check_certificate(f"https://{NAME}:{tls_server['port']}", "127.0.0.1", str(other_ca))
    message = str(failed.value)
    assert f"certificate of {NAME} (127.0.0.1) does not verify against {other_ca}" in message
    assert "self-signed certificate in certificate chain" in message   # ours is not that CA


def test_a_certificate_for_another_name_fails(tls_server):
    with pytest.raises(BrowserCheckFailed) as failed:
        check_certificate(f"https://other.example.com:{tls_server['port']}", "127.0.0.1",
                          tls_server["ca_file"])
    assert "Hostname mismatch" in str(failed.value)


def test_nothing_listening_is_a_clear_failure_too(tls_server):
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    with pytest.raises(BrowserCheckFailed, match=f"no TLS connection to {NAME} \\(127.0.0.1:{port}\\)"):
        check_certificate(f"https://{NAME}:{port}", "127.0.0.1", tls_server["ca_file"])
