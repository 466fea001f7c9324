"""Cloudflare in front of a host: what a deploy asks of Cloudflare and gives NGINX.

A host whose ``cloudflare_zone`` is set is deployed in this order, so that no
step can send traffic somewhere not ready for it:

    before the states   token verified, origin certificate kept or issued,
                        Cloudflare's IP ranges refreshed (for the lockdown)
    the states          NGINX serves TLS with that certificate, admits only
                        Cloudflare's ranges, takes the client address from
                        CF-Connecting-IP
    after the states    zone settings (ssl=strict only once the origin can
                        pass it), then the DNS record (traffic arrives last)

If the states fail, Cloudflare is left as it was. The plan for a host (what to
ask of Cloudflare, which certificate) is worked out from the variables alone
by ``plan_for``, before any connection, so configuration errors stop a deploy
before it starts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jupyterfab.engine.errors import ConfigError
from jupyterfab.engine.result import Result
from jupyterfab.engine.shell import Secret
from jupyterfab.inventory import schema
from jupyterfab.stack.front import acme
from jupyterfab.stack.front import cloudflare as cf

TLS_DIR = "/etc/ssl/jupyterfab"
# Renew an Origin CA certificate when it has this many days left or fewer.
RENEW_DAYS = 30
CACHE_DIR = Path(os.environ.get("JUPYTERFAB_CACHE_DIR",
                                Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jupyterfab"))
# Shown in a dry run in place of a certificate that would be issued.
PLACEHOLDER_CERTIFICATE = "# a new Cloudflare Origin CA certificate would be issued here\n"


class EdgeConfigError(ConfigError):
    """A host's Cloudflare/TLS variables do not make sense; names the variable."""


@dataclass(frozen=True)
class EdgePlan:
    """What a host's variables ask for; pure, decided before any connection."""

    zone: str                 # "" when Cloudflare is not used
    hostname: str
    subdomain: str
    proxied: bool
    lockdown: bool            # NGINX admits Cloudflare's ranges only
    origin_pulls: bool        # authenticated origin pulls (NGINX demands Cloudflare's client cert)
    tls: str                  # "off" | "origin-ca" | "own" | "acme"
    api_url: str | None
    acme_email: str = ""
    acme_server: str = ""     # the ACME directory URL
    acme_challenge: str = ""  # "http-01" | "dns-01"

    @property
    def pair_path(self) -> str:
        """One symlink to the directory holding both (states/tls.py): they switch together."""
        return f"{TLS_DIR}/{self.hostname}"

    @property
    def certificate_path(self) -> str:
        if self.tls == "acme":
            return f"{acme.LIVE_DIR}/{self.hostname}/fullchain.pem"
        return f"{self.pair_path}/cert.pem"

    @property
    def key_path(self) -> str:
        if self.tls == "acme":
            return f"{acme.LIVE_DIR}/{self.hostname}/privkey.pem"
        return f"{self.pair_path}/key.pem"


def plan_for(host_name: str, v: dict[str, Any]) -> EdgePlan:
    """The host's plan, or ``EdgeConfigError`` naming the variable to fix."""
    def wrong(key: str, why: str) -> EdgeConfigError:
        return EdgeConfigError(f"{host_name}: {key}: {why}")

    hostname = v["server_name"].strip().rstrip(".").lower()
    zone = v["cloudflare_zone"].strip().rstrip(".").lower()
    proxied = bool(v["cloudflare_proxied"]) and bool(zone)
    own = _own_certificate(v, wrong)
    _check_mode(v["tls"], own, proxied, wrong)
    subdomain = _subdomain(hostname, zone, wrong)
    origin_pulls = bool(v["authenticated_origin_pulls"]) and proxied
    if origin_pulls and not v["origin_pull_ca"]:
        raise wrong("origin_pull_ca", "authenticated origin pulls need Cloudflare's origin-pull CA "
                                      "certificate: download it from Cloudflare's documentation "
                                      "(authenticated_origin_pull_ca.pem) and give its local path")
    # A DNS-only record in a Cloudflare zone is a public name by definition.
    tls = _tls_mode(v["tls"], own, proxied, public=bool(zone) or schema.is_public_name(hostname))
    if tls == "off" and not v["allow_plain_http"]:
        if v["tls"] == "auto" and schema.is_placeholder_name(hostname):
            raise wrong("server_name", f"{hostname} is an example name (a documentation domain): "
                        "set server_name to your server's public DNS name (it then gets HTTPS from "
                        "Let's Encrypt, with acme_email), or allow_plain_http: true for a network "
                        "you trust")
        raise wrong("allow_plain_http", _plain_http_refusal(v["tls"], hostname))
    challenge = _acme_challenge(v, hostname, zone, wrong) if tls == "acme" else ""
    api_url = schema.api_url_override()
    problem = api_url and schema.override_api_url(api_url)
    if problem:
        raise wrong(f"${schema.CLOUDFLARE_API_URL_ENV}", problem)
    return EdgePlan(zone=zone, hostname=hostname, subdomain=subdomain, proxied=proxied,
                    lockdown=bool(v["origin_lockdown"]) and proxied, origin_pulls=origin_pulls,
                    tls=tls, api_url=api_url or v["cloudflare_api_url"] or None,
                    acme_email=v["acme_email"] if tls == "acme" else "",
                    acme_server=acme.server_url(v["acme_server"]) if tls == "acme" else "",
                    acme_challenge=challenge)


