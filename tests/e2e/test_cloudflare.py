"""Cloudflare in front of a sandbox host, end to end.

The official SDK talks to the Cloudflare stand-in (a real HTTP server checking
every request against Cloudflare's published schema); the stand-in issues Origin
CA certificates from a test CA. This machine plays Cloudflare's edge from
EDGE, an address inside Cloudflare's published 173.245.48.0/20 put on the
sandbox bridge, and plays "anyone else" from its usual bridge address.
"""

import datetime as dt

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.dev.doubles.certificate_authority import TestCertificateAuthority
from jupyterfab.dev.doubles.cloudflare_api import DEFAULT_IPV4_CIDRS, DEFAULT_IPV6_CIDRS, CloudflareStandIn
from jupyterfab.engine.runner import open_runner
from jupyterfab.inventory import schema
from jupyterfab.verify.jupyterclient import JupyterSession

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-cloudflare-password"
ZONE = "example.com"
NAME = "jupyter.example.com"
EDGE = sandbox.EDGE_ADDRESS
CERTIFICATE = f"/etc/ssl/jupyterfab/{NAME}/cert.pem"
KEY = f"/etc/ssl/jupyterfab/{NAME}/key.pem"


@pytest.fixture(scope="module")
def cf(sandbox_factory, tmp_path_factory):
    inv = sandbox_factory(1)
    host = inv.hosts["sandbox1"]
    sandbox.add_edge_address()
    tmp = tmp_path_factory.mktemp("cloudflare")
    with CloudflareStandIn() as standin:
        zone_id = standin.add_zone(ZONE)
        other = standin.add_record(zone_id, "A", f"www.{ZONE}", "192.0.2.10", proxied=True)
        token = standin.add_token()
        secret_file(tmp, token, "token")
        secret_file(tmp, PASSWORD, "password")
        (tmp / "ca.pem").write_text(standin.ca_certificate_pem)
        data = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
        data["defaults"]["vars"].update(cloudflare_zone=ZONE)
        (tmp / "hosts.yaml").write_text(yaml.safe_dump(data))
        yield {"standin": standin, "zone": zone_id, "other": other, "host": host, "tmp": tmp,
               "inventory": str(tmp / "hosts.yaml"), "token": token}


def fab(cf, *args, check=True, env=None):
    return run_tool("fab", "-H", "sandbox1", *args, "--inventory", cf["inventory"], check=check,
                    env={"JUPYTERFAB_CACHE_DIR": str(cf["tmp"] / "cache"),
                         schema.CLOUDFLARE_API_URL_ENV: cf["standin"].base_url, **(env or {})})


def deploy(cf, *args, **kw):
    return fab(cf, "deploy", "--password-file", str(cf["tmp"] / "password"),
               "--cloudflare-token-file", str(cf["tmp"] / "token"), *args, **kw)


def verify(cf, *args):
    return run_tool("invoke", "verify", "--hosts", "sandbox1", "--inventory", cf["inventory"],
                    "--password-file", str(cf["tmp"] / "password"), *args, check=False, timeout=300)


def records(cf, name=NAME):
    return [r for r in cf["standin"].records(cf["zone"]) if r["name"] == name]


def setting(cf, name):
    return cf["standin"].setting(cf["zone"], name)


@pytest.fixture(scope="module")
def deployed(cf):
    first = deploy(cf)
    return first


def test_first_deploy_points_the_name_at_the_host_and_makes_tls_strict(cf, deployed):
    [record] = records(cf)
    assert (record["type"], record["content"], record["proxied"], record["ttl"]) == \
        ("A", cf["host"].address, True, 1)
    assert {s: setting(cf, s) for s in ("ssl", "always_use_https", "min_tls_version", "websockets")} == \
        {"ssl": "strict", "always_use_https": "on", "min_tls_version": "1.2", "websockets": "on"}
    out = deployed.stdout + deployed.stderr   # a progress line per changed step
    assert f"created A {NAME}" in out and "issued a new Origin CA certificate" in out
    assert "sandbox1  ok, " in out
    assert cf["token"] not in out + deployed.stderr


