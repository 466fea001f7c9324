"""Cloudflare's side of serving Jupyter at ``https://jupyter.<domain>``.

Steps, each returning ``Result``s and each with ``dry_run`` (reads only, predicts
the changes, sends no write request):

* ``ensure_dns`` - the A (and AAAA) record of the hostname, proxied by default;
* ``ensure_zone_settings`` - ssl=strict, always_use_https=on, min_tls_version=1.2,
  websockets=on;
* ``ensure_origin_certificate`` - an Origin CA certificate for the origin's NGINX,
  its key made here and never sent anywhere;
* ``ensure_authenticated_origin_pulls`` - optional, zone-wide;
* ``cloudflare_ips`` - Cloudflare's address ranges (for NGINX's real-IP setup),
  cached by etag.

Everything goes through the official SDK. The API token is held as a ``Secret``
and scrubbed from every message raised here; a 403 becomes ``MissingPermission``
naming the permission group the refused operation needs, since Cloudflare's own
answer ("Authentication error") does not say.

Note that zone settings apply to the whole zone, not only to the Jupyter host:
ssl=strict makes Cloudflare demand a valid certificate from every origin of it.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import ipaddress
import json
import logging
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from jupyterfab.engine.errors import ConfigError, ServiceError
from jupyterfab.engine.result import Result
from jupyterfab.engine.shell import Secret

log = logging.getLogger(__name__)

TOKEN_ENV = "CLOUDFLARE_API_TOKEN"

# The permission group (as the API-token dialog names it) each operation needs.
PERMISSION_FOR = {
    "list zones": "Zone Read",
    "list DNS records": "DNS Read",
    "create a DNS record": "DNS Write",
    "update a DNS record": "DNS Write",
    "read a zone setting": "Zone Settings Read",
    "change a zone setting": "Zone Settings Write",
    "create an Origin CA certificate": "SSL and Certificates Write",
    "read authenticated origin pulls": "SSL and Certificates Read",
    "change authenticated origin pulls": "SSL and Certificates Write",
}

# What Cloudflare answers (with HTTP 400, not 401) for credentials it cannot even
# parse: "Invalid request headers", "Invalid format for Authorization header",
# "Missing X-Auth-Key, X-Auth-Email or Authorization headers".
MALFORMED_CREDENTIAL_CODES = {6003, 6111, 9106}

ZONE_SETTINGS: dict[str, str] = {
    "ssl": "strict",               # Cloudflare checks the origin's certificate
    "always_use_https": "on",      # http:// visitors are redirected to https://
    "min_tls_version": "1.2",
    "websockets": "on",            # Jupyter kernels talk over WebSockets
}

ORIGIN_CA_VALIDITY_DAYS = (7, 30, 90, 365, 730, 1095, 5475)  # what Cloudflare offers
REQUEST_TYPE_FOR_KEY = {"rsa": "origin-rsa", "ecc": "origin-ecc"}

T = TypeVar("T")


class _Deferred:
    """A module imported on first use: the SDK takes ~0.5 s to import, and every `fab`
    run imports this module, most of them for hosts without Cloudflare."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


sdk: Any = _Deferred("cloudflare")
httpx: Any = _Deferred("httpx")


# ----- errors ----------------------------------------------------------------------

class CloudflareError(ServiceError):
    """A Cloudflare step failed; the message is safe to show (it never holds the token)."""


class TokenError(CloudflareError, ConfigError):
    """No usable API token: missing, unsafe file, rejected or not active."""


class MissingPermission(CloudflareError):
    """Cloudflare answered 403: the token lacks ``permission`` for ``operation``."""

    def __init__(self, message: str, permission: str, operation: str):
        super().__init__(message)
        self.permission = permission
        self.operation = operation


class ZoneNotFound(CloudflareError):
    """The domain is not a zone this token can see."""

    def __init__(self, message: str, zone: str):
        super().__init__(message)
        self.zone = zone


# ----- token -----------------------------------------------------------------------

