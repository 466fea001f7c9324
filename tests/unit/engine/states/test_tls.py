"""tls.pair applied for real by the local shell: certificate and key go live
together through one symlink, a mismatched pair never goes live."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from unit_support import LocalRunner


def pair(name="jupyter.example.com"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
                   .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


@pytest.fixture
def tls_project(project, tmp_path):
    project.write("files/cert.j2", "{{ cert }}")
    project.write("files/key.j2", "{{ key }}")
    (tmp_path / "ssl").mkdir()
    project.sls(f"""\
tls_pair:
  tls.pair:
    - name: {tmp_path}/ssl/jupyter.example.com
    - certificate_source: cert.j2
    - key_source: key.j2
""")
    return project


def live(tmp_path):
    link = tmp_path / "ssl" / "jupyter.example.com"
    return os.readlink(link), (link / "cert.pem").read_text(), (link / "key.pem").read_text()


def test_the_pair_switches_together_and_keeps_one_previous(tls_project, tmp_path):
    first, second, third = pair(), pair(), pair()
    tls_project.vars = {"cert": first[0], "key": first[1]}
    (result,) = tls_project.apply(LocalRunner())
    assert result.ok and result.changed
    version1, cert, key = live(tmp_path)
    assert (cert.strip(), key.strip()) == (first[0].strip(), first[1].strip())
    link = tmp_path / "ssl" / "jupyter.example.com"
    assert oct((link / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((link / "cert.pem").stat().st_mode & 0o777) == "0o644"

    (again,) = tls_project.apply(LocalRunner())
    assert again.ok and not again.changed and live(tmp_path)[0] == version1

    tls_project.vars = {"cert": second[0], "key": second[1]}
    assert tls_project.apply(LocalRunner())[0].changed
    version2 = live(tmp_path)[0]
    tls_project.vars = {"cert": third[0], "key": third[1]}
    assert tls_project.apply(LocalRunner())[0].changed
    version3 = live(tmp_path)[0]
    kept = sorted(p.name for p in (tmp_path / "ssl").iterdir())
    # the live one, the one it replaced, the link; the first is pruned, nothing staged is left
    assert kept == sorted(["jupyter.example.com", version2, version3])


@pytest.mark.skipif(not shutil.which("openssl"), reason="the host-side key check needs openssl")
def test_a_key_that_is_not_the_certificates_never_goes_live(tls_project, tmp_path):
    good, other = pair(), pair()
    tls_project.vars = {"cert": good[0], "key": good[1]}
    tls_project.apply(LocalRunner())
    before = live(tmp_path)
    tls_project.vars = {"cert": other[0], "key": good[1]}
    (result,) = tls_project.apply(LocalRunner())
    assert result.ok is False and "is not the certificate's" in result.stderr
    assert live(tmp_path) == before