_Wrong = Callable[[str, str], EdgeConfigError]


def _own_certificate(v: dict[str, Any], wrong: _Wrong) -> bool:
    """Whether the host has a certificate of its own: both paths, or neither."""
    own = bool(v["tls_certificate"] or v["tls_key"])
    if own and not (v["tls_certificate"] and v["tls_key"]):
        missing = "tls_key" if v["tls_certificate"] else "tls_certificate"
        raise wrong(missing, "give both tls_certificate and tls_key (local paths), or neither")
    return own


def _check_mode(mode: str, own: bool, proxied: bool, wrong: _Wrong) -> None:
    """``tls:`` against what else the variables ask for."""
    if own and mode == "off":
        raise wrong("tls", "is off, but tls_certificate and tls_key are given: remove one or the other")
    if proxied and mode == "acme":
        raise wrong("tls", "acme with a proxied Cloudflare record: Cloudflare's proxy already gives "
                           "TLS (an Origin CA certificate); set cloudflare_proxied: false for ACME")
    if proxied and mode == "off":
        raise wrong("tls", "off with a proxied Cloudflare record: the zone's Full (strict) TLS "
                           "needs TLS at the origin")


def _subdomain(hostname: str, zone: str, wrong: _Wrong) -> str:
    """The DNS record's name in the zone ("@" for the apex; "" without Cloudflare)."""
    if not zone:
        return ""
    if hostname != zone and not hostname.endswith("." + zone):
        raise wrong("server_name", f"{hostname!r} is not in the Cloudflare zone {zone!r} (cloudflare_zone)")
    return "@" if hostname == zone else hostname[: -len(zone) - 1]


def _tls_mode(mode: str, own: bool, proxied: bool, public: bool) -> str:
    if own:
        return "own"
    if proxied:
        return "origin-ca"
    if mode == "acme" or (mode == "auto" and public):
        return "acme"
    return "off"


def _plain_http_refusal(mode: str, hostname: str) -> str:
    why = ("tls is off" if mode == "off" else
           f"{hostname} is not a public DNS name, so no ACME certificate is requested for it")
    return (f"refusing to serve Jupyter over plain HTTP ({why}): the password and session cookie "
            "of a service that runs code would cross the network in clear text. Give it HTTPS "
            "(tls: acme with acme_email, a proxied cloudflare_zone, or tls_certificate and "
            "tls_key), or set allow_plain_http: true for a network you trust")


def _acme_challenge(v: dict[str, Any], hostname: str, zone: str, wrong: _Wrong) -> str:
    """The ACME challenge type; dns-01 only through Cloudflare's API."""
    if not v["acme_email"]:
        raise wrong("acme_email", f"required for an ACME certificate for {hostname} (tls: "
                                  f"{v['tls']}): the address the CA sends expiry notices to")
    if acme.server_url(v["acme_server"]) in (acme.LETSENCRYPT, acme.LETSENCRYPT_STAGING) and \
            schema.is_placeholder_name(v["acme_email"].rpartition("@")[2]):
        raise wrong("acme_email", f"{v['acme_email']} is an example address (documentation domain), "
                                  "which Let's Encrypt refuses: give an address of yours for its "
                                  "expiry notices")
    challenge = v["acme_challenge"]
    if challenge == "auto":
        challenge = "dns-01" if zone else "http-01"
    if challenge == "dns-01" and not zone:
        raise wrong("acme_challenge", "dns-01 needs cloudflare_zone: the TXT record is set "
                                      "through Cloudflare's API")
    return challenge