def load_token(token_file: str | os.PathLike[str] | None = None) -> Secret:
    """The API token: read from ``token_file`` when given, else ``$CLOUDFLARE_API_TOKEN``.

    A token file readable or writable by group or others is refused: the token
    can change DNS for the whole zone.
    """
    if token_file is not None:
        return _read_token_file(Path(token_file))
    value = os.environ.get(TOKEN_ENV, "").strip()
    if not value:
        raise TokenError(f"no Cloudflare API token: set {TOKEN_ENV} or give a token file "
                         "(mode 0600) with --cloudflare-token-file")
    return Secret(value)


def _read_token_file(path: Path) -> Secret:
    try:
        # Check the mode of the file actually opened, not of whatever the path named a moment before.
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise TokenError(f"Cloudflare token file {path} does not exist") from None
    except PermissionError:
        raise TokenError(f"Cloudflare token file {path} cannot be read by this user") from None
    with os.fdopen(fd) as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise TokenError(f"Cloudflare token file {path} is not a regular file")
        if mode & 0o077:
            raise TokenError(
                f"refusing to read Cloudflare token file {path}: its mode is "
                f"{stat.S_IMODE(mode):04o}, so group or others can access it; the mode must be "
                f"0600 or stricter (chmod 600 {path})")
        value = handle.read().strip()
    if not value:
        raise TokenError(f"Cloudflare token file {path} is empty")
    return Secret(value)


# ----- API access ------------------------------------------------------------------

class CloudflareAPI:
    """The SDK client, with errors turned into ``CloudflareError``s that hide the token."""

    def __init__(self, token: Secret, *, base_url: str | None = None, max_retries: int = 2,
                 timeout: float = 30.0):
        self._token = token
        self.client = sdk.Cloudflare(api_token=token.reveal(), base_url=base_url,
                                     max_retries=max_retries, timeout=timeout,
                                     http_client=_http_client())
        # The SDK also picks CLOUDFLARE_API_KEY / CLOUDFLARE_EMAIL / a user service
        # key from the environment and would send those instead of the token.
        self.client.api_key = self.client.api_email = self.client.user_service_key = None
        self._zone_ids: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    def __repr__(self) -> str:
        return f"CloudflareAPI(base_url={self.base_url!r}, token=***)"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> CloudflareAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, operation: str, target: str, request: Callable[[], T]) -> T:
        """Run ``request`` (SDK calls, all their pages included) as ``operation`` on ``target``.

        The SDK has already retried 429 and 5xx answers when an error gets here.
        """
        try:
            return request()
        except sdk.APIError as error:
            raise self._explain(error, operation, target) from None

    def _explain(self, error: sdk.APIError, operation: str, target: str) -> CloudflareError:
        what = f"{operation} ({target})" if target else operation
        status = getattr(error, "status_code", None)
        envelope = _envelope_errors(error)
        said = "; ".join(f"{e.get('message')} (code {e.get('code')})" for e in envelope)
        said = f": Cloudflare said {said}" if said else ""
        retries = self.client.max_retries
        if isinstance(error, sdk.APIConnectionError):
            explained: CloudflareError = CloudflareError(
                f"could not reach the Cloudflare API at {self.base_url} to {what}: {error}")
        elif status == 401 or (status == 400 and {e.get("code") for e in envelope} & MALFORMED_CREDENTIAL_CODES):
            explained = TokenError(
                f"Cloudflare rejected the API token (HTTP 401) when asked to {what}: the token is "
                f"invalid, expired or revoked{said}")
        elif status == 403 and operation in PERMISSION_FOR:
            permission = PERMISSION_FOR[operation]
            explained = MissingPermission(
                f'the Cloudflare API token lacks the "{permission}" permission needed to {what} '
                f'(HTTP 403{said}); add "{permission}" for this zone to the token in the '
                f"Cloudflare dashboard (My Profile > API Tokens)", permission, operation)
        elif status == 429:
            explained = CloudflareError(
                f"Cloudflare kept rate-limiting the request to {what} (HTTP 429, {retries} retries); "
                f"wait a minute and run again")
        elif status is not None and status >= 500:
            explained = CloudflareError(
                f"the Cloudflare API failed to {what} (HTTP {status}, {retries} retries){said}")
        else:
            explained = CloudflareError(f"Cloudflare refused to {what} (HTTP {status}){said}")
        return self._scrubbed(explained)

    def _scrubbed(self, error: CloudflareError) -> CloudflareError:
        # Belt and braces: an echo of the token in an API message must not get out either.
        token = self._token.reveal()
        if token and token in str(error):
            error.args = (str(error).replace(token, "***"),) + error.args[1:]
        return error

    def verify_token(self) -> None:
        answer = self.call("verify the API token", "", self.client.user.tokens.verify)
        status = getattr(answer, "status", None)
        if status != "active":
            raise TokenError(f"the Cloudflare API token is {status or 'unknown'}, not active")

    def zone_id(self, domain: str) -> str:
        """The id of the zone named ``domain`` (looked up once per client)."""
        name = _dns_name(domain)
        if name not in self._zone_ids:
            zones = self.call("list zones", name,
                              lambda: list(self.client.zones.list(name=name)))
            matching = [z for z in zones if _dns_name(z.name) == name]
            if not matching:
                raise ZoneNotFound(
                    f"Cloudflare zone {name!r} not found: no zone of that name is visible to this "
                    f"API token. Add the domain to Cloudflare, or give the token access to it.", name)
            self._zone_ids[name] = matching[0].id
        return self._zone_ids[name]


