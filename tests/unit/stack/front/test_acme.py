"""ACME as planned and explained, without a host: which hosts get it, the variables it
needs (one-line errors naming them), plain HTTP refused, the NGINX site before and
after the certificate exists, the certbot command, and certbot's failures in words."""

import datetime as dt
import os
import re
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jupyterfab import inventory
from jupyterfab.dev import sandbox
from jupyterfab.dev.doubles.cloudflare_api import CloudflareStandIn
from jupyterfab.engine import highstate, sls
from jupyterfab.engine.states.base import REGISTRY
from jupyterfab.inventory import schema
from jupyterfab.stack import deploy, serving
from jupyterfab.stack.deploy import PROJECT
from jupyterfab.stack.front import acme, tlsplan
from jupyterfab.stack.states import acme as acme_state

EMAIL = "ops@uni-example.de"   # not a documentation domain: Let's Encrypt would refuse one


def plan(**overrides):
    return tlsplan.plan_for("web1", {**inventory.VAR_DEFAULTS, **overrides})


# ----- which hosts get ACME -------------------------------------------------------------

def test_a_public_name_gets_acme_over_http_01_by_default():
    p = plan(server_name="jupyter.example.org.uk", acme_email=EMAIL)
    assert (p.tls, p.acme_challenge, p.acme_server) == ("acme", "http-01", acme.LETSENCRYPT)
    assert p.certificate_path == "/etc/letsencrypt/live/jupyter.example.org.uk/fullchain.pem"
    assert p.key_path == "/etc/letsencrypt/live/jupyter.example.org.uk/privkey.pem"


@pytest.mark.parametrize("name,public", [
    ("jupyter.uni-example.de", True), ("a.b.co.uk", True), ("jupyter.example.com", False),
    ("box.local", False), ("localhost", False), ("jupyter", False), ("198.18.0.11", False),
    ("notebooks.internal", False), ("x.test", False), ("x.home.arpa", False)])
def test_public_names(name, public):
    assert schema.is_public_name(name) is public


def test_acme_needs_acme_email_and_says_so_in_one_line():
    with pytest.raises(tlsplan.EdgeConfigError) as caught:
        plan(server_name="jupyter.uni-example.de")
    assert str(caught.value).startswith("web1: acme_email: required for an ACME certificate")
    assert "\n" not in str(caught.value)


def test_staging_and_any_directory_url_are_servers():
    assert plan(server_name="a.uni-example.de", acme_email=EMAIL, acme_server="staging").acme_server \
        == acme.LETSENCRYPT_STAGING
    url = "https://198.18.0.1:14000/dir"
    assert plan(tls="acme", acme_email=EMAIL, acme_server=url).acme_server == url


@pytest.mark.parametrize("key,value,message", [
    ("acme_server", "http://ca.example.org/dir", "must be letsencrypt (the default), staging, or the https URL"),
    ("acme_email", "not-an-address", "'not-an-address' is not an email address"),
    ("tls", "letsencrypt", "must be one of auto, acme, off"),
    ("acme_challenge", "tls-alpn-01", "must be one of auto, http-01, dns-01"),
])
def test_bad_acme_variables_are_refused_naming_the_key(key, value, message):
    text = f"hosts:\n  web1:\n    address: 203.0.113.5\n    vars:\n      {key}: {value}\n"
    with pytest.raises(inventory.InventoryError, match=re.escape(f"hosts.yaml:5: hosts.web1.vars.{key}: {message}")):
        inventory.parse(text)


def test_tls_acme_forces_acme_on_a_name_that_is_not_public():
    assert plan(tls="acme", acme_email=EMAIL).tls == "acme"


def test_dns_01_needs_a_cloudflare_zone():
    with pytest.raises(tlsplan.EdgeConfigError, match="web1: acme_challenge: dns-01 needs cloudflare_zone"):
        plan(tls="acme", acme_email=EMAIL, acme_challenge="dns-01")