def public_url(v: dict[str, Any], plan: EdgePlan) -> str:
    """The URL users open: ``public_url``, else https:// once the host has TLS."""
    return v["public_url"] or f"{'https' if plan.tls != 'off' else 'http'}://{v['server_name']}"


def template_vars(plan: EdgePlan) -> dict[str, Any]:
    """What the templates and verify need to know, before anything is fetched."""
    return {
        "tls_enabled": plan.tls != "off",
        "tls_pair_path": plan.pair_path,
        "tls_certificate_path": plan.certificate_path,
        "tls_key_path": plan.key_path,
        "tls_dir": TLS_DIR,
        "origin_lockdown_enabled": plan.lockdown,
        "origin_pulls_enabled": plan.origin_pulls,
        "origin_pull_ca_path": f"{TLS_DIR}/cloudflare-origin-pull-ca.pem",
        "acme_enabled": plan.tls == "acme",
        "acme_email": plan.acme_email,
        "acme_server_url": plan.acme_server,
        "acme_challenge_type": plan.acme_challenge,
        "acme_webroot": acme.WEBROOT,
        "acme_challenge_path": acme.CHALLENGE_PATH,
        "acme_deploy_hook": acme.DEPLOY_HOOK,
        "acme_ca_bundle_path": "",
        "acme_dns_hook": acme.DNS_HOOK,
        "acme_dns_token_path": acme.DNS_TOKEN_FILE,
        "cloudflare_api_base": (plan.api_url or schema.CLOUDFLARE_API_URL).rstrip("/"),
        # the TLS server goes live once its certificate exists: for ACME, once the host
        # has it (the deploy's probe, or its second pass after issuing it)
        "tls_live": plan.tls != "acme",
        # filled in by EdgeSession.before_states
        "cloudflare_ranges": [],
        "tls_certificate_pem": "",
        "tls_key_pem": Secret(""),
        "origin_pull_ca_pem": "",
        "acme_ca_bundle_pem": "",
        "acme_dns_token": Secret(""),      # dns-01: given with --acme-dns-token-file
        "cloudflare_zone_id": "",
    }


# ----- the host's addresses -------------------------------------------------------

def public_addresses(address: str, v: dict[str, Any], info: dict[str, Any]) -> tuple[str, str | None]:
    """(IPv4, IPv6 or None) for the DNS records: the variables, else the inventory
    address when it is an IP, else what the host routes from."""
    ipv4 = v["public_ipv4"]
    if not ipv4:
        try:
            ipv4 = str(ipaddress.IPv4Address(address))
        except ValueError:
            ipv4 = info.get("ipv4", "")
    if not ipv4:
        raise EdgeConfigError("cannot tell the host's public IPv4 address: set public_ipv4")
    ipv6 = v["public_ipv6"] or info.get("ipv6") or None
    return ipv4, ipv6


# ----- certificates -----------------------------------------------------------------