def connect(token: Secret | str | None = None, *, token_file: str | os.PathLike[str] | None = None,
            base_url: str | None = None, max_retries: int = 2, timeout: float = 30.0) -> CloudflareAPI:
    """A client whose token Cloudflare has verified (``/user/tokens/verify``).

    ``token`` wins, then ``token_file``, then ``$CLOUDFLARE_API_TOKEN``.
    ``base_url`` (default: Cloudflare, or ``$CLOUDFLARE_BASE_URL``) points it elsewhere.
    """
    if token is None:
        token = load_token(token_file)
    elif not isinstance(token, Secret):
        token = Secret(token)
    api = CloudflareAPI(token, base_url=base_url, max_retries=max_retries, timeout=timeout)
    try:
        api.verify_token()
    except BaseException:
        api.close()
        raise
    return api


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Made once per process: building one reads the whole CA bundle (~70 ms), and a
    # run may make several clients. Same trust as httpx's default (certifi, or
    # $SSL_CERT_FILE / $SSL_CERT_DIR).
    return httpx.create_ssl_context()


def _http_client() -> httpx.Client:
    return sdk.DefaultHttpxClient(verify=_tls_context())


def _envelope_errors(error: sdk.APIError) -> list[dict[str, Any]]:
    """The ``errors`` of Cloudflare's answer, with the ``error_chain`` each may carry."""
    body = getattr(error, "body", None)
    found = []
    pending = list(body.get("errors") or []) if isinstance(body, dict) else []
    while pending:
        item = pending.pop(0)
        if isinstance(item, dict):
            found.append(item)
            pending.extend(item.get("error_chain") or [])
    return found


def _dns_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


# ----- DNS -------------------------------------------------------------------------

@dataclass
class _RecordPlan:
    """What one record of the hostname needs, worked out before anything is written."""

    record_type: str
    hostname: str
    content: str
    proxied: bool
    ttl: int
    action: str                       # "create", "update", "none" or "conflict"
    record_id: str | None = None
    changes: dict[str, Any] | None = None
    reason: str = ""                  # for "conflict"

    @property
    def label(self) -> str:
        return (f"{self.record_type} {self.hostname} -> {self.content}"
                f"{' (proxied)' if self.proxied else ''}")

    def describe(self, *, dry_run: bool) -> str:
        verb = f"would {self.action}" if dry_run else f"{self.action}d"
        if self.action == "create":
            return f"{verb} {self.label}"
        diffs = ", ".join(f"{k} {v['old']} -> {v['new']}" for k, v in (self.changes or {}).items())
        return f"{verb} {self.record_type} {self.hostname}: {diffs}"


