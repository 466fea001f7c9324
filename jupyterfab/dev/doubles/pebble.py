"""Pebble, Let's Encrypt's ACME test server (Debian's ``pebble``), for tests and the demo.

Runs on one address (the sandbox bridge's) so that the sandbox hosts reach it and it
reaches their port 80, with ``pebble-challtestsrv`` as its DNS server: the tests add
A records for the hosts' names and TXT records for DNS-01 through challtestsrv's
management API. It answers on port 53 too, where the sandbox hosts' resolver asks
(``sandbox.resolv_conf``): a name resolves on the host as the CA sees it, which the
deploy's ACME preflight checks. Pebble's HTTPS listener gets a certificate from a test
CA generated here (``ca_bundle_pem``: what the hosts' certbot must trust, ``acme_ca_bundle``);
the certificates Pebble issues chain to its own root, random per run
(``issuing_roots_pem``: what ``invoke verify --ca-file`` wants).

    with Pebble("198.18.0.1", workdir) as pebble:
        pebble.add_a("jupyter.example.com", "198.18.0.11")
        pebble.directory_url     # https://198.18.0.1:14000/dir

Started and stopped as child processes of this one; nothing else is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jupyterfab.dev.doubles.certificate_authority import TestCertificateAuthority
from jupyterfab.engine.errors import ServiceError

ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS_PORT = 8053
CHALLTESTSRV_PORT = 8055


class PebbleError(ServiceError):
    """Pebble or challtestsrv did not start (the message has the end of its log)."""


def available() -> str | None:
    """Why Pebble cannot run here, or None."""
    missing = [tool for tool in ("pebble", "pebble-challtestsrv") if not shutil.which(tool)]
    return f"{' and '.join(missing)} not installed (apt-get install pebble)" if missing else None


class Pebble:
    def __init__(self, address: str, workdir: Path):
        self.address = address
        self.workdir = Path(workdir)
        self._processes: list[subprocess.Popen] = []
        self.ca = TestCertificateAuthority.generate("jupyterfab test ACME server CA")

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Pebble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for p in self._processes)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certificate, key = self._listener_certificate()
        (self.workdir / "pebble-cert.pem").write_text(certificate)
        key_file = self.workdir / "pebble-key.pem"
        key_file.write_text(key)
        key_file.chmod(0o600)
        (self.workdir / "ca-bundle.pem").write_text(self.ca.certificate_pem)
        config = {"pebble": {
            "listenAddress": f"{self.address}:{ACME_PORT}",
            "managementListenAddress": f"{self.address}:{MANAGEMENT_PORT}",
            "certificate": str(self.workdir / "pebble-cert.pem"),
            "privateKey": str(key_file),
            "httpPort": 80, "tlsPort": 443,
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}
        (self.workdir / "pebble-config.json").write_text(json.dumps(config, indent=2))
        # No default answers (challtestsrv's are 127.0.0.1 and ::1): a name resolves only
        # as a test says, and Pebble never tries the hosts over an IPv6 they do not have.
        self._spawn("challtestsrv", ["pebble-challtestsrv", "-defaultIPv4", "", "-defaultIPv6", "",
                                     "-http01", "", "-https01", "",
                                     "-tlsalpn01", "",
                                     # 53 too: the sandbox hosts' resolver asks there
                                     "-dns01", f"{self.address}:{DNS_PORT},{self.address}:53",
                                     "-management", f"{self.address}:{CHALLTESTSRV_PORT}"],
                    {}, CHALLTESTSRV_PORT)
        # No sleeps between validation attempts, and every nonce accepted: Pebble's
        # defaults are there to shake out clients, not to make tests slow and flaky.
        self._spawn("pebble", ["pebble", "-config", str(self.workdir / "pebble-config.json"),
                               "-dnsserver", f"{self.address}:{DNS_PORT}"],
                    {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}, ACME_PORT)

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                   env={**os.environ, **env}, start_new_session=True)
        log.close()
        self._processes.append(process)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection((self.address, port), timeout=1):
                    return
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise PebbleError(f"{name} did not listen on {self.address}:{port}: {tail}") from None
                time.sleep(0.1)

    def _listener_certificate(self) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.address)]))
               .sign(key, hashes.SHA256()))
        certificate = self.ca.issue(csr.public_bytes(serialization.Encoding.PEM).decode(),
                                    [self.address, "localhost"], validity_days=30, key_type="ecc")
        return (certificate.public_bytes(serialization.Encoding.PEM).decode(),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode())

    # --- what clients need ------------------------------------------------------------

    @property
    def directory_url(self) -> str:
        return f"https://{self.address}:{ACME_PORT}/dir"

    @property
    def ca_bundle_path(self) -> Path:
        """The CA of Pebble's own HTTPS listener (for certbot's REQUESTS_CA_BUNDLE)."""
        return self.workdir / "ca-bundle.pem"

    def issuing_roots_pem(self) -> str:
        """The root the issued certificates chain to (random per Pebble run)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle_path))
        url = f"https://{self.address}:{MANAGEMENT_PORT}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            return answer.read().decode()

    def _challtestsrv(self, path: str, body: dict) -> None:
        request = urllib.request.Request(f"http://{self.address}:{CHALLTESTSRV_PORT}{path}",
                                         data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def add_a(self, name: str, address: str) -> None:
        self._challtestsrv("/add-a", {"host": name.rstrip(".") + ".", "addresses": [address]})

    def clear_a(self, name: str) -> None:
        """No A record for ``name`` any more (``add_a`` adds to those it has)."""
        self._challtestsrv("/clear-a", {"host": name.rstrip(".") + "."})

    def serve_txt(self, name: str, values: list[str]) -> None:
        """Answer TXT queries for ``name`` with exactly ``values`` (a DNS zone's view)."""
        host = name.rstrip(".") + "."
        self._challtestsrv("/clear-txt", {"host": host})
        for value in values:
            self._challtestsrv("/set-txt", {"host": host, "value": value})

    def inventory_vars(self, email: str = "ops@example.org") -> dict[str, str]:
        """What a host's inventory needs to get its certificate from this Pebble."""
        return {"tls": "acme", "acme_email": email, "acme_server": self.directory_url,
                "acme_ca_bundle": str(self.ca_bundle_path)}
