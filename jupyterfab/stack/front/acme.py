"""ACME certificates (Let's Encrypt or any RFC 8555 CA) issued and renewed on the host.

What lives where, and why:

* Debian's ``certbot`` runs on the host: it keeps the certificate at
  ``/etc/letsencrypt/live/NAME/`` and renews it with its own ``certbot.timer``,
  without the controller. A deploy hook (``renewal-hooks/deploy/``) reloads NGINX
  after each renewal, so a renewed certificate is served without a deploy.
* HTTP-01: certbot writes the challenge into a webroot that NGINX serves at
  ``/.well-known/acme-challenge/`` on port 80, ahead of the HTTPS redirect.
* DNS-01 (``cloudflare_zone`` with a DNS-only record): the TXT record is set
  through the Cloudflare API by certbot's manual hooks *on the host*, with a
  token kept there (0600, root). The token is scoped to the host, not kept on the
  controller, because renewals happen on the host every 60 days whether or not
  anyone deploys: a token that stayed on the controller would let the
  certificate expire the first time nobody deployed in time. Give the host its
  own token with Zone.DNS:Edit on that zone only (``--acme-dns-token-file``), so a
  compromised host can touch DNS records of that zone and nothing else.

Nothing here talks to a host; this module decides, parses and explains.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509

from jupyterfab.engine.shell import Command, cmd
from jupyterfab.inventory.schema import ACME_SERVERS

LETSENCRYPT = ACME_SERVERS["letsencrypt"]
LETSENCRYPT_STAGING = ACME_SERVERS["staging"]

LIVE_DIR = "/etc/letsencrypt/live"
RENEWAL_DIR = "/etc/letsencrypt/renewal"
LOG_FILE = "/var/log/letsencrypt/letsencrypt.log"
WEBROOT = "/var/lib/jupyterfab/acme-webroot"
CHALLENGE_PATH = "/.well-known/acme-challenge/"
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/jupyterfab-reload-nginx"
CA_BUNDLE = "/etc/jupyterfab/acme-ca-bundle.pem"   # the acme_ca_bundle, for tests with a private CA
DNS_TOKEN_FILE = "/etc/letsencrypt/jupyterfab-cloudflare.token"
DNS_HOOK = "/usr/local/lib/jupyterfab/acme-cloudflare-hook"
# verify warns below this; certbot renews at 30 days left
MIN_DAYS_LEFT = 14


def server_url(value: str) -> str:
    """``letsencrypt`` / ``staging`` / an https directory URL -> the directory URL."""
    return ACME_SERVERS.get(value, value)


# ----- why an issuance failed ---------------------------------------------------------

_PROBLEM = re.compile(r"urn:ietf:params:acme:error:([A-Za-z]+)(?:\s*::\s*(.*))?")
_TYPE_DETAIL = re.compile(r"^\s*Type:\s*(\S+)\s*\n\s*Detail:\s*(.+)$", re.M)

_HINTS = {
    "connection": "the CA could not connect to port 80 of {name}: open port 80 to the internet "
                  "(firewall, security group) and check that DNS for {name} points at this host",
    "unauthorized": "the CA reached {name} but not the challenge file this host wrote: DNS for "
                    "{name} points at another server, or something in front of port 80 answers "
                    "instead of this NGINX",
    "incorrectResponse": "the CA reached {name} but got another answer than the challenge: DNS for "
                         "{name} points at another server",
    "dns": "the CA could not resolve {name} (or its _acme-challenge TXT record): DNS does not "
           "point here yet",
    "rateLimited": "the CA's rate limit was hit: wait for the time it names, and try deployments "
                   "against acme_server: staging first",
    "caa": "a CAA record of {name}'s domain forbids this CA to issue for it",
    "rejectedIdentifier": "the CA will not issue for {name} (a reserved or blocked name)",
    "invalidContact": "the CA refused acme_email",
    "unsupportedContact": "the CA refused acme_email",
    "tls": "the CA's TLS connection to {name} failed",
}


@dataclass(frozen=True)
class Failure:
    problem: str          # the ACME problem type without its urn prefix, or "network", ""
    detail: str           # the CA's (or certbot's) own words
    explanation: str      # what it means for the user

    def __str__(self) -> str:
        kind = f"ACME {self.problem}: " if self.problem not in ("", "network") else ""
        return f"{self.explanation} [{kind}{self.detail}]"


def explain_failure(output: str, name: str) -> Failure:
    """Certbot's output (or log) -> the ACME problem, the CA's detail and what to do."""
    found = _TYPE_DETAIL.search(output)
    last = ([None] + list(_PROBLEM.finditer(output)))[-1]   # the last one is the final error
    if found:
        problem, detail = found.group(1), found.group(2).strip()
    elif last:
        problem, detail = last.group(1), (last.group(2) or "").strip().split(" :: ")[-1]
    else:
        problem, detail = "", ""
    problem = problem.rsplit(":", 1)[-1]
    if problem in _HINTS:
        # Some CAs (Pebble) report a name that does not resolve as a connection problem
        hint = "dns" if re.search(r"NXDOMAIN|SERVFAIL|could not resolve|no valid A|DNS problem",
                                  detail) else problem
        return Failure(problem, detail, _HINTS[hint].format(name=name))
    network = re.search(r"(Max retries exceeded|Connection refused|Failed to establish a new "
                        r"connection|Name or service not known|Temporary failure in name "
                        r"resolution|CERTIFICATE_VERIFY_FAILED|timed out)[^\n]*", output)
    if network and "acme" not in problem:
        said = re.search(r"with error: ([^\n]+)", output)   # certbot renew's own summary
        return Failure("network", (said.group(1) if said else network.group(0)).strip()[:300],
                       "the host could not reach the ACME server (acme_server): check its URL and "
                       "the host's outbound HTTPS")
    last = [line.strip() for line in output.splitlines()
            if line.strip() and not line.startswith("Saving debug")]
    return Failure(problem, detail or (last[-1] if last else "certbot printed nothing"),
                   "certbot could not get the certificate")


# ----- the state of a certificate on the host, as status and verify report it --------

@dataclass(frozen=True)
class RenewalState:
    not_after: dt.datetime | None       # the live certificate's expiry, None when there is none
    last_error: str                     # the last renewal run's error, "" when it succeeded

    def days_left(self, now: dt.datetime | None = None) -> int | None:
        if self.not_after is None:
            return None
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).days

    def describe(self) -> str:
        if self.not_after is None:
            expiry = "no certificate yet"
        else:
            expiry = f"expires {self.not_after:%Y-%m-%d %H:%M} UTC ({self.days_left()} days left)"
        return expiry + (f"; last renewal FAILED: {self.last_error}" if self.last_error else "")


RENEWAL_SCRIPT = """grep -h -F -A3 "Failed to renew certificate $1 with error" "$2" 2>/dev/null | tail -n 20
true"""


def state_commands(name: str) -> list[tuple[str, Command]]:
    """(section, command) pairs for one round trip: the live certificate, and its renewal
    failure in the last certbot run (certbot starts a new log file on every run, and a
    renewal by certbot.timer that succeeds leaves none)."""
    return [("certificate", cmd("cat", f"{LIVE_DIR}/{name}/cert.pem")),
            ("renewal", cmd("sh", "-c", RENEWAL_SCRIPT, "sh", name, LOG_FILE))]


def parse_state(found: dict[str, list[str]], name: str) -> RenewalState:
    """What ``state_commands`` printed, split into its sections (pure)."""
    certificate_pem = "\n".join(found.get("certificate", []))
    renewal_log = "\n".join(found.get("renewal", []))
    not_after = None
    if "BEGIN CERTIFICATE" in certificate_pem:
        try:
            not_after = x509.load_pem_x509_certificate(certificate_pem.strip().encode()).not_valid_after_utc
        except ValueError:
            pass
    error = str(explain_failure(renewal_log, name)) if "Failed to renew certificate" in renewal_log else ""
    return RenewalState(not_after, error)