def ensure_dns(api: CloudflareAPI, domain: str, ipv4: str, *, ipv6: str | None = None,
               subdomain: str = "jupyter", proxied: bool = True, ttl: int | None = None,
               per_page: int = 100, dry_run: bool = False) -> list[Result]:
    """Make ``<subdomain>.<domain>`` an A record to ``ipv4`` (and AAAA to ``ipv6`` if given).

    Returns one Result per record type. Records of other names are never
    touched; an AAAA record is left alone when no ``ipv6`` is given. ``ttl``
    must be 1 (auto) when proxied; unproxied, None keeps the record's ttl.
    Nothing is written unless every record can be made right: a CNAME on the
    name, or several records of one type, fails all of them untouched.
    """
    zone = _dns_name(domain)
    hostname = zone if subdomain in ("", "@") else f"{_dns_name(subdomain)}.{zone}"
    wanted = {"A": _address(ipv4, 4)}
    if ipv6 is not None:
        wanted["AAAA"] = _address(ipv6, 6)
    if proxied and ttl not in (None, 1):
        raise ValueError(f"a proxied record's ttl must be 1 (automatic), not {ttl}")
    if ttl is not None and ttl != 1 and not 60 <= ttl <= 86400:
        raise ValueError(f"ttl must be 1 (automatic) or 60..86400 seconds, not {ttl}")

    zone_id = api.zone_id(zone)
    # The whole zone is listed, every page, and matched by name here: the server's
    # name filter is spelled differently across API versions (``name`` in the 2024
    # schema, ``name.exact`` in SDK 5.x) and a filter the server ignored would hand
    # back other names. The listing also shows a CNAME that would block the A record.
    records = api.call("list DNS records", zone,
                       lambda: list(api.client.dns.records.list(zone_id=zone_id, per_page=per_page)))
    same_name = [r for r in records if _dns_name(r.name) == hostname]
    plans = [_plan_record(t, hostname, content, proxied, ttl, same_name)
             for t, content in wanted.items()]

    blocked = [p for p in plans if p.action == "conflict"]
    results = []
    for plan in plans:
        ok, changes = True, plan.changes or {}
        if plan.action == "conflict":
            ok, changes, comment = False, {}, plan.reason
        elif blocked:
            ok, changes = False, {}
            comment = f"not changed, because {blocked[0].record_type} cannot be: {blocked[0].reason}"
        elif plan.action == "none":
            comment = f"{plan.label} is already correct"
        elif dry_run:
            ok, comment = None, plan.describe(dry_run=True)
        else:
            _apply_record(api, zone_id, plan)
            comment = plan.describe(dry_run=False)
        results.append(Result(f"cloudflare DNS {plan.record_type} {hostname}", changes, comment, ok=ok,
                              function="cloudflare.dns_record"))
    return results


def _plan_record(record_type: str, hostname: str, content: str, proxied: bool, ttl: int | None,
                 same_name: list[Any]) -> _RecordPlan:
    cnames = [r for r in same_name if r.type == "CNAME"]
    if cnames:
        return _RecordPlan(record_type, hostname, content, proxied, 1, "conflict", reason=(
            f"{hostname} is a CNAME to {cnames[0].content}; not replacing it with an "
            f"{record_type} record (remove the CNAME first)"))
    existing = [r for r in same_name if r.type == record_type]
    if len(existing) > 1:
        contents = ", ".join(sorted(str(r.content) for r in existing))
        return _RecordPlan(record_type, hostname, content, proxied, 1, "conflict", reason=(
            f"{hostname} has {len(existing)} {record_type} records ({contents}); expected at "
            f"most one, and which to keep is not guessed: remove the extra ones"))
    if not existing:
        target_ttl = 1 if ttl is None else ttl
        changes = {"created": {"type": record_type, "name": hostname, "content": content,
                               "proxied": proxied, "ttl": target_ttl}}
        return _RecordPlan(record_type, hostname, content, proxied, target_ttl, "create",
                           changes=changes)
    record = existing[0]
    # Unproxied with no ttl asked for: keep whatever ttl the record has.
    target_ttl = ttl if ttl is not None else (1 if proxied else int(record.ttl))
    current = {"content": _canonical_address(str(record.content)),
               "proxied": bool(record.proxied), "ttl": int(record.ttl)}
    target = {"content": content, "proxied": proxied, "ttl": target_ttl}
    changes = {k: {"old": current[k], "new": target[k]} for k in target if current[k] != target[k]}
    return _RecordPlan(record_type, hostname, content, proxied, target_ttl,
                       "update" if changes else "none", record_id=record.id, changes=changes)


