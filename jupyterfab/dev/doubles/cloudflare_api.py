"""A local stand-in for the Cloudflare API v4, for tests and manual end-to-end runs.

A real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1) that the official SDK
reaches with ``base_url=standin.base_url``. It keeps zones, DNS records, zone
settings, Origin CA certificates, authenticated-origin-pulls flags, API tokens
with permission groups and the ``/ips`` list, and it behaves like Cloudflare where
that matters to a client:

* every request under ``/client/v4`` is validated with openapi-core against the
  schema Cloudflare publishes (path, query, headers, body): an unknown path is a
  404, a known path with the wrong method a 405, a schema violation a 400;
* on top of the schema it rejects what Cloudflare rejects (a DNS record without
  ``ttl``, an A record whose content is no IPv4 address, a proxied record whose
  ttl is not 1, an A record next to a CNAME of the same name, a setting value
  the setting does not take, ...);
* a token lacking the permission group an operation needs gets a 403 with
  Cloudflare's own opaque "Authentication error": naming the permission is the
  client's job;
* lists page like Cloudflare's: ``per_page`` honoured, ``result: []`` past the
  last page (the SDK pages until it sees an empty page);
* Origin CA certificates are real X.509, signed by a test CA generated here
  (``ca_certificate_pem``), hostnames as SANs, valid for the requested days.

For tests it also injects faults (the next N requests answer 429/5xx/401/403),
counts requests by method, and validates its own responses against the schema
(a violation answers 500 and is listed in ``response_errors``).

The schema is ``data/openapi-subset.json`` in this package (a subset of Cloudflare's
published schema; where it came from is in ``data/README.md``), or
``$JUPYTERFAB_CLOUDFLARE_OPENAPI``. Being strict to it has one visible cost: its
DELETE operations require a JSON body, which the SDK does not send, so SDK
deletes are refused here unless given ``extra_body={}`` (jupyterfab never deletes).

Scripts driving the CLI can also use ``/__standin__/ca.pem``, ``/__standin__/state``,
``/__standin__/requests`` (GET) and ``/__standin__/faults`` (POST
``{"status": 429, "count": 2}``); these are not Cloudflare's and are not validated.

From a test::

    with CloudflareStandIn() as cf:
        zone_id = cf.add_zone("example.com")
        token = cf.add_token({"Zone Read", "DNS Write"})
        client = cloudflare.Cloudflare(api_token=token, base_url=cf.base_url)

From a shell (state kept in FILE across restarts)::

    python -m jupyterfab.dev.doubles.cloudflare_api --port 8787 --state /tmp/cf.json \\
        --zone example.com --token-file /tmp/cf.token --ca-cert-out /tmp/cf-ca.pem
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives import serialization
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.request.exceptions import SecurityValidationError
from openapi_schema_validator import OAS30ReadValidator, OAS30Validator, oas30_format_checker
from werkzeug.datastructures import Headers, ImmutableMultiDict

from jupyterfab.dev.doubles.certificate_authority import CertificateRequestError, TestCertificateAuthority
from jupyterfab.engine.errors import ServiceError

log = logging.getLogger(__name__)

API_PREFIX = "/client/v4"
CONTROL_PREFIX = "/__standin__"
# The schema's server URL: requests are validated as if they had been sent there.
SCHEMA_HOST = "https://api.cloudflare.com"
SCHEMA_ENV = "JUPYTERFAB_CLOUDFLARE_OPENAPI"
VENDORED_SCHEMA = Path(__file__).resolve().parent / "data" / "openapi-subset.json"

# The permission group each operation needs, as the API-token dialog names them.
# None: any valid token (verify) or no token at all (the public /ips list).
REQUIRED_PERMISSION: dict[str, str | None] = {
    "user-api-tokens-verify-token": None,
    "cloudflare-i-ps-cloudflare-ip-details": None,
    "zones-get": "Zone Read",
    "dns-records-for-a-zone-list-dns-records": "DNS Read",
    "dns-records-for-a-zone-dns-record-details": "DNS Read",
    "dns-records-for-a-zone-create-dns-record": "DNS Write",
    "dns-records-for-a-zone-update-dns-record": "DNS Write",
    "dns-records-for-a-zone-patch-dns-record": "DNS Write",
    "dns-records-for-a-zone-delete-dns-record": "DNS Write",
    "zone-settings-get-single-setting": "Zone Settings Read",
    "zone-settings-edit-single-setting": "Zone Settings Write",
    "origin-ca-list-certificates": "SSL and Certificates Read",
    "origin-ca-get-certificate": "SSL and Certificates Read",
    "origin-ca-create-certificate": "SSL and Certificates Write",
    "origin-ca-revoke-certificate": "SSL and Certificates Write",
    "zone-level-authenticated-origin-pulls-get-enablement-setting-for-zone": "SSL and Certificates Read",
    "zone-level-authenticated-origin-pulls-set-enablement-for-zone": "SSL and Certificates Write",
}
ALL_PERMISSIONS = frozenset(p for p in REQUIRED_PERMISSION.values() if p)
PUBLIC_OPERATIONS = {"cloudflare-i-ps-cloudflare-ip-details"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

# Settings a new zone starts with when they differ from the schema's defaults
# (Cloudflare turns WebSockets on and picks Flexible SSL for new zones).
NEW_ZONE_SETTINGS = {"ssl": "flexible", "always_use_https": "off", "min_tls_version": "1.0",
                     "websockets": "on"}

# Cloudflare's published ranges (www.cloudflare.com/ips), the default /ips answer.
DEFAULT_IPV4_CIDRS = [
    "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22",
    "141.101.64.0/18", "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20",
    "197.234.240.0/22", "198.41.128.0/17", "162.158.0.0/15", "104.16.0.0/13",
    "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
]
DEFAULT_IPV6_CIDRS = [
    "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32",
    "2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32",
]

PROXIABLE_TYPES = {"A", "AAAA", "CNAME"}
SUPPORTED_RECORD_TYPES = {"A", "AAAA", "CNAME", "TXT"}
ADDRESS_TYPES = {"A", "AAAA"}
REQUEST_TYPES = {"origin-rsa": "rsa", "origin-ecc": "ecc"}
HOSTNAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")

# Cloudflare error codes used in replies (the schema asks for codes >= 1000).
CODE_ROUTE_NOT_FOUND = 7000
CODE_METHOD_NOT_ALLOWED = 7001
CODE_BAD_IDENTIFIER = 7003
CODE_AUTHENTICATION = 10000
CODE_INVALID_TOKEN = 1000
CODE_MISSING_AUTH = 9106
CODE_INVALID_REQUEST = 1004
CODE_BAD_TTL = 9021
CODE_BAD_CONTENT = 9005
CODE_NOT_PROXIABLE = 9004
CODE_RECORD_NOT_FOUND = 81044
CODE_NAME_CONFLICT = 81053
CODE_IDENTICAL_RECORD = 81058
CODE_UNKNOWN_SETTING = 1006
CODE_BAD_SETTING_VALUE = 1007
CODE_CERTIFICATE = 1010
CODE_CERTIFICATE_NOT_FOUND = 1011
CODE_RATE_LIMITED = 1015
CODE_INTERNAL = 10001
CODE_STANDIN_BUG = 10500
# Where the published schema cannot be satisfied by any answer, our own answers are
# checked against the part that was meant:
# - several operations' 4XX schemas are allOf(success envelope, failure envelope),
#   which needs success to be both true and false: failures are checked against
#   the generic failure envelope instead;
# - /ips's result is oneOf(ips, ips_jdcloud), and every ips object matches both.
FAILURE_ENVELOPE = "zones_api-response-common-failure"
RESPONSE_SCHEMA_SUBSTITUTES = {
    "cloudflare-i-ps-cloudflare-ip-details": ("addressing_api-response-common", "addressing_ips"),
}
FAULT_ERRORS = {
    401: (CODE_AUTHENTICATION, "Authentication error"),
    403: (CODE_AUTHENTICATION, "Authentication error"),
    429: (CODE_RATE_LIMITED, "Rate limited. Please wait and consider throttling your request speed"),
}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return secrets.token_hex(16)  # 32 hex digits, the identifier length the schema allows


class ApiError(ServiceError):
    """Answered as Cloudflare's failure envelope with ``status``."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Token:
    value: str
    permissions: frozenset[str]
    status: str = "active"                 # "active", "disabled" or "expired"
    zones: frozenset[str] | None = None    # zone names it may touch; None: all
    id: str = field(default_factory=new_id)

    def allows(self, permission: str | None) -> bool:
        if permission is None:
            return True
        # On Cloudflare an "Edit" (Write) group includes reading the same resource.
        return permission in self.permissions or (
            permission.endswith(" Read")
            and permission.removesuffix(" Read") + " Write" in self.permissions)

    def covers_zone(self, zone_name: str) -> bool:
        return self.zones is None or zone_name in self.zones

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "permissions": sorted(self.permissions),
                "status": self.status, "id": self.id,
                "zones": sorted(self.zones) if self.zones is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        zones = data.get("zones")
        return cls(value=data["value"], permissions=frozenset(data.get("permissions", ALL_PERMISSIONS)),
                   status=data.get("status", "active"), id=data.get("id") or new_id(),
                   zones=frozenset(zones) if zones is not None else None)