def test_acme_behind_cloudflare_s_proxy_is_refused():
    with pytest.raises(tlsplan.EdgeConfigError, match="web1: tls: acme with a proxied Cloudflare record"):
        plan(tls="acme", acme_email=EMAIL, cloudflare_zone="example.com")


# ----- no plain HTTP by accident ----------------------------------------------------------

@pytest.mark.parametrize("overrides", [{"server_name": "box.local"},
                                       {"tls": "off", "server_name": "jupyter.uni-example.de"}])
def test_plain_http_is_refused_naming_allow_plain_http(overrides):
    with pytest.raises(tlsplan.EdgeConfigError) as caught:
        plan(**overrides)
    message = str(caught.value)
    assert message.startswith("web1: allow_plain_http: refusing to serve Jupyter over plain HTTP")
    assert "clear text" in message and "tls: acme" in message and "\n" not in message


def test_plain_http_with_the_opt_in():
    assert plan(allow_plain_http=True).tls == "off"
    assert plan(tls="off", allow_plain_http=True, server_name="jupyter.uni-example.de").tls == "off"


def test_the_sandbox_inventory_opts_in(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "STATE_ROOT", tmp_path / "state")
    host = sandbox.SandboxHost("sandbox1", "198.18.0.11", sandbox.host_dir("sandbox1"))
    pubkey = host.dir / "root/etc/ssh/ssh_host_ed25519_key.pub"
    pubkey.parent.mkdir(parents=True)
    pubkey.write_text("ssh-ed25519 AAAA root@sandbox1\n")
    out = tmp_path / "project" / ".sandbox"
    out.mkdir(parents=True)
    (out / "id_ed25519").write_text("a key\n")      # up made it; the inventory names it
    sandbox.write_client_files(out, [host], out / "id_ed25519", "http://198.18.0.1:3143")
    inv = inventory.load(out / "hosts.yaml")
    assert inv.hosts["sandbox1"].vars["allow_plain_http"] is True
    assert tlsplan.plan_for("sandbox1", inv.hosts["sandbox1"].vars).tls == "off"


# ----- the NGINX site before and after the certificate ------------------------------------

def render(tls_live):
    v = {**inventory.VAR_DEFAULTS, "tls": "acme", "acme_email": EMAIL, **serving.template_vars()}
    v.update(tlsplan.template_vars(tlsplan.plan_for("web1", v)))
    v["tls_live"] = tls_live
    return sls.render_template(PROJECT / "files", "nginx/jupyter.conf.j2", v)


def test_before_the_certificate_port_80_serves_only_the_challenge_and_the_redirect():
    site = render(tls_live=False)
    assert "location ^~ /.well-known/acme-challenge/ {" in site
    assert f"root {acme.WEBROOT};" in site
    assert "return 301 https://jupyter.example.com$request_uri;" in site
    # no TLS server for the name (the catch-all on 443 only rejects handshakes)
    assert "listen 443 ssl;" not in site and "ssl_certificate" not in site and "proxy_pass" not in site
    assert site.index("acme-challenge") < site.index("return 301")


def test_once_the_certificate_exists_the_tls_server_uses_certbot_s_files():
    site = render(tls_live=True)
    assert "listen 443 ssl;" in site and "acme-challenge" in site
    assert "ssl_certificate     /etc/letsencrypt/live/jupyter.example.com/fullchain.pem;" in site
    assert "ssl_certificate_key /etc/letsencrypt/live/jupyter.example.com/privkey.pem;" in site
    tls_server = site[site.index("listen 443 ssl;"):]
    assert "proxy_pass http://jupyter;" in tls_server