def _apply_record(api: CloudflareAPI, zone_id: str, plan: _RecordPlan) -> None:
    fields = dict(zone_id=zone_id, type=plan.record_type, name=plan.hostname,
                  content=plan.content, ttl=plan.ttl, proxied=plan.proxied)
    if plan.action == "create":
        api.call("create a DNS record", plan.hostname, lambda: api.client.dns.records.create(**fields))
    else:
        # PATCH, not PUT, so a comment or tags someone put on the record survive;
        # ``proxied`` is always sent because a PATCH without it turns the proxy off.
        api.call("update a DNS record", plan.hostname,
                 lambda: api.client.dns.records.edit(plan.record_id, **fields))


def _address(value: str, version: int) -> str:
    try:
        return str((ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address)(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv{version} address") from None


def _canonical_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


# ----- zone settings ---------------------------------------------------------------

def ensure_zone_settings(api: CloudflareAPI, domain: str,
                         settings: Mapping[str, Any] = ZONE_SETTINGS, *,
                         dry_run: bool = False) -> list[Result]:
    """Give the zone these settings (default ``ZONE_SETTINGS``), one Result each.

    All settings are read before any is changed, and each is PATCHed only when
    its value differs.
    """
    zone = _dns_name(domain)
    zone_id = api.zone_id(zone)
    def read(setting: str) -> Any:
        return api.call("read a zone setting", f"{setting} of {zone}",
                        lambda: api.client.zones.settings.get(setting, zone_id=zone_id))

    # Read at once, not one after another: four round trips to Cloudflare cost one.
    with ThreadPoolExecutor(max_workers=len(settings) or 1) as pool:
        current = dict(zip(settings, pool.map(read, settings), strict=True))
    results = []
    for setting, wanted in settings.items():
        have = getattr(current[setting], "value", None)
        ok, changes = True, {setting: {"old": have, "new": wanted}}
        if have == wanted:
            changes, comment = {}, f"{setting} is already {wanted!r}"
        elif getattr(current[setting], "editable", True) is False:
            ok, changes = False, {}
            comment = (f"{setting} is {have!r} and cannot be changed to {wanted!r}: "
                       f"Cloudflare marks it not editable on this zone's plan")
        elif dry_run:
            ok, comment = None, f"would change {setting} from {have!r} to {wanted!r}"
        else:
            api.call("change a zone setting", f"{setting} of {zone}",
                     lambda setting=setting, wanted=wanted: api.client.zones.settings.edit(
                         setting, zone_id=zone_id, value=wanted))
            comment = f"changed {setting} from {have!r} to {wanted!r}"
        results.append(Result(f"cloudflare zone setting {setting} ({zone})", changes, comment, ok=ok,
                              function="cloudflare.zone_setting"))
    return results


def ensure_authenticated_origin_pulls(api: CloudflareAPI, domain: str, enabled: bool = True, *,
                                      dry_run: bool = False) -> Result:
    """Turn zone-wide authenticated origin pulls on (or off).

    With it on, Cloudflare shows its client certificate to every origin of the
    zone; that only protects the origin once NGINX also demands it
    (``ssl_verify_client`` with Cloudflare's origin-pull CA).
    """
    zone = _dns_name(domain)
    zone_id = api.zone_id(zone)
    name = f"cloudflare authenticated origin pulls ({zone})"
    current = api.call("read authenticated origin pulls", zone,
                       lambda: api.client.origin_tls_client_auth.settings.get(zone_id=zone_id))
    have = bool(getattr(current, "enabled", False))
    word = "on" if enabled else "off"
    changes = {"enabled": {"old": have, "new": enabled}}
    if have == enabled:
        return Result(name, {}, f"authenticated origin pulls are already {word}",
                      function="cloudflare.origin_pulls")
    if dry_run:
        return Result(name, changes, f"would turn authenticated origin pulls {word}",
                      ok=None, function="cloudflare.origin_pulls")
    api.call("change authenticated origin pulls", zone,
             lambda: api.client.origin_tls_client_auth.settings.update(zone_id=zone_id, enabled=enabled))
    return Result(name, changes, f"turned authenticated origin pulls {word}",
                  function="cloudflare.origin_pulls")


# ----- Origin CA certificate -------------------------------------------------------

@dataclass(frozen=True)
class OriginCertificate:
    """A certificate for the origin's NGINX, to be installed by the caller.

    ``private_key_pem`` is None when the caller's current certificate was kept:
    the key already installed with it stays.
    """

    certificate_pem: str
    private_key_pem: Secret | None
    hostnames: tuple[str, ...]
    expires_on: dt.datetime


def ensure_origin_certificate(api: CloudflareAPI, hostname: str, *,
                              current_certificate_pem: str | None = None,
                              current_private_key_pem: Secret | None = None,
                              min_days_left: int = 30, validity_days: int = 5475,
                              key_type: str = "rsa", dry_run: bool = False,
                              now: dt.datetime | None = None) -> tuple[Result, OriginCertificate | None]:
    """An Origin CA certificate for ``hostname``: the current one if still good, else a new one.

    The current certificate is kept when it covers ``hostname``, has more than
    ``min_days_left`` days left and (if its key is given) matches its key.
    Otherwise a key (``key_type`` "rsa" or "ecc") is made here, only its CSR goes
    to Cloudflare, and the new certificate and key are returned. In dry-run no
    certificate is requested and None is returned in place of a new one.
    """
    hostname = _dns_name(hostname)
    if validity_days not in ORIGIN_CA_VALIDITY_DAYS:
        raise ValueError(f"validity_days must be one of {ORIGIN_CA_VALIDITY_DAYS}, not {validity_days}")
    if key_type not in REQUEST_TYPE_FOR_KEY:
        raise ValueError(f"key_type must be one of {sorted(REQUEST_TYPE_FOR_KEY)}, not {key_type!r}")
    now = now or dt.datetime.now(dt.UTC)
    name = f"cloudflare origin certificate {hostname}"
    key_pem = current_private_key_pem.reveal() if current_private_key_pem is not None else None
    current, reason = _reusable_certificate(current_certificate_pem, key_pem, hostname, min_days_left, now)
    if current is not None:
        expires = current.not_valid_after_utc
        return (Result(name, {}, f"the current certificate for {hostname} is valid until "
                                 f"{expires:%Y-%m-%d} ({(expires - now).days} days left): kept",
                       function="cloudflare.origin_certificate"),
                OriginCertificate(current_certificate_pem or "", None, san_names(current), expires))
    if dry_run:
        return (Result(name, {"certificate": {"old": reason, "new": f"Origin CA certificate for "
                                              f"{hostname}, {validity_days} days"}},
                       f"would request a new Origin CA certificate for {hostname} ({reason})",
                       ok=None, function="cloudflare.origin_certificate"), None)

    key = rsa.generate_private_key(65537, 2048) if key_type == "rsa" else ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
           .sign(key, hashes.SHA256()))
    issued = api.call("create an Origin CA certificate", hostname,
                      lambda: api.client.origin_ca_certificates.create(
                          csr=csr.public_bytes(serialization.Encoding.PEM).decode(),
                          hostnames=[hostname], request_type=REQUEST_TYPE_FOR_KEY[key_type],
                          requested_validity=validity_days))
    certificate_pem = getattr(issued, "certificate", None) or ""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        raise CloudflareError(f"Cloudflare's answer for {hostname} holds no readable certificate") from None
    if not covers(san_names(certificate), hostname) or certificate.public_key() != key.public_key():
        raise CloudflareError(f"the certificate Cloudflare issued does not match the request for {hostname}")
    expires = certificate.not_valid_after_utc
    private_key_pem = Secret(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()).decode())
    serial = f"{certificate.serial_number:x}"
    return (Result(name, {"certificate": {"old": reason, "new": f"serial {serial}, valid until "
                                          f"{expires:%Y-%m-%d}"}},
                   f"issued a new Origin CA certificate for {hostname}, valid until "
                   f"{expires:%Y-%m-%d} ({reason})", function="cloudflare.origin_certificate"),
            OriginCertificate(certificate_pem, private_key_pem, san_names(certificate), expires))