def test_records_of_other_names_are_untouched(cf, deployed):
    [www] = records(cf, f"www.{ZONE}")
    assert (www["id"], www["content"], www["proxied"]) == (cf["other"], "192.0.2.10", True)


def test_verify_proves_the_certificate_the_redirect_and_the_lockdown(cf, deployed):
    result = verify(cf, "--ca-file", str(cf["tmp"] / "ca.pem"), "--edge-address", EDGE,
                    "--pytest-args", "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    # every check ran, but ACME's, which are for hosts with `tls: acme`
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert " passed" in result.stdout, result.stdout
    assert all("not from ACME" in line for line in skipped), result.stdout


def test_verify_fails_when_the_certificate_does_not_chain_to_the_given_ca(cf, deployed):
    stranger = cf["tmp"] / "stranger-ca.pem"
    key = rsa.generate_private_key(65537, 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the Origin CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(1).not_valid_before(now)
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    stranger.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    result = verify(cf, "--ca-file", str(stranger), "--edge-address", EDGE,
                    "--pytest-args", "-k chains")
    assert result.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in result.stdout, result.stdout


def test_verify_takes_the_set_a_deploy_had_and_never_ignores_ca_file(cf, deployed):
    # As a user who deployed the sandbox's plain inventory with --set cloudflare_zone=...:
    # verify checks the Cloudflare host with the same --set, and without it refuses --ca-file.
    plain = str(sandbox.workdir_for(PROJECT) / "hosts.yaml")
    ca = ["--ca-file", str(cf["tmp"] / "ca.pem"), "--edge-address", EDGE]
    common = ["--hosts", "sandbox1", "--inventory", plain, "--password-file", str(cf["tmp"] / "password")]
    result = run_tool("invoke", "verify", *common, "--set", f"cloudflare_zone={ZONE}", *ca,
                      "--pytest-args", "-k origin", check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert " passed" in result.stdout and not skipped, result.stdout   # TLS, the chain, the lockdown
    refused = run_tool("invoke", "verify", *common, *ca, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.startswith("error: --ca-file: sandbox1 serve(s) no TLS by the inventory"), \
        refused.stderr


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_only_cloudflare_reaches_the_origin(cf, deployed):
    address = cf["host"].address
    outside = JupyterSession(address, NAME, f"https://{NAME}", verify=False)
    assert outside.get("/login").status_code == 403
    inside = JupyterSession(address, NAME, f"https://{NAME}", verify=str(cf["tmp"] / "ca.pem"),
                            source_address=EDGE)
    assert inside.get("/login").status_code == 200
    assert inside.login(PASSWORD)
    assert inside.run_code("6*7") == "42"


def test_the_key_never_leaves_root(cf, deployed):
    runner = open_runner(cf["host"])
    try:
        out = runner.run(f"stat -c '%U %a' {KEY} {CERTIFICATE} /etc/ssl/jupyterfab").stdout.split("\n")
    finally:
        runner.close()
    assert out[:3] == ["root 600", "root 644", "root 755"]


def test_second_deploy_sends_no_write_and_changes_nothing(cf, deployed):
    cf["standin"].reset_counts()
    again = deploy(cf)
    assert cf["standin"].write_count == 0, cf["standin"].request_counts
    assert "sandbox1  ok, no changes" in again.stdout, again.stdout


def test_dry_run_of_an_address_change_predicts_and_writes_nothing(cf, deployed):
    cf["standin"].reset_counts()
    dry = deploy(cf, "--dry-run", "--set", "public_ipv4=198.51.100.7")
    assert "would update A jupyter.example.com: content" in dry.stdout, dry.stdout
    assert cf["standin"].write_count == 0
    assert records(cf)[0]["content"] == cf["host"].address


def test_an_address_change_updates_the_record_and_nothing_else(cf, deployed):
    cf["standin"].reset_counts()
    moved = deploy(cf, "--set", "public_ipv4=198.51.100.7")
    assert cf["standin"].write_count == 1
    assert records(cf)[0]["content"] == "198.51.100.7"
    assert "sandbox1  ok, 1 changed" in moved.stdout, moved.stdout
    deploy(cf)
    assert records(cf)[0]["content"] == cf["host"].address


def test_turning_proxied_off_demands_acme_or_your_own_certificate_and_changes_nothing(cf, deployed):
    """Browsers do not trust Origin CA certificates: a DNS-only record needs ACME (and so
    acme_email) or your own certificate."""
    cf["standin"].reset_counts()
    refused = deploy(cf, "--set", "cloudflare_proxied=false", check=False)
    assert refused.returncode != 0
    assert "acme_email: required for an ACME certificate" in refused.stdout + refused.stderr
    assert cf["standin"].request_counts.total() == 0   # refused before any request
    assert records(cf)[0]["proxied"] is True


def test_a_token_without_dns_write_is_named_and_the_record_is_kept(cf, deployed):
    weak = cf["standin"].add_token({"Zone Read", "DNS Read", "Zone Settings Read", "Zone Settings Write",
                                    "SSL and Certificates Write"})
    cf["standin"].reset_counts()
    failed = fab(cf, "deploy", "--set", "public_ipv4=198.51.100.8", check=False,
                 env={"CLOUDFLARE_API_TOKEN": weak})
    assert failed.returncode != 0
    assert "DNS Write" in failed.stdout, failed.stdout
    assert weak not in failed.stdout + failed.stderr
    assert records(cf)[0]["content"] == cf["host"].address


def test_a_certificate_near_expiry_is_renewed_and_served(cf, deployed):
    key = rsa.generate_private_key(65537, 2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
           .sign(key, hashes.SHA256()))
    short = cf["standin"].ca.issue(csr.public_bytes(serialization.Encoding.PEM).decode(), [NAME], 7, "rsa")
    runner = open_runner(cf["host"])
    try:
        runner.put(short.public_bytes(serialization.Encoding.PEM), CERTIFICATE)
        runner.put(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()), KEY)
        runner.run("chmod 644 " + CERTIFICATE)
        renewed = deploy(cf, "--verbose")     # each state's own words
        assert "issued a new Origin CA certificate" in renewed.stdout and "days left" in renewed.stdout
        served = runner.run(f"cat {CERTIFICATE}").stdout
    finally:
        runner.close()
    certificate = x509.load_pem_x509_certificate(served.encode())
    assert (certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)).days > 365
    result = verify(cf, "--ca-file", str(cf["tmp"] / "ca.pem"), "--edge-address", EDGE,
                    "--pytest-args", "-k certificate")
    assert result.returncode == 0, result.stdout


def test_new_cloudflare_ranges_reach_nginx_on_the_next_deploy(cf, deployed):
    standin = cf["standin"]
    standin.set_ips([*DEFAULT_IPV4_CIDRS, "198.51.100.0/24"], DEFAULT_IPV6_CIDRS)
    try:
        updated = deploy(cf, "--verbose")     # with the site's diff
        assert "nginx_site" in updated.stdout and "+    198.51.100.0/24 1;" in updated.stdout, updated.stdout
        runner = open_runner(cf["host"])
        try:
            site = runner.run("cat /etc/nginx/sites-enabled/jupyter.conf").stdout
        finally:
            runner.close()
        assert "set_real_ip_from 198.51.100.0/24;" in site
    finally:
        standin.set_ips(DEFAULT_IPV4_CIDRS, DEFAULT_IPV6_CIDRS)
        deploy(cf)


def test_fab_cloudflare_alone_checks_dns_and_settings_without_writing(cf, deployed):
    cf["standin"].reset_counts()
    out = fab(cf, "cloudflare", "-v", "--cloudflare-token-file", str(cf["tmp"] / "token"))
    # four zone settings, origin pulls (left alone), the A record: all already right
    assert "Succeeded: 6 (changed=0)" in out.stdout, out.stdout
    assert "sandbox1  ok, no changes" in out.stdout
    quiet = fab(cf, "cloudflare", "--cloudflare-token-file", str(cf["tmp"] / "token"))
    assert "Summary for" not in quiet.stdout and len(quiet.stdout.strip().splitlines()) <= 4, quiet.stdout
    assert "sandbox1  ok, no changes" in quiet.stdout
    assert cf["standin"].write_count == 0


def test_a_zone_that_does_not_exist_is_named(cf, deployed):
    missing = deploy(cf, "--set", "cloudflare_zone=example.org", "--set", "server_name=jupyter.example.org",
                     check=False)
    assert missing.returncode != 0
    assert "zone 'example.org' not found" in missing.stdout, missing.stdout


def _key_and_csr(common_name):
    key = rsa.generate_private_key(65537, 2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key, key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def test_dns_only_with_your_own_certificate(cf, deployed):
    """Browsers reach a DNS-only host directly: it serves the user's certificate, no lockdown."""
    own_ca = TestCertificateAuthority.generate("my own CA")
    key, key_pem, _ = _key_and_csr(NAME)
    now = dt.datetime.now(dt.UTC)
    # as a public CA would issue it (not with Cloudflare's Origin CA subject)
    certificate = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
                   .issuer_name(own_ca.certificate.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=90))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .sign(own_ca._private_key, hashes.SHA256()))
    files = {"own.crt": certificate.public_bytes(serialization.Encoding.PEM), "own.key": key_pem,
             "own-ca.pem": own_ca.certificate_pem.encode()}
    for name, data in files.items():
        (cf["tmp"] / name).write_bytes(data)
    (cf["tmp"] / "own.key").chmod(0o600)
    own = ["--set", "cloudflare_proxied=false", "--set", f"tls_certificate={cf['tmp'] / 'own.crt'}",
           "--set", f"tls_key={cf['tmp'] / 'own.key'}"]
    try:
        deploy(cf, *own)
        [record] = records(cf)
        assert record["proxied"] is False
        direct = JupyterSession(cf["host"].address, NAME, f"https://{NAME}", verify=str(cf["tmp"] / "own-ca.pem"))
        assert direct.get("/login").status_code == 200    # from anywhere: no lockdown without the proxy
        assert direct.login(PASSWORD)
        again = deploy(cf, *own)
        assert "sandbox1  ok, no changes" in again.stdout, again.stdout
    finally:
        back = deploy(cf, "--verbose")
    assert records(cf)[0]["proxied"] is True
    assert "not a Cloudflare Origin CA certificate" in back.stdout, back.stdout
    outside = JupyterSession(cf["host"].address, NAME, f"https://{NAME}", verify=str(cf["tmp"] / "ca.pem"))
    assert outside.get("/login").status_code == 403     # locked down again, with the Origin CA certificate


def test_authenticated_origin_pulls_make_nginx_demand_cloudflare_s_client_certificate(cf, deployed):
    pull_ca = TestCertificateAuthority.generate("origin-pull CA (test)")
    key, key_pem, _ = _key_and_csr("origin-pull.cloudflare.net")
    now = dt.datetime.now(dt.UTC)
    client = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                    "origin-pull.cloudflare.net")]))
              .issuer_name(pull_ca.certificate.subject).public_key(key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
              .not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(pull_ca._private_key, hashes.SHA256()))
    (cf["tmp"] / "pull-ca.pem").write_text(pull_ca.certificate_pem)
    (cf["tmp"] / "edge-client.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM) + key_pem)
    on = ["--set", "authenticated_origin_pulls=true", "--set", f"origin_pull_ca={cf['tmp'] / 'pull-ca.pem'}"]
    try:
        deploy(cf, *on)
        assert cf["standin"].origin_pulls[cf["zone"]] is True
        edge = JupyterSession(cf["host"].address, NAME, f"https://{NAME}", verify=str(cf["tmp"] / "ca.pem"),
                              source_address=EDGE)
        assert edge.get("/login").status_code == 400     # nginx: "No required SSL certificate was sent"
        edge.http.cert = str(cf["tmp"] / "edge-client.pem")
        assert edge.get("/login").status_code == 200
    finally:
        deploy(cf)
    plain = JupyterSession(cf["host"].address, NAME, f"https://{NAME}", verify=str(cf["tmp"] / "ca.pem"),
                           source_address=EDGE)
    assert plain.get("/login").status_code == 200