def test_the_states_of_an_acme_host(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text(_certificate_pem("test CA", days=30))
    host = inventory.Host("web1", "203.0.113.10", vars={
        **inventory.VAR_DEFAULTS, "tls": "acme", "acme_email": EMAIL, "acme_ca_bundle": str(bundle),
        "acme_server": "https://198.18.0.1:14000/dir"})
    plan = deploy.plan_host(host)      # the deploy's own variables, not a hand-made copy
    v = {**plan.vars, "hashed_password": "x", "wheelhouse_local": "", "env_bundle": "", "kernel_bundle": "",
         "extensions_local": str(tmp_path)}
    tlsplan.EdgeSession().before_states(plan.edge, v, lambda: (None, None))
    ctx = highstate.Context(host="web1", vars=v, init="systemd", files_dir=PROJECT / "files")
    decls = {d.id: d for d in sls.load_states(PROJECT / "states", ctx)}
    assert "certbot" in [name for name, _ in decls["system_packages"].args["pkgs"]]
    assert "tls_certificate" not in decls and "tls_key" not in decls
    cert = decls["acme_certificate"]
    assert (cert.name, cert.args["server"], cert.args["env"]) == \
        ("jupyter.example.com", "https://198.18.0.1:14000/dir", {"REQUESTS_CA_BUNDLE": acme.CA_BUNDLE})
    assert ("service", "nginx_service") in [t for r in cert.requisites for t in r.targets]
    assert decls["acme_renewal_timer"].name == "certbot.timer"
    assert decls["acme_deploy_hook"].name == acme.DEPLOY_HOOK


def test_the_certbot_command():
    name, args = REGISTRY["acme.cert"].normalize("Jupyter.Example.org", {
        "email": EMAIL, "server": acme.LETSENCRYPT, "webroot": acme.WEBROOT,
        "env": {"REQUESTS_CA_BUNDLE": "/ca.pem"}})
    assert acme_state.certbot_command(name, args, replace=False).display == (
        "env REQUESTS_CA_BUNDLE=/ca.pem certbot certonly --non-interactive --agree-tos --no-eff-email "
        f"--email {EMAIL} --server {acme.LETSENCRYPT} --cert-name jupyter.example.org "
        f"--domain jupyter.example.org --webroot --webroot-path {acme.WEBROOT}")


# ----- is the host's certificate the one asked for ----------------------------------------

def _certificate_pem(name, days, san=None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(7)
               .not_valid_before(now - dt.timedelta(days=90)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(san or name)]), critical=False))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


RENEWAL = f"version = 2.1.0\n[renewalparams]\nauthenticator = webroot\nserver = {acme.LETSENCRYPT}\n"


@pytest.mark.parametrize("renewal,certificate,problem", [
    (None, None, "no certificate for it on the host yet"),
    (RENEWAL.replace(acme.LETSENCRYPT, acme.LETSENCRYPT_STAGING), _certificate_pem("a.example.org", 80),
     f"the host's certificate is from {acme.LETSENCRYPT_STAGING}"),
    (RENEWAL, _certificate_pem("a.example.org", 80, san="b.example.org"),
     "the host's certificate is for b.example.org"),
    (RENEWAL, _certificate_pem("a.example.org", -2), "the host's certificate expired on"),
    (RENEWAL, _certificate_pem("a.example.org", 80), ""),
])
def test_which_certificate_is_kept(renewal, certificate, problem):
    found, _ = acme_state.lineage_problem("a.example.org", acme.LETSENCRYPT, renewal, certificate)
    assert found.startswith(problem) and (found == "") == (problem == "")


# ----- certbot's failures, in the user's words --------------------------------------------

AUTH_FAILURE = """Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for a.example.org

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:
  Domain: a.example.org
  Type:   {type}
  Detail: {detail}

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.

Some challenges have failed.
"""