def _reusable_certificate(certificate_pem: str | None, key_pem: str | None, hostname: str,
                          min_days_left: int, now: dt.datetime) -> tuple[x509.Certificate | None, str]:
    """(the certificate, "") when it can stay, else (None, why not)."""
    if not certificate_pem:
        return None, "no current certificate"
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        return None, "the current certificate is unreadable"
    if not _from_origin_ca(certificate):
        return None, "the current certificate is not a Cloudflare Origin CA certificate"
    names = san_names(certificate)
    if not covers(names, hostname):
        return None, f"the current certificate covers {', '.join(names) or 'no name'}, not {hostname}"
    days_left = (certificate.not_valid_after_utc - now).days
    if days_left <= min_days_left:
        return None, (f"the current certificate expires on {certificate.not_valid_after_utc:%Y-%m-%d}, "
                      f"{days_left} days left, not more than {min_days_left}")
    if certificate.not_valid_before_utc > now:
        return None, "the current certificate is not valid yet"
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        except (ValueError, TypeError):
            return None, "the current private key is unreadable"
        if key.public_key() != certificate.public_key():
            return None, "the current private key does not belong to the current certificate"
    return certificate, ""


def _from_origin_ca(certificate: x509.Certificate) -> bool:
    """Origin CA leaves carry Cloudflare's fixed subject (OU "CloudFlare Origin CA"), so a
    certificate the user installed earlier is replaced, not taken for one of these."""
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return any(u.value == "CloudFlare Origin CA" for u in units)