@dataclass
class Fault:
    status: int
    remaining: int
    method: str | None = None          # only requests with this method; None: any
    retry_after: float | None = None   # seconds, sent as Retry-After
    code: int | None = None            # the error code and message answered; None: by status
    message: str | None = None


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int


class _ValidatedRequest:
    """The request as openapi-core reads it (its ``Request`` protocol)."""

    def __init__(self, method: str, path: str, query: list[tuple[str, str]],
                 headers: dict[str, str], body: bytes):
        self.host_url = SCHEMA_HOST
        self.path = path
        self.method = method.lower()
        self.body = body or None
        self.content_type = (Headers(headers).get("Content-Type") or "application/json").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query), header=Headers(headers))


@dataclass
class _Call:
    """One validated API call, handed to an operation handler."""

    path: dict[str, str]
    query: dict[str, str]
    body: Any
    token: Token | None


def envelope(result: Any, result_info: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def failure(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": [],
            "result": None}


class _Contract:
    """The parsed schema and what is derived from it, shared by the stand-ins of a process.

    Parsing the schema and building validators is most of a stand-in's cost, so
    it is done once per process (``contract()``), not once per stand-in.
    """

    def __init__(self, path: Path):
        self.spec: dict[str, Any] = json.loads(path.read_text())
        self.openapi = OpenAPI.from_dict(self.spec)
        self.finder = APICallPathFinder(self.openapi.spec)
        self.setting_schemas = _setting_value_schemas(self.spec)
        self.operations = {operation["operationId"]: (path_, method)
                           for path_, item in self.spec["paths"].items()
                           for method, operation in item.items()}
        self._validators: dict[tuple[str, ...], OAS30Validator] = {}
        self._lock = threading.Lock()

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def schema_errors(self, key: tuple[str, ...], value: Any) -> list[str]:
        """Errors of ``value`` against a schema named by ``key``:
        ``("component", name)``, ``("response", operation_id, status)`` or
        ``("setting", setting_id)`` (the value of a zone setting)."""
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                validator = self._validators[key] = self._validator(key)
        return _described(validator.iter_errors(value))

    def _validator(self, key: tuple[str, ...]) -> OAS30Validator:
        if key[0] == "component":
            schema: dict[str, Any] = {"$ref": f"#/components/schemas/{key[1]}"}
        elif key[0] == "setting":
            schema = self.setting_schemas[key[1]]
        else:
            path, method = self.operations[key[1]]
            responses = self.spec["paths"][path][method]["responses"]
            status = key[2]
            response = responses.get(status) or responses.get(status[0] + "XX") or responses["default"]
            schema = response["content"]["application/json"]["schema"]
        # The read side of the schema: answers may carry readOnly fields.
        return OAS30ReadValidator({**schema, "components": self.spec["components"]},
                                  format_checker=oas30_format_checker)


@functools.lru_cache(maxsize=4)
def contract(path: str | None = None) -> _Contract:
    """The parsed schema: ``path``, else ``$JUPYTERFAB_CLOUDFLARE_OPENAPI``, else the vendored copy."""
    return _Contract(Path(path or os.environ.get(SCHEMA_ENV) or VENDORED_SCHEMA))


def _setting_value_schemas(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map each zone setting id to the schema of its value, read from ``zones_setting``.

    The request schema alone accepts ``{"value": "bogus"}`` for any setting (one
    of its branches has no required ``id``), so values are checked per setting.
    """
    schemas = spec["components"]["schemas"]
    result: dict[str, dict[str, Any]] = {}
    for ref in schemas["zones_setting"]["oneOf"]:
        setting_id, value_schema = None, None
        for part in schemas[ref["$ref"].rsplit("/", 1)[1]].get("allOf", []):
            properties = part.get("properties", {})
            if "enum" in properties.get("id", {}):
                setting_id = properties["id"]["enum"][0]
            if "value" in properties:
                value_schema = properties["value"]
        if setting_id and value_schema:
            result[setting_id] = value_schema
    return result


def _closest_branch(error: Any) -> list[Any]:
    """For a oneOf/anyOf failure, the errors of the branch that came closest.

    "not valid under any of the given schemas" hides the useful part. For a DNS
    record of type A with bad content, the A branch fails only on ``content``;
    every other branch fails on its one-value ``type`` enum, the discriminator.
    So: the branch with the fewest discriminator misses, then the fewest errors.
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)

    def distance(errors: list[Any]) -> tuple[int, int]:
        misses = sum(1 for e in errors if e.validator == "enum" and len(e.validator_value) == 1)
        return misses, len(errors)
    return min(branches.values(), key=distance)


def _described(errors: Iterable[Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for error in errors for e in _closest_branch(error)]


def _error_text(error: BaseException) -> str:
    """An openapi-core request error in one line: the schema errors behind it, and where."""
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        details = "; ".join(_described(schema_errors))
        # The error's own words ("Invalid query parameter: per_page") without its dump of the value.
        head = str(error).split(" Value ", 1)[0].rstrip(":")
        return f"{head}: {details}"
    return f"{error}: {cause}" if cause is not None else str(error)


def _json_body(body: bytes) -> Any:
    # Operations with a body have had it parsed by the validator already; this
    # catches a body sent where the schema expects none.
    try:
        return json.loads(body) if body else None
    except ValueError:
        raise ApiError(400, CODE_INVALID_REQUEST, "Malformed JSON in request body") from None


def _int(value: Any, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _page(items: list[Any], query: dict[str, str], default_per_page: int):
    """One page of ``items`` and its ``result_info``; past the end the page is empty."""
    page = max(_int(query.get("page"), 1), 1)
    per_page = max(_int(query.get("per_page"), default_per_page), 1)
    chunk = items[(page - 1) * per_page: page * per_page]
    info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items),
            "total_pages": math.ceil(len(items) / per_page)}
    return chunk, info


class CloudflareStandIn:
    """The stand-in server and its state; ``start()`` it, or use it as a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 schema_path: str | Path | None = None, state_file: str | Path | None = None):
        self.host, self.port = host, port
        self.state_file = Path(state_file) if state_file else None
        self._contract = contract(str(schema_path) if schema_path else None)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

        self.zones: dict[str, dict[str, Any]] = {}
        self.dns_records: dict[str, dict[str, dict[str, Any]]] = {}
        self.zone_settings: dict[str, dict[str, dict[str, Any]]] = {}
        self.origin_pulls: dict[str, bool] = {}
        self.certificates: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, Token] = {}
        self.ca = TestCertificateAuthority.generate()
        self.ip_ranges: dict[str, Any] = {}
        self.set_ips(DEFAULT_IPV4_CIDRS, DEFAULT_IPV6_CIDRS)

        self.faults: list[Fault] = []
        # called with (name, [TXT values]) after a TXT record is created or deleted, so a
        # test can serve them from a real DNS server (pebble-challtestsrv for DNS-01)
        self.on_txt_change: Callable[[str, list[str]], None] | None = None
        self.request_counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self.response_errors: list[str] = []
        if self.state_file and self.state_file.exists():
            self.load_state(json.loads(self.state_file.read_text()))

    # ----- lifecycle -------------------------------------------------------------

    def start(self) -> CloudflareStandIn:
        server = ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        # A short poll interval, so stop() (which waits for the next poll) is quick.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="cloudflare-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CloudflareStandIn:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self.check_responses()

    def check_responses(self) -> None:
        """Every answer so far fit the schema: else ApiError listing the ones that did not
        (checked when a ``with`` block ends, so e2e tests, demo and bench all check it)."""
        if self.response_errors:
            raise ApiError(500, 10000, "the stand-in answered outside Cloudflare's schema: "
                           + "; ".join(self.response_errors[:5]))

    @property
    def base_url(self) -> str:
        """What the SDK takes as ``base_url``."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # ----- state helpers for tests -----------------------------------------------

    def add_zone(self, name: str, *, status: str = "active", zone_id: str | None = None) -> str:
        with self._lock:
            zone_id = zone_id or new_id()
            created = now_iso()
            self.zones[zone_id] = {
                "id": zone_id, "name": name.lower(), "status": status, "paused": False,
                "type": "full", "development_mode": 0,
                "owner": {"id": "0" * 32, "name": "jupyterfab test user", "type": "user"},
                "account": {"id": "0" * 32, "name": "jupyterfab test account"},
                "meta": {"cdn_only": False, "dns_only": False, "foundation_dns": False,
                         "page_rule_quota": 3, "phishing_detected": False, "step": 2,
                         "custom_certificate_quota": 0},
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None, "original_registrar": None,
                "original_dnshost": None, "created_on": created, "modified_on": created,
                "activated_on": created if status == "active" else None,
                "permissions": ["#zone:read"],
            }
            self.dns_records.setdefault(zone_id, {})
            self.zone_settings.setdefault(zone_id, {
                name_: {"value": value, "modified_on": None}
                for name_, value in NEW_ZONE_SETTINGS.items()})
            self.origin_pulls.setdefault(zone_id, False)
            return zone_id

    def add_token(self, permissions: Iterable[str] = ALL_PERMISSIONS, *, status: str = "active",
                  zones: Iterable[str] | None = None, value: str | None = None) -> str:
        """Register a token with these permission groups; returns its secret value."""
        unknown = set(permissions) - ALL_PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permission groups {sorted(unknown)}; known: {sorted(ALL_PERMISSIONS)}")
        value = value or secrets.token_urlsafe(30)
        with self._lock:
            self.tokens[value] = Token(value, frozenset(permissions), status,
                                       frozenset(zones) if zones is not None else None)
        return value

    def add_record(self, zone_id: str, type: str, name: str, content: str, *,
                   proxied: bool = False, ttl: int = 1) -> str:
        """Put a record in place without going through the API (and its counters)."""
        with self._lock:
            record = self._new_record(zone_id, {"type": type, "name": name, "content": content,
                                                "proxied": proxied, "ttl": ttl})
            self.dns_records[zone_id][record["id"]] = record
            return record["id"]

    def records(self, zone_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.dns_records[zone_id].values()]

    def setting(self, zone_id: str, setting_id: str) -> Any:
        with self._lock:
            return self._setting(zone_id, setting_id)["value"]

    def set_setting(self, zone_id: str, setting_id: str, value: Any) -> None:
        with self._lock:
            self.zone_settings[zone_id][setting_id] = {"value": value, "modified_on": now_iso()}

    def set_ips(self, ipv4_cidrs: Iterable[str], ipv6_cidrs: Iterable[str]) -> str:
        """Publish new ranges; the etag changes with them. Returns the etag."""
        v4, v6 = list(ipv4_cidrs), list(ipv6_cidrs)
        etag = hashlib.md5(json.dumps([v4, v6]).encode()).hexdigest()
        with self._lock:
            self.ip_ranges = {"ipv4_cidrs": v4, "ipv6_cidrs": v6, "etag": etag}
        return etag

    def inject_fault(self, status: int, count: int = 1, *, method: str | None = None,
                     retry_after: float | None = None, code: int | None = None,
                     message: str | None = None) -> None:
        """Answer the next ``count`` API requests (of ``method``, if given) with ``status``
        (and this error ``code`` and ``message``, if given)."""
        with self._lock:
            self.faults.append(Fault(status, count, method.upper() if method else None,
                                     retry_after, code, message))

    @property
    def write_count(self) -> int:
        return sum(self.request_counts[m] for m in WRITE_METHODS)

    def reset_counts(self) -> None:
        with self._lock:
            self.request_counts.clear()
            self.requests.clear()

    @property
    def ca_certificate_pem(self) -> str:
        return self.ca.certificate_pem

    # ----- persistence (CLI) ------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "zones": list(self.zones.values()),
                "dns_records": {z: list(r.values()) for z, r in self.dns_records.items()},
                "zone_settings": self.zone_settings,
                "origin_pulls": self.origin_pulls,
                "certificates": list(self.certificates.values()),
                "tokens": [t.to_json() for t in self.tokens.values()],
                "ips": self.ip_ranges,
                "ca": {"certificate_pem": self.ca.certificate_pem,
                       "private_key_pem": self.ca.private_key_pem},
            }

    def load_state(self, data: dict[str, Any]) -> None:
        """Load a state; zones and tokens may be given briefly (``{"name": ...}``)."""
        with self._lock:
            for zone in data.get("zones", []):
                zone_id = self.add_zone(zone["name"], status=zone.get("status", "active"),
                                        zone_id=zone.get("id"))
                self.zones[zone_id].update({k: v for k, v in zone.items() if k in self.zones[zone_id]})
            for zone_id, records in data.get("dns_records", {}).items():
                self.dns_records[zone_id] = {r["id"]: r for r in records}
            for zone_id, settings in data.get("zone_settings", {}).items():
                self.zone_settings.setdefault(zone_id, {}).update(settings)
            self.origin_pulls.update(data.get("origin_pulls", {}))
            self.certificates.update({c["id"]: c for c in data.get("certificates", [])})
            for token in data.get("tokens", []):
                loaded = Token.from_json(token)
                self.tokens[loaded.value] = loaded
            if data.get("ips"):
                self.set_ips(data["ips"]["ipv4_cidrs"], data["ips"]["ipv6_cidrs"])
            if data.get("ca"):
                self.ca = TestCertificateAuthority.from_pem(
                    data["ca"]["certificate_pem"], data["ca"]["private_key_pem"])

    def save_state(self) -> None:
        if not self.state_file:
            return
        # The state holds token values and the CA key: owner-only, replaced atomically.
        temporary = self.state_file.with_name(self.state_file.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.dump_state(), out, indent=1)
        os.replace(temporary, self.state_file)

    # ----- request handling ------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one HTTP request (the HTTP handler's only entry point)."""
        url = urlsplit(target)
        if url.path.startswith(CONTROL_PREFIX + "/"):
            return self._control(method, url.path[len(CONTROL_PREFIX) + 1:], body)
        if not url.path.startswith(API_PREFIX + "/"):
            return Reply(404, failure(CODE_ROUTE_NOT_FOUND, "No route for that URI"))
        with self._lock:
            self.request_counts[method] += 1
            try:
                reply = self._api_call(method, url.path,
                                       parse_qsl(url.query, keep_blank_values=True), headers, body)
            except Exception as error:  # a stand-in bug: say so, rather than drop the connection
                log.exception("stand-in failed on %s %s", method, url.path)
                self.response_errors.append(f"{method} {url.path}: stand-in crashed: {error!r}")
                reply = Reply(500, failure(CODE_STANDIN_BUG, f"stand-in crashed: {error!r}"))
            self.requests.append(RequestRecord(method, url.path, reply.status))
            if method in WRITE_METHODS and reply.status == 200:
                self.save_state()
            return reply

    def _api_call(self, method: str, path: str, query: list[tuple[str, str]],
                  headers: dict[str, str], body: bytes) -> Reply:
        fault = self._fault_reply(method)
        if fault is not None:
            return fault
        request = _ValidatedRequest(method, path, query, headers, body)
        try:
            found = self._contract.finder.find(request.method, SCHEMA_HOST + path)
        except PathNotFound:
            return Reply(404, failure(CODE_ROUTE_NOT_FOUND, "No route for that URI"))
        except OperationNotFound:
            return Reply(405, failure(CODE_METHOD_NOT_ALLOWED, f"Method {method} not allowed"))
        operation_id = found.operation["operationId"]
        errors = self._contract.openapi.unmarshal_request(request).errors
        try:
            token = self._authenticate(operation_id, headers, errors)
            if errors:
                raise ApiError(400, CODE_INVALID_REQUEST,
                               "Invalid request: " + "; ".join(_error_text(e) for e in errors))
            call = _Call(path=dict(found.path_result.variables), query=dict(query),
                         body=_json_body(body), token=token)
            self._check_zone_scope(call)
            result, result_info = getattr(self, "_op_" + operation_id.replace("-", "_"))(call)
            reply = Reply(200, envelope(result, result_info))
        except ApiError as error:
            reply = Reply(error.status, failure(error.code, error.message))
        return self._checked_response(request, operation_id, reply)

    def _fault_reply(self, method: str) -> Reply | None:
        """The answer of the first injected fault for ``method``, which is used up by one."""
        fault = next((f for f in self.faults if f.method in (None, method)), None)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.faults.remove(fault)
        code, message = FAULT_ERRORS.get(fault.status, (CODE_INTERNAL, "Internal server error"))
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return Reply(fault.status, failure(fault.code or code, fault.message or message), headers)

    def _authenticate(self, operation_id: str, headers: dict[str, str],
                      errors: list[Exception]) -> Token | None:
        if operation_id in PUBLIC_OPERATIONS:
            return None
        if any(isinstance(e, SecurityValidationError) for e in errors):
            raise ApiError(400, CODE_MISSING_AUTH,
                           "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        authorization = Headers(headers).get("Authorization", "")
        scheme, _, value = authorization.partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise ApiError(401, CODE_INVALID_TOKEN, "Invalid API Token")
        if token.status != "active" and operation_id != "user-api-tokens-verify-token":
            raise ApiError(401, CODE_INVALID_TOKEN, f"API Token is {token.status}")
        if not token.allows(REQUIRED_PERMISSION[operation_id]):
            # Cloudflare does not say which permission is missing: neither do we.
            raise ApiError(403, CODE_AUTHENTICATION, "Authentication error")
        return token

    def _check_zone_scope(self, call: _Call) -> None:
        zone_id = call.path.get("zone_id")
        if zone_id is None:
            return
        zone = self.zones.get(zone_id)
        if zone is None:
            raise ApiError(404, CODE_BAD_IDENTIFIER,
                           "Could not route to the zone, perhaps your object identifier is invalid?")
        if call.token is not None and not call.token.covers_zone(zone["name"]):
            raise ApiError(403, CODE_AUTHENTICATION, "Authentication error")

    def _checked_response(self, request: _ValidatedRequest, operation_id: str, reply: Reply) -> Reply:
        """Check our own answer against the schema: a stand-in that drifts from the
        contract would let clients pass tests they would fail against Cloudflare."""
        if reply.status >= 400:
            problems = self._contract.schema_errors(("component", FAILURE_ENVELOPE), reply.body)
        elif operation_id in RESPONSE_SCHEMA_SUBSTITUTES:
            envelope_schema, result_schema = RESPONSE_SCHEMA_SUBSTITUTES[operation_id]
            problems = (self._contract.schema_errors(("component", envelope_schema), reply.body)
                        + self._contract.schema_errors(("component", result_schema), reply.body["result"]))
        else:
            problems = self._contract.schema_errors(("response", operation_id, str(reply.status)), reply.body)
        if not problems:
            return reply
        text = f"{request.method.upper()} {request.path} -> {reply.status}: {'; '.join(problems)}"
        self.response_errors.append(text)
        log.error("stand-in response violates the schema: %s", text)
        return Reply(500, failure(CODE_STANDIN_BUG, "stand-in response violates the schema: " + text))

    def _control(self, method: str, name: str, body: bytes) -> Reply:
        """Non-Cloudflare endpoints for scripts driving the CLI stand-in."""
        if method == "GET" and name == "ca.pem":
            return Reply(200, self.ca_certificate_pem)
        if method == "GET" and name == "state":
            return Reply(200, self.dump_state())
        if method == "GET" and name == "requests":
            return Reply(200, {"counts": dict(self.request_counts), "writes": self.write_count})
        if method == "POST" and name == "faults":
            spec = json.loads(body or b"{}")
            self.inject_fault(int(spec["status"]), int(spec.get("count", 1)),
                              method=spec.get("method"), retry_after=spec.get("retry_after"),
                              code=spec.get("code"), message=spec.get("message"))
            return Reply(200, {"ok": True})
        return Reply(404, "unknown stand-in control endpoint")

    # ----- operations: token, zones, ips -----------------------------------------

    def _op_user_api_tokens_verify_token(self, call: _Call):
        token = call.token
        assert token is not None
        return {"id": token.id, "status": token.status}, None

    def _op_zones_get(self, call: _Call):
        name = call.query.get("name", "").lower()
        status = call.query.get("status")
        zones = sorted(
            (z for z in self.zones.values()
             if (not name or z["name"] == name) and (not status or z["status"] == status)
             and call.token is not None and call.token.covers_zone(z["name"])),
            key=lambda z: z["name"])
        return _page(zones, call.query, default_per_page=20)

    def _op_cloudflare_i_ps_cloudflare_ip_details(self, call: _Call):
        return dict(self.ip_ranges), None

    # ----- operations: DNS records ------------------------------------------------

    def _op_dns_records_for_a_zone_list_dns_records(self, call: _Call):
        zone_id = call.path["zone_id"]
        query = call.query
        # ``name`` is the 2024 schema's exact filter, ``name.exact`` the SDK 5.x spelling.
        name = (query.get("name") or query.get("name.exact") or "").lower().rstrip(".")
        wanted = {
            "type": query.get("type"),
            "name": self._absolute_name(zone_id, name) if name else None,
            "content": query.get("content"),
            "proxied": {"true": True, "false": False}.get(query.get("proxied", "").lower()),
        }
        records = [r for r in self.dns_records[zone_id].values()
                   if all(v is None or r[k] == v for k, v in wanted.items())]
        records.sort(key=lambda r: (r["type"], r["name"], r["content"], r["created_on"]))
        return _page(records, query, default_per_page=100)

    def _op_dns_records_for_a_zone_dns_record_details(self, call: _Call):
        return self._record(call), None

    def _op_dns_records_for_a_zone_create_dns_record(self, call: _Call):
        zone_id = call.path["zone_id"]
        record = self._new_record(zone_id, call.body)
        self.dns_records[zone_id][record["id"]] = record
        self._txt_changed(zone_id, record)
        return record, None

    def _op_dns_records_for_a_zone_update_dns_record(self, call: _Call):
        existing = self._record(call)
        return self._replace_record(call.path["zone_id"], existing, call.body), None

    def _op_dns_records_for_a_zone_patch_dns_record(self, call: _Call):
        existing = self._record(call)
        merged = {k: existing[k] for k in ("type", "name", "content", "ttl", "comment", "tags")
                  if k in existing}
        merged.update(call.body)
        # Like Cloudflare: a PATCH that leaves out ``proxied`` turns the proxy off.
        merged["proxied"] = call.body.get("proxied", False)
        return self._replace_record(call.path["zone_id"], existing, merged), None

    def _op_dns_records_for_a_zone_delete_dns_record(self, call: _Call):
        existing = self._record(call)
        del self.dns_records[call.path["zone_id"]][existing["id"]]
        self._txt_changed(call.path["zone_id"], existing)
        return {"id": existing["id"]}, None

    def _txt_changed(self, zone_id: str, record: dict[str, Any]) -> None:
        """Tell ``on_txt_change`` (a test's DNS server) a name's TXT values now."""
        if record["type"] == "TXT" and self.on_txt_change is not None:
            values = [r["content"].strip('"') for r in self.dns_records[zone_id].values()
                      if r["type"] == "TXT" and r["name"] == record["name"]]
            self.on_txt_change(record["name"], values)

    def _record(self, call: _Call) -> dict[str, Any]:
        record = self.dns_records[call.path["zone_id"]].get(call.path["dns_record_id"])
        if record is None:
            raise ApiError(404, CODE_RECORD_NOT_FOUND, "Record does not exist.")
        return record

    def _replace_record(self, zone_id: str, existing: dict[str, Any],
                        fields: dict[str, Any]) -> dict[str, Any]:
        record = self._new_record(zone_id, fields, replacing=existing["id"])
        record.update(id=existing["id"], created_on=existing["created_on"])
        self.dns_records[zone_id][existing["id"]] = record
        return record

    def _absolute_name(self, zone_id: str, name: str) -> str:
        """Cloudflare completes a relative name with the zone name; ``@`` is the apex."""
        zone_name = self.zones[zone_id]["name"]
        name = name.lower().rstrip(".")
        if name in ("@", ""):
            return zone_name
        if name == zone_name or name.endswith("." + zone_name):
            return name
        return f"{name}.{zone_name}"

    def _new_record(self, zone_id: str, fields: dict[str, Any],
                    replacing: str | None = None) -> dict[str, Any]:
        """A validated record built from request fields, checked against the zone."""
        record_type = fields["type"]
        if record_type not in SUPPORTED_RECORD_TYPES:
            raise ApiError(400, CODE_INVALID_REQUEST,
                           f"the stand-in does not implement {record_type} records")
        name = self._absolute_name(zone_id, fields["name"])
        content = str(fields.get("content", ""))
        proxied = bool(fields.get("proxied", False))
        if "ttl" not in fields:
            raise ApiError(400, CODE_BAD_TTL, "DNS Validation Error: ttl is required")
        ttl = fields["ttl"]
        if ttl != 1 and not 60 <= ttl <= 86400:
            raise ApiError(400, CODE_BAD_TTL,
                           "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Auto.")
        if proxied and record_type not in PROXIABLE_TYPES:
            raise ApiError(400, CODE_NOT_PROXIABLE, f"{record_type} records cannot be proxied.")
        if proxied and ttl != 1:
            raise ApiError(400, CODE_BAD_TTL, "Proxied records must use ttl 1 (Auto).")
        if record_type in ADDRESS_TYPES:
            content = self._address(record_type, content)
        if record_type == "CNAME" and not HOSTNAME.match(content.lower().rstrip(".")):
            raise ApiError(400, CODE_BAD_CONTENT, "Content for CNAME record is invalid.")
        self._check_conflicts(zone_id, record_type, name, content, replacing)
        created = now_iso()
        record = {
            "id": new_id(), "zone_id": zone_id, "zone_name": self.zones[zone_id]["name"],
            "type": record_type, "name": name, "content": content, "proxied": proxied,
            "proxiable": record_type in PROXIABLE_TYPES, "ttl": ttl,
            "tags": list(fields.get("tags") or []),
            "meta": {"auto_added": False, "source": "primary"}, "locked": False,
            "created_on": created, "modified_on": created,
        }
        if fields.get("comment") is not None:  # the schema's comment is a string, never null
            record["comment"] = fields["comment"]
        return record

    @staticmethod
    def _address(record_type: str, content: str) -> str:
        version = 4 if record_type == "A" else 6
        try:
            # Cloudflare stores the canonical spelling
            return str((ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address)(content))
        except ValueError:
            raise ApiError(400, CODE_BAD_CONTENT, f"Content for {record_type} record is invalid. "
                                                  f"Must be a valid IPv{version} address.") from None

    def _check_conflicts(self, zone_id: str, record_type: str, name: str, content: str,
                         replacing: str | None) -> None:
        for other in self.dns_records[zone_id].values():
            if other["id"] == replacing or other["name"] != name:
                continue
            # A CNAME owns its name: nothing else may share it (and it can't be added next to others).
            if "CNAME" in (record_type, other["type"]):
                raise ApiError(400, CODE_NAME_CONFLICT,
                               "An A, AAAA, or CNAME record with that host already exists.")
            if other["type"] == record_type and other["content"] == content:
                raise ApiError(400, CODE_IDENTICAL_RECORD,
                               "A record with the same settings already exists.")

    # ----- operations: zone settings ----------------------------------------------

    def _setting(self, zone_id: str, setting_id: str) -> dict[str, Any]:
        if setting_id not in self._contract.setting_schemas:
            raise ApiError(400, CODE_UNKNOWN_SETTING, f"Unrecognized zone setting name {setting_id!r}")
        settings = self.zone_settings[zone_id]
        if setting_id not in settings:
            default = self._contract.resolve(self._contract.setting_schemas[setting_id]).get("default")
            settings[setting_id] = {"value": default, "modified_on": None}
        return settings[setting_id]

    def _setting_result(self, setting_id: str, stored: dict[str, Any]) -> dict[str, Any]:
        return {"id": setting_id, "value": stored["value"], "editable": True,
                "modified_on": stored["modified_on"]}

    def _op_zone_settings_get_single_setting(self, call: _Call):
        setting_id = call.path["setting_id"]
        return self._setting_result(setting_id, self._setting(call.path["zone_id"], setting_id)), None

    def _op_zone_settings_edit_single_setting(self, call: _Call):
        zone_id, setting_id = call.path["zone_id"], call.path["setting_id"]
        self._setting(zone_id, setting_id)
        body = call.body or {}
        if body.get("id", setting_id) != setting_id:
            raise ApiError(400, CODE_BAD_SETTING_VALUE,
                           f"body id {body['id']!r} does not match setting {setting_id!r}")
        if "value" not in body:
            raise ApiError(400, CODE_BAD_SETTING_VALUE, "value is required")
        problems = self._contract.schema_errors(("setting", setting_id), body["value"])
        if problems:
            raise ApiError(400, CODE_BAD_SETTING_VALUE,
                           f"Invalid value for zone setting {setting_id}: {'; '.join(problems)}")
        stored = {"value": body["value"], "modified_on": now_iso()}
        self.zone_settings[zone_id][setting_id] = stored
        return self._setting_result(setting_id, stored), None

    # ----- operations: authenticated origin pulls ---------------------------------

    def _op_zone_level_authenticated_origin_pulls_get_enablement_setting_for_zone(self, call: _Call):
        return {"enabled": self.origin_pulls[call.path["zone_id"]]}, None

    def _op_zone_level_authenticated_origin_pulls_set_enablement_for_zone(self, call: _Call):
        self.origin_pulls[call.path["zone_id"]] = bool(call.body["enabled"])
        return {"enabled": self.origin_pulls[call.path["zone_id"]]}, None

    # ----- operations: Origin CA certificates -------------------------------------

    def _zone_of_hostname(self, hostname: str) -> dict[str, Any] | None:
        bare = hostname.removeprefix("*.")
        matches = [z for z in self.zones.values()
                   if bare == z["name"] or bare.endswith("." + z["name"])]
        return max(matches, key=lambda z: len(z["name"]), default=None)

    def _op_origin_ca_create_certificate(self, call: _Call):
        body = call.body
        request_type = body.get("request_type")
        if request_type not in REQUEST_TYPES:
            raise ApiError(400, CODE_CERTIFICATE,
                           f"request_type {request_type!r} is not supported here; "
                           f"use one of {sorted(REQUEST_TYPES)}")
        hostnames = [str(h).lower() for h in body.get("hostnames") or []]
        if not hostnames or "csr" not in body:
            raise ApiError(400, CODE_CERTIFICATE, "csr and at least one hostname are required")
        for hostname in hostnames:
            zone = self._zone_of_hostname(hostname)
            if not HOSTNAME.match(hostname) or zone is None or not call.token.covers_zone(zone["name"]):
                raise ApiError(400, CODE_CERTIFICATE,
                               f"Failed to validate requested hostname {hostname}: This zone is "
                               f"either not part of your account, or you do not have access to it.")
        validity = int(body.get("requested_validity", 5475))
        try:
            issued = self.ca.issue(body["csr"], hostnames, validity, REQUEST_TYPES[request_type])
        except CertificateRequestError as error:
            raise ApiError(400, CODE_CERTIFICATE, str(error)) from None
        certificate = {
            "id": new_id(),
            "certificate": issued.public_bytes(serialization.Encoding.PEM).decode(),
            "csr": body["csr"], "hostnames": hostnames, "request_type": request_type,
            "requested_validity": validity,
            "expires_on": issued.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "revoked_at": None,
        }
        self.certificates[certificate["id"]] = certificate
        return self._certificate_result(certificate), None

    @staticmethod
    def _certificate_result(certificate: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in certificate.items() if k != "revoked_at"}

    def _op_origin_ca_list_certificates(self, call: _Call):
        zone_id = call.query.get("zone_id")
        if not zone_id or zone_id not in self.zones:
            raise ApiError(400, CODE_CERTIFICATE, "a valid zone_id is required")
        zone_name = self.zones[zone_id]["name"]
        listed = [self._certificate_result(c) for c in self.certificates.values()
                  if c["revoked_at"] is None
                  and any((self._zone_of_hostname(h) or {}).get("name") == zone_name
                          for h in c["hostnames"])]
        return _page(listed, call.query, default_per_page=20)

    def _certificate(self, call: _Call) -> dict[str, Any]:
        certificate = self.certificates.get(call.path["certificate_id"])
        if certificate is None:
            raise ApiError(404, CODE_CERTIFICATE_NOT_FOUND, "Certificate not found")
        return certificate

    def _op_origin_ca_get_certificate(self, call: _Call):
        return self._certificate_result(self._certificate(call)), None

    def _op_origin_ca_revoke_certificate(self, call: _Call):
        certificate = self._certificate(call)
        certificate["revoked_at"] = now_iso()
        return {"id": certificate["id"], "revoked_at": certificate["revoked_at"]}, None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # Headers and body go out in separate writes: with Nagle's algorithm on, the
    # client's delayed ACK would stall every answer by tens of milliseconds.
    disable_nagle_algorithm = True
    server_version = "cloudflare-standin"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        standin: CloudflareStandIn = self.server.standin  # type: ignore[attr-defined]
        reply = standin.handle(self.command, self.path, dict(self.headers.items()), body)
        data, content_type = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # Only method, path and status: the request line never carries the token.
        log.debug("%s - %s", self.address_string(), format % args)


def _register_token_file(standin: CloudflareStandIn, path: Path) -> None:
    """Trust the token in ``path`` (all permissions), writing a new one there if absent."""
    if path.exists():
        standin.add_token(value=path.read_text().strip())
        return
    value = standin.add_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jupyterfab.dev.doubles.cloudflare_api",
        description="Serve a local stand-in of the Cloudflare API v4 until interrupted.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--state", type=Path, help="JSON state, loaded at start, saved after each write")
    parser.add_argument("--schema", type=Path, help=f"OpenAPI schema (default: ${SCHEMA_ENV} or the vendored subset)")
    parser.add_argument("--zone", action="append", default=[], help="add this zone if absent (repeatable)")
    parser.add_argument("--token-file", type=Path,
                        help="trust the token in this file (all permissions); created (0600) if absent")
    parser.add_argument("--ca-cert-out", type=Path, help="write the test Origin CA certificate here")
    args = parser.parse_args(argv)

    standin = CloudflareStandIn(host=args.host, port=args.port, schema_path=args.schema,
                                state_file=args.state)
    for zone in args.zone:
        if zone.lower() not in {z["name"] for z in standin.zones.values()}:
            standin.add_zone(zone)
    if args.token_file:
        _register_token_file(standin, args.token_file)
    if args.ca_cert_out:
        args.ca_cert_out.write_text(standin.ca_certificate_pem)
    standin.save_state()
    standin.start()
    print(f"Cloudflare stand-in listening on {standin.base_url}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