@pytest.mark.parametrize("problem,detail,words", [
    ("connection", "198.18.0.1: Fetching http://a.example.org/.well-known/acme-challenge/x: Connection refused",
     "could not connect to port 80 of a.example.org"),
    ("dns", "DNS problem: NXDOMAIN looking up A for a.example.org", "could not resolve a.example.org"),
    ("connection", 'Get "http://a.example.org/.well-known/acme-challenge/x": could not resolve URL '
                   '"http://a.example.org/.well-known/acme-challenge/x"', "could not resolve a.example.org"),
    ("unauthorized", "192.0.2.7: Invalid response from http://a.example.org/.well-known/acme-challenge/x: 404",
     "DNS for a.example.org points at another server"),
])
def test_an_authorization_failure_names_the_cause_and_keeps_the_ca_s_words(problem, detail, words):
    failure = acme.explain_failure(AUTH_FAILURE.format(type=problem, detail=detail), "a.example.org")
    assert (failure.problem, failure.detail) == (problem, detail)
    assert words in str(failure) and detail in str(failure)


def test_a_rate_limit_is_named():
    output = ("An unexpected error occurred:\nurn:ietf:params:acme:error:rateLimited :: There were too many "
              "requests of a given type :: too many certificates (5) already issued for this exact set of "
              "domains in the last 168 hours\n")
    failure = acme.explain_failure(output, "a.example.org")
    assert failure.problem == "rateLimited" and "rate limit" in str(failure)
    assert "too many certificates (5)" in failure.detail


def test_an_unreachable_ca_is_named():
    log = ("2026-12-01 16:00:00,000:ERROR:certbot._internal.renewal:Failed to renew certificate a.example.org "
           "with error: HTTPSConnectionPool(host='198.18.0.1', port=14000): Max retries exceeded with url: "
           "/dir (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
           "Connection refused'))\n")
    state = acme.parse_state({"certificate": _certificate_pem("a.example.org", 60).splitlines(),
                              "renewal": log.splitlines()}, "a.example.org")
    assert state.days_left() in (59, 60)
    assert "could not reach the ACME server" in state.last_error
    assert "HTTPSConnectionPool(host='198.18.0.1', port=14000)" in state.last_error
    assert "last renewal FAILED" in state.describe()


def test_a_clean_renewal_log_has_no_error():
    state = acme.parse_state({"certificate": _certificate_pem("a.example.org", 60).splitlines()},
                             "a.example.org")
    assert state.last_error == "" and "FAILED" not in state.describe()


# ----- the DNS-01 hook, run against the Cloudflare stand-in --------------------------------

def test_the_dns_01_hook_publishes_and_removes_the_txt_record_with_the_host_s_token(tmp_path):
    with CloudflareStandIn() as standin:
        zone = standin.add_zone("example.com")
        token = standin.add_token(["DNS Read", "DNS Write"])   # no Zone Read: the id is given
        seen = []
        standin.on_txt_change = lambda name, values: seen.append((name, values))
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        v = {"server_name": "jupyter.example.com", "cloudflare_zone": "example.com",
             "cloudflare_zone_id": zone, "cloudflare_api_base": standin.base_url,
             "acme_dns_token_path": str(token_file), "acme_dns_propagation_seconds": 0}
        hook = tmp_path / "hook"
        hook.write_text(sls.render_template(PROJECT / "files", "acme/cloudflare-hook.py.j2", v))
        env = {**os.environ, "CERTBOT_DOMAIN": "jupyter.example.com", "CERTBOT_VALIDATION": "v4l1d"}
        for mode in ("auth", "cleanup"):
            done = subprocess.run([sys.executable, str(hook), mode], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            if mode == "auth":
                assert [(r["type"], r["name"], r["content"]) for r in standin.records(zone)] == \
                    [("TXT", "_acme-challenge.jupyter.example.com", "v4l1d")]
        assert standin.records(zone) == []
        assert seen == [("_acme-challenge.jupyter.example.com", ["v4l1d"]),
                        ("_acme-challenge.jupyter.example.com", [])]
        token_file.unlink()
        missing = subprocess.run([sys.executable, str(hook), "auth"], env=env, capture_output=True, text=True)
        assert missing.returncode == 1 and "deploy with --acme-dns-token-file" in missing.stderr