def san_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))


def covers(names: tuple[str, ...], hostname: str) -> bool:
    """Whether a SAN list covers ``hostname`` (a wildcard covers exactly one label)."""
    parent = hostname.split(".", 1)[1] if hostname.count(".") >= 2 else None
    return hostname in names or (parent is not None and f"*.{parent}" in names)


# ----- Cloudflare's IP ranges ------------------------------------------------------

@dataclass(frozen=True)
class CloudflareIPRanges:
    """The address ranges Cloudflare connects to origins from."""

    ipv4_cidrs: tuple[str, ...]
    ipv6_cidrs: tuple[str, ...]
    etag: str
    fetched_at: str

    @property
    def all_cidrs(self) -> tuple[str, ...]:
        return self.ipv4_cidrs + self.ipv6_cidrs


def cloudflare_ips(cache_path: str | os.PathLike[str], *, api: CloudflareAPI | None = None,
                   base_url: str | None = None, max_retries: int = 2, timeout: float = 10.0,
                   dry_run: bool = False) -> tuple[CloudflareIPRanges, Result]:
    """Cloudflare's IPv4 and IPv6 ranges (``GET /ips``), cached in ``cache_path``.

    ``/ips`` needs no token: without ``api`` an anonymous client is used. The
    answer carries an etag; the same etag as the cache means unchanged, and the
    cache is used as it is. When the API cannot be reached the cache is used,
    and the Result says so; with no cache either, ``CloudflareError``. In
    dry-run the cache file is not written.
    """
    cache_path = Path(cache_path)
    name = "cloudflare IP ranges"
    cached = _read_ip_cache(cache_path)
    client = api.client if api is not None else _anonymous_client(base_url, max_retries, timeout)
    # Without a token the Authorization header must be omitted explicitly, or the SDK refuses.
    headers = {} if api is not None else {"Authorization": sdk.Omit()}
    try:
        answer = client.ips.list(extra_headers=headers)
    except sdk.APIError as error:
        status = getattr(error, "status_code", None)
        why = f"HTTP {status}" if status else str(error)
        if cached is None:
            raise CloudflareError(f"could not fetch Cloudflare's IP ranges ({why}) and there is no "
                                  f"cache at {cache_path}") from None
        return cached, Result(name, {}, f"Cloudflare API unreachable ({why}); using the cached "
                                        f"ranges from {cached.fetched_at} (etag {cached.etag})",
                              function="cloudflare.ips")
    finally:
        if api is None:
            client.close()
    fresh = _checked_ranges(answer)
    if cached is not None and cached.etag == fresh.etag:
        return cached, Result(name, {}, f"Cloudflare's IP ranges are unchanged (etag {fresh.etag}); "
                                        f"using the cache {cache_path}", function="cloudflare.ips")
    changes = _range_changes(cached, fresh)
    if dry_run:
        return fresh, Result(name, changes, f"would update the cache {cache_path} with "
                                            f"{len(fresh.all_cidrs)} ranges (etag {fresh.etag})",
                             ok=None, function="cloudflare.ips")
    _write_ip_cache(cache_path, fresh)
    return fresh, Result(name, changes, f"fetched {len(fresh.all_cidrs)} ranges (etag {fresh.etag}) "
                                        f"into the cache {cache_path}", function="cloudflare.ips")