def read_own_certificate(plan: EdgePlan, certificate_file: str, key_file: str) -> tuple[str, Secret]:
    """The user's certificate and key, checked here before they can reach NGINX."""
    key_path = Path(key_file).expanduser()
    try:
        mode = key_path.stat().st_mode
        certificate_pem = Path(certificate_file).expanduser().read_text()
        key_pem = key_path.read_text()
    except OSError as exc:
        raise EdgeConfigError(f"cannot read the TLS certificate or key: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise EdgeConfigError(f"{key_path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                              f"chmod 600 it")
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise EdgeConfigError(f"the TLS certificate or key is unreadable (PEM, unencrypted key "
                              f"expected): {exc}") from None
    if key.public_key() != certificate.public_key():
        raise EdgeConfigError(f"{key_path} is not the key of {certificate_file}")
    names = cf.san_names(certificate)
    if not cf.covers(names, plan.hostname):
        raise EdgeConfigError(f"{certificate_file} covers {', '.join(names) or 'no name'}, "
                              f"not {plan.hostname}")
    if certificate.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise EdgeConfigError(f"{certificate_file} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    return _pem(certificate_pem), Secret(_pem(key_pem))


def _pem(text: str) -> str:
    return text.strip() + "\n"


def parse_current_certificate(stdout: str) -> tuple[str | None, Secret | None]:
    """The installed certificate and key as the deploy's probe prints them: separated by
    a line no PEM contains; the key is wrapped at once so it never shows."""
    certificate, _, key = stdout.partition("%%jupyterfab%%\n")
    return (_pem(certificate) if certificate.strip() else None,
            Secret(_pem(key)) if key.strip() else None)


# ----- one deploy's Cloudflare session ------------------------------------------------

@dataclass
class EdgeSession:
    """Cloudflare for one deploy run, shared by the host threads: one verified
    client per API address, the IP ranges fetched once, zone-wide settings
    decided once per zone (the first host reports them)."""

    dry_run: bool = False
    token_file: str | None = None
    acme_dns_token_file: str | None = None   # the host's own DNS-01 token (kept on the host)
    ip_cache: Path = CACHE_DIR / "cloudflare-ips.json"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ranges_lock: threading.Lock = field(default_factory=threading.Lock)
    _prefetching: list[threading.Thread] = field(default_factory=list)
    _clients: dict[str | None, cf.CloudflareAPI] = field(default_factory=dict)
    _ranges: dict[str | None, tuple[cf.CloudflareIPRanges, Result]] = field(default_factory=dict)
    _zones_done: set[tuple[str | None, str]] = field(default_factory=set)
    _zone_locks: dict[tuple[str | None, str], threading.Lock] = field(default_factory=dict)

    def api(self, plan: EdgePlan) -> cf.CloudflareAPI:
        with self._lock:
            if plan.api_url not in self._clients:
                self._clients[plan.api_url] = cf.connect(token_file=self.token_file, base_url=plan.api_url)
            return self._clients[plan.api_url]

    def prefetch(self, plans: list[EdgePlan]) -> None:
        """Start what every host will need (verified client, zone id, IP ranges) now, in
        the background, so it overlaps the SSH connections instead of following them.
        A failure here is left for the host that needs the same thing to meet and report."""
        def fetch(plan: EdgePlan) -> None:
            try:
                api = self.api(plan)
                api.zone_id(plan.zone)
                if plan.lockdown:
                    self._ip_ranges(plan, report=False)
                # The SDK imports each API area (and builds its models) on first use:
                # about a second for these, better spent while SSH waits for the host.
                client = api.client
                for area in (client.dns.records, client.zones.settings, client.origin_ca_certificates,
                             client.origin_tls_client_auth.settings):
                    del area
            except Exception:   # noqa: BLE001 - reported by the host step that retries it
                pass

        seen = set()
        for plan in plans:
            if plan.zone and (plan.api_url, plan.zone) not in seen:
                seen.add((plan.api_url, plan.zone))
                thread = threading.Thread(target=fetch, args=(plan,), daemon=True,
                                          name=f"cloudflare-prefetch-{plan.zone}")
                thread.start()
                self._prefetching.append(thread)

    def close(self) -> None:
        for thread in self._prefetching:
            thread.join()
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def before_states(self, plan: EdgePlan, v: dict[str, Any],
                      current: Callable[[], tuple[str | None, Secret | None]]) -> list[Result]:
        """Fill the template variables the states need; returns the Cloudflare results.
        ``current`` reads the installed certificate and key from the host."""
        results: list[Result] = []
        if plan.tls == "own":
            v["tls_certificate_pem"], v["tls_key_pem"] = read_own_certificate(
                plan, v["tls_certificate"], v["tls_key"])
        if plan.zone:
            api = self.api(plan)
            # a missing zone stops the deploy before any change; DNS-01's hook on the
            # host gets the id, so the host's token needs no Zone:Read
            v["cloudflare_zone_id"] = api.zone_id(plan.zone)
        if plan.tls == "origin-ca":
            results.append(self._origin_certificate(plan, v, current))
        if plan.lockdown:
            ranges, result = self._ip_ranges(plan)
            v["cloudflare_ranges"] = list(ranges.all_cidrs)
            results.append(result)
        if plan.origin_pulls:
            v["origin_pull_ca_pem"] = _read_pem_certificates("origin_pull_ca", v["origin_pull_ca"])
        if plan.tls == "acme" and v["acme_ca_bundle"]:
            v["acme_ca_bundle_pem"] = _read_pem_certificates("acme_ca_bundle", v["acme_ca_bundle"])
            v["acme_ca_bundle_path"] = acme.CA_BUNDLE
        if plan.acme_challenge == "dns-01" and self.acme_dns_token_file:
            v["acme_dns_token"] = cf.load_token(self.acme_dns_token_file)
        return results

    def after_states(self, plan: EdgePlan, ipv4: str, ipv6: str | None) -> list[Result]:
        """The zone's settings, then the DNS record: traffic is sent to a ready origin."""
        if not plan.zone:
            return []
        api = self.api(plan)
        results = self.zone_settings(plan)
        results += cf.ensure_dns(api, plan.zone, ipv4, ipv6=ipv6, subdomain=plan.subdomain,
                                 proxied=plan.proxied, ttl=1 if plan.proxied else None,
                                 dry_run=self.dry_run)
        return results

    def zone_settings(self, plan: EdgePlan) -> list[Result]:
        key = (plan.api_url, plan.zone)
        with self._lock:
            zone_lock = self._zone_locks.setdefault(key, threading.Lock())
        with zone_lock:
            if key in self._zones_done:
                return []
            api = self.api(plan)
            results = cf.ensure_zone_settings(api, plan.zone, dry_run=self.dry_run)
            if plan.origin_pulls:
                results.append(cf.ensure_authenticated_origin_pulls(api, plan.zone, dry_run=self.dry_run))
            elif plan.proxied:
                results.append(Result(f"cloudflare authenticated origin pulls ({plan.zone})", {},
                                      "not managed (authenticated_origin_pulls is off): left as it is",
                                      function="cloudflare.origin_pulls"))
            self._zones_done.add(key)
            return results

    def _ip_ranges(self, plan: EdgePlan, *, report: bool = True) -> tuple[cf.CloudflareIPRanges, Result]:
        """The ranges, fetched once; the first host that reports them gets the fetch's own
        Result (the prefetch does not report), the next ones that it was shared."""
        with self._ranges_lock:
            if plan.api_url not in self._ranges:
                self._ranges[plan.api_url] = cf.cloudflare_ips(
                    self.ip_cache, base_url=plan.api_url, dry_run=self.dry_run)
            ranges, result = self._ranges[plan.api_url]
            if report:
                self._ranges[plan.api_url] = ranges, Result(
                    result.name, {}, f"{len(ranges.all_cidrs)} ranges, etag {ranges.etag} "
                    f"(fetched once for this deploy)", function=result.function)
            return ranges, result

    def _origin_certificate(self, plan: EdgePlan, v: dict[str, Any],
                            current: Callable[[], tuple[str | None, Secret | None]]) -> Result:
        certificate_pem, key = current()
        if key is None:   # a certificate without its key cannot serve: replace it
            certificate_pem = None
        result, issued = cf.ensure_origin_certificate(
            self.api(plan), plan.hostname, current_certificate_pem=certificate_pem,
            current_private_key_pem=key, min_days_left=RENEW_DAYS, dry_run=self.dry_run)
        if issued is None:   # dry run, a new one would be issued
            v["tls_certificate_pem"], v["tls_key_pem"] = PLACEHOLDER_CERTIFICATE, Secret("(new key)\n")
        elif issued.private_key_pem is None:   # the installed one stays, with its key
            v["tls_certificate_pem"], v["tls_key_pem"] = certificate_pem, key
        else:
            v["tls_certificate_pem"] = _pem(issued.certificate_pem)
            v["tls_key_pem"] = Secret(_pem(issued.private_key_pem.reveal()))
        return result


def _read_pem_certificates(key: str, path: str) -> str:
    try:
        text = Path(path).expanduser().read_text()
        x509.load_pem_x509_certificates(text.encode())
    except (OSError, ValueError) as exc:
        raise EdgeConfigError(f"{key}: {path}: not a readable PEM certificate ({exc})") from None
    return _pem(text)


def timed(step: Callable[[], list[Result]]) -> list[Result]:
    """Run a step, spreading its wall time over its results for the summary."""
    started = time.monotonic()
    results = step()
    if results:
        share = (time.monotonic() - started) / len(results)
        for r in results:
            r.duration = r.duration or share
            r.state_id = r.state_id or r.name
    return results
