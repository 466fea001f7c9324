"""A throw-away certificate authority that plays Cloudflare's Origin CA in tests.

The Cloudflare stand-in signs the CSRs it receives with this CA, so a test (or an
end-to-end run) can check an issued certificate the way a TLS client would: by
trusting ``certificate_pem`` and verifying the chain and the hostname.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jupyterfab.engine.errors import ServiceError

# Cloudflare's real Origin CA names its leaves this way; keeping the shape lets
# code that inspects subjects behave the same against the stand-in.
LEAF_SUBJECT = x509.Name([
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CloudFlare, Inc."),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "CloudFlare Origin CA"),
    x509.NameAttribute(NameOID.COMMON_NAME, "CloudFlare Origin Certificate"),
])


class CertificateRequestError(ServiceError, ValueError):
    """The CSR cannot be signed (unreadable, bad signature, wrong key type)."""


class TestCertificateAuthority:
    """A self-signed CA (ECDSA P-256) that issues server certificates from CSRs."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey):
        self.certificate = certificate
        self._private_key = private_key

    @classmethod
    def generate(cls, common_name: str = "jupyterfab test Origin CA") -> TestCertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        public_key = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            # Backdated a little so a client clock slightly behind still accepts it.
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=20 * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def from_pem(cls, certificate_pem: str, private_key_pem: str) -> TestCertificateAuthority:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the test CA key must be an EC key")
        return cls(certificate, key)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def private_key_pem(self) -> str:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def issue(self, csr_pem: str, hostnames: list[str], validity_days: int,
              key_type: str) -> x509.Certificate:
        """Sign ``csr_pem`` for ``hostnames`` (as SANs), valid ``validity_days`` from now.

        ``key_type`` is "rsa" or "ecc": like Cloudflare, the CSR's key must match
        the requested certificate type.
        """
        csr = _load_csr(csr_pem)
        public_key = csr.public_key()
        expected = {"rsa": rsa.RSAPublicKey, "ecc": ec.EllipticCurvePublicKey}[key_type]
        if not isinstance(public_key, expected):
            raise CertificateRequestError(
                f"the CSR's key is not {key_type.upper()}, as the request type requires")
        now = dt.datetime.now(dt.UTC)
        ca_public_key = self._private_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(LEAF_SUBJECT)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True,
                                      key_encipherment=isinstance(public_key, rsa.RSAPublicKey)),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([_san(h) for h in hostnames]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key), critical=False)
            .sign(self._private_key, hashes.SHA256())
        )


def _key_usage(**granted: bool) -> x509.KeyUsage:
    """A KeyUsage with ``granted`` set and every other usage off."""
    usages = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
              "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{**dict.fromkeys(usages, False), **granted})


def _san(name: str) -> x509.GeneralName:
    """An IP address becomes an IP SAN (a test server reached by address), else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _load_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise CertificateRequestError(f"the CSR is not a PEM certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise CertificateRequestError("the CSR's signature does not match its key")
    return csr