def _anonymous_client(base_url: str | None, max_retries: int, timeout: float) -> sdk.Cloudflare:
    client = sdk.Cloudflare(base_url=base_url, max_retries=max_retries, timeout=timeout,
                            http_client=_http_client())
    # No credentials at all, not even ones the SDK found in the environment.
    client.api_token = client.api_key = client.api_email = client.user_service_key = None
    return client


def _checked_ranges(answer: Any) -> CloudflareIPRanges:
    """The answer's ranges, each parsed: they end up in NGINX configuration."""
    ranges: dict[str, tuple[str, ...]] = {}
    for field_name, version in (("ipv4_cidrs", 4), ("ipv6_cidrs", 6)):
        values = getattr(answer, field_name, None) or []
        try:
            networks = [ipaddress.ip_network(v) for v in values]
        except ValueError as error:
            raise CloudflareError(f"Cloudflare's /ips answer holds an invalid range: {error}") from None
        if not networks or any(n.version != version for n in networks):
            raise CloudflareError(f"Cloudflare's /ips answer has no valid {field_name}")
        ranges[field_name] = tuple(str(n) for n in networks)
    etag = getattr(answer, "etag", None) or ""
    fetched_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return CloudflareIPRanges(ranges["ipv4_cidrs"], ranges["ipv6_cidrs"], etag, fetched_at)


def _range_changes(cached: CloudflareIPRanges | None, fresh: CloudflareIPRanges) -> dict[str, Any]:
    old = set(cached.all_cidrs) if cached else set()
    new = set(fresh.all_cidrs)
    changes: dict[str, Any] = {"etag": {"old": cached.etag if cached else None, "new": fresh.etag}}
    if new - old:
        changes["added"] = sorted(new - old)
    if old - new:
        changes["removed"] = sorted(old - new)
    return changes


def _read_ip_cache(path: Path) -> CloudflareIPRanges | None:
    try:
        data = json.loads(path.read_text())
        return CloudflareIPRanges(tuple(data["ipv4_cidrs"]), tuple(data["ipv6_cidrs"]),
                                  str(data["etag"]), str(data["fetched_at"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable Cloudflare IP cache %s: %s", path, error)
        return None


def _write_ip_cache(path: Path, ranges: CloudflareIPRanges) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"etag": ranges.etag, "fetched_at": ranges.fetched_at,
                                     "ipv4_cidrs": list(ranges.ipv4_cidrs),
                                     "ipv6_cidrs": list(ranges.ipv6_cidrs)}, indent=1) + "\n")
    os.replace(temporary, path)  # a reader never sees half a file
