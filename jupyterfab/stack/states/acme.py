"""acme.cert: a certificate from an ACME CA, obtained by the host's certbot (Salt's acme.cert).

The state requests a certificate only when the host has none for ``name`` from
``server`` (or it expired): renewals are certbot's own job (certbot.timer), so a
second deploy never asks the CA for anything. When issuance fails, the result
says why in the user's terms (port 80 unreachable, DNS, rate limit), with the CA's
own problem type and detail.
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509

from jupyterfab.engine.facts.commands import command_as
from jupyterfab.engine.facts.files import FileContent
from jupyterfab.engine.states.base import Arg, ArgError, Call, Run, abs_path, env_map, state, string
from jupyterfab.stack.front import acme
from jupyterfab.stack.front.cloudflare import san_names

_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _dns_name(value) -> str:
    value = string(value)
    if not _HOST_NAME.fullmatch(value):
        raise ArgError(f"{value!r} is not a DNS name")
    return value.lower()


def _challenge(value) -> str:
    value = string(value)
    if value not in ("http-01", "dns-01"):
        raise ArgError(f"expected http-01 or dns-01, got {value!r}")
    return value


def _hook(value) -> str:
    """A program's absolute path, with arguments: certbot runs it through the shell."""
    value = string(value)
    if not value.startswith("/") or "\n" in value:
        raise ArgError(f"expected an absolute path to a program, got {value!r}")
    return value


def _check(name: str, args: dict) -> None:
    if args["preferred_challenges"] == "http-01" and not args["webroot"]:
        raise ArgError("http-01 needs webroot (the folder NGINX serves the challenge from)", "webroot")
    if args["preferred_challenges"] == "dns-01" and not (args["manual_auth_hook"]
                                                          and args["manual_cleanup_hook"]):
        raise ArgError("dns-01 needs manual_auth_hook and manual_cleanup_hook", "manual_auth_hook")


def _certname(name: str, args: dict) -> str:
    return args["certname"] or name


def _facts(name: str, args: dict, ctx) -> dict:
    certname = _certname(name, args)
    return {"renewal": FileContent(f"{acme.RENEWAL_DIR}/{certname}.conf"),
            "certificate": FileContent(f"{acme.LIVE_DIR}/{certname}/cert.pem")}


def lineage_problem(name: str, server: str, renewal: str | None, certificate_pem: str | None,
                    now: dt.datetime | None = None) -> tuple[str, dt.datetime | None]:
    """Why the host's certificate will not do ("" when it does), and its expiry (pure)."""
    if renewal is None or not certificate_pem:
        return "no certificate for it on the host yet", None
    found = re.search(r"^\s*server\s*=\s*(\S+)\s*$", renewal, re.M)
    if not found or found.group(1).rstrip("/") != server.rstrip("/"):
        return f"the host's certificate is from {found.group(1) if found else 'another CA'}", None
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        return "the host's certificate is unreadable", None
    not_after = certificate.not_valid_after_utc
    names = san_names(certificate)
    if name not in names:
        return f"the host's certificate is for {', '.join(names) or 'no name'}", not_after
    if not_after <= (now or dt.datetime.now(dt.UTC)):
        return f"the host's certificate expired on {not_after:%Y-%m-%d}", not_after
    return "", not_after


def certbot_command(name: str, args: dict, *, replace: bool):
    certname = _certname(name, args)
    parts = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
             "--email", args["email"], "--server", args["server"], "--cert-name", certname,
             "--domain", name]
    if args["preferred_challenges"] == "http-01":
        parts += ["--webroot", "--webroot-path", args["webroot"]]
    else:
        parts += ["--manual", "--preferred-challenges", "dns",
                  "--manual-auth-hook", args["manual_auth_hook"],
                  "--manual-cleanup-hook", args["manual_cleanup_hook"]]
    if replace:
        parts.append("--force-renewal")   # the lineage exists, but from another CA or name
    return command_as(parts, env=args["env"])


@state("acme.cert", name=_dns_name, facts=_facts, check=_check, args={
    "email": Arg(string, required=True),
    "server": Arg(string, default=acme.LETSENCRYPT),
    "certname": Arg(string),
    "webroot": Arg(abs_path),
    "preferred_challenges": Arg(_challenge, default="http-01"),
    "manual_auth_hook": Arg(_hook),
    "manual_cleanup_hook": Arg(_hook),
    "env": Arg(env_map, default={}),
})
def cert(call: Call):
    """A certificate for a DNS name from an ACME CA, requested by certbot on the host
    when it has none from that CA (renewals are certbot.timer's).

    name
        The DNS name the certificate is for.
    email
        The ACME account's contact (expiry notices go there); required.
    server
        The ACME directory URL (default: Let's Encrypt's).
    certname
        certbot's lineage name, ``/etc/letsencrypt/live/CERTNAME/`` (default: the name).
    webroot
        HTTP-01: the folder NGINX serves at ``/.well-known/acme-challenge/``.
    preferred_challenges
        ``http-01`` (the default; needs webroot) or ``dns-01`` (needs both hooks).
    manual_auth_hook
        DNS-01: the program (absolute path, arguments allowed) certbot runs to publish
        the TXT record.
    manual_cleanup_hook
        DNS-01: the program that removes it again.
    env
        Environment for certbot, a mapping (e.g. REQUESTS_CA_BUNDLE for a test CA).
    """
    a = call.args
    problem, not_after = lineage_problem(call.name, a["server"], call.facts["renewal"],
                                         call.facts["certificate"])
    if not problem:
        days = (not_after - dt.datetime.now(dt.UTC)).days
        return call.done(f"certificate for {call.name} from {a['server']} valid until "
                         f"{not_after:%Y-%m-%d} ({days} days); certbot renews it")
    command = certbot_command(call.name, a, replace=call.facts["renewal"] is not None)
    if call.test:
        return call.would(f"would request a certificate for {call.name} from {a['server']} "
                          f"({problem})", {"requested": call.name})
    result = yield Run(command, check=False, timeout=600)
    if not result.ok:
        failure = acme.explain_failure(result.stdout + "\n" + result.stderr, call.name)
        return call.fail(f"no certificate for {call.name} from {a['server']}: {failure}; "
                         "NGINX serves no TLS until it is issued",
                         stderr=(result.stderr or result.stdout).strip()[-2000:],
                         changes={"retcode": result.rc})
    return call.done(f"certificate for {call.name} issued by {a['server']} ({problem})",
                     {"issued": call.name, "server": a["server"]})
