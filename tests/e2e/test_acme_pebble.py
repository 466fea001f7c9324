"""ACME end to end: a sandbox host gets its certificate from Pebble, for real.

Pebble (Let's Encrypt's ACME test server, Debian's ``pebble``) and its DNS server
``pebble-challtestsrv`` run on the sandbox bridge: the host reaches Pebble there,
and Pebble resolves the host's name through challtestsrv and fetches the HTTP-01
challenge from the host's port 80. The host's certbot trusts Pebble's HTTPS
listener through ``acme_ca_bundle`` (this test only); ``verify --ca-file`` gets
the root Pebble issues from.

One host, one first deploy; the steps run in order and build on each other.
"""

import socket
import ssl
import subprocess

import pytest
import yaml
from cryptography import x509
from e2e_support import PROJECT, run_tool, secret_file

from jupyterfab.dev import sandbox
from jupyterfab.dev.doubles import pebble as pebble_mod
from jupyterfab.dev.doubles.cloudflare_api import CloudflareStandIn
from jupyterfab.stack.front import acme as acme_mod

pytestmark = pytest.mark.e2e
NAME = "jupyter.example.com"
OTHER = "nothere.example.com"
DNS_NAME = "dns.example.com"
PASSWORD = "e2e-acme-password"


@pytest.fixture(scope="module")
def acme(sandbox_factory, tmp_path_factory):
    missing = pebble_mod.available()
    if missing:
        pytest.fail(f"the ACME tests need Pebble: {missing}")
    inv = sandbox_factory(1)
    host = inv.hosts["sandbox1"]
    bridge = sandbox.bridge_address()
    tmp = tmp_path_factory.mktemp("acme")
    with pebble_mod.Pebble(bridge, tmp / "pebble") as pebble:
        pebble.add_a(NAME, host.address)
        # a name whose DNS points at no web server: the bridge's own port 80
        pebble.add_a(OTHER, bridge)
        data = yaml.safe_load((sandbox.workdir_for(PROJECT) / "hosts.yaml").read_text())
        data["defaults"]["vars"].pop("allow_plain_http")
        data["defaults"]["vars"].update(pebble.inventory_vars())
        (tmp / "hosts.yaml").write_text(yaml.safe_dump(data))
        secret_file(tmp, PASSWORD)
        yield {"pebble": pebble, "host": host, "tmp": tmp, "inventory": str(tmp / "hosts.yaml"),
               "bridge": bridge}


def fab(acme, *args, check=True):
    return run_tool("fab", "-H", "sandbox1", *args, "--inventory", acme["inventory"], check=check)


def deploy(acme, *args, check=True):
    return fab(acme, "deploy", "--password-file", str(acme["tmp"] / "password"), *args, check=check)


def on_host(acme, command):
    out = sandbox.workdir_for(PROJECT)
    return subprocess.run(sandbox.ssh_command(out, "sandbox1", command), capture_output=True,
                          text=True, timeout=300)


def served_certificate(acme, name=NAME):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((acme["host"].address, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)


def issued_count(acme):
    return (acme["tmp"] / "pebble" / "pebble.log").read_text().count("Issued certificate serial")


def verify(acme, *args):
    roots = acme["tmp"] / "pebble-roots.pem"
    if acme["pebble"].running:
        roots.write_text(acme["pebble"].issuing_roots_pem())
    return run_tool("invoke", "verify", "--hosts", "sandbox1", "--inventory", acme["inventory"],
                    "--password-file", str(acme["tmp"] / "password"), "--ca-file", str(roots),
                    *args, check=False, timeout=300)


def test_plain_http_is_refused_without_the_opt_in(acme):
    refused = deploy(acme, "--set", "tls=off", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "allow_plain_http: refusing to serve Jupyter over plain HTTP" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert on_host(acme, "test -e /etc/nginx").returncode != 0, "the refused deploy touched the host"


@pytest.fixture(scope="module")
def deployed(acme):
    before = issued_count(acme)
    first = deploy(acme)
    print(f"\nfirst deploy with ACME: {first.seconds:.1f} s")
    acme["first_seconds"] = first.seconds
    assert issued_count(acme) == before + 1
    return first


def test_first_deploy_issues_the_certificate_and_serves_it(acme, deployed):
    out = deployed.stdout + deployed.stderr
    assert f"certificate for {NAME} issued by {acme['pebble'].directory_url}" in out, out
    assert "nginx_site (TLS live)" in out and "(TLS live) (TLS live)" not in out, out
    result = verify(acme, "--pytest-args", "-rA")
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if line.startswith("PASSED")]
    for check in ("test_acme.py::test_acme_certificate_has_more_than_14_days_left_and_no_failed_renewal",
                  "test_acme.py::test_acme_renewal_timer_is_active",
                  "test_acme.py::test_acme_deploy_hook_reloads_nginx_after_a_renewal",
                  "test_acme.py::test_acme_port_80_redirects_to_https_except_the_challenge",
                  "test_origin.py::test_the_certificate_chains_to_the_given_ca",
                  "test_origin.py::test_http_redirects_to_https"):
        assert any(check in line for line in passed), f"{check} did not pass:\n{result.stdout}"


def test_a_second_deploy_is_a_no_op_and_asks_the_ca_for_nothing(acme, deployed):
    before = issued_count(acme)
    second = deploy(acme)
    print(f"\nno-op redeploy with ACME: {second.seconds:.2f} s")
    assert "sandbox1  ok, no changes" in second.stdout, second.stdout
    assert issued_count(acme) == before


# certbot renew sleeps up to 8 minutes first when it has no terminal (to spread the load on
# the CA); --no-random-sleep-on-renew is for tests, certbot.timer keeps the sleep.
def test_a_forced_renewal_is_served_without_a_deploy(acme, deployed):
    old = served_certificate(acme)
    renewed = on_host(acme, "REQUESTS_CA_BUNDLE=/etc/jupyterfab/acme-ca-bundle.pem "
                            "certbot renew --force-renewal --non-interactive --no-random-sleep-on-renew")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert served_certificate(acme) != old, "NGINX still serves the old certificate"


def test_dns_01_through_cloudflare_s_api_with_the_host_s_own_token(acme, deployed):
    """The same host under another name, in a Cloudflare zone with a DNS-only record: the
    TXT record goes through the API stand-in (mirrored into challtestsrv, Pebble's DNS)."""
    tmp = acme["tmp"]
    with CloudflareStandIn(host=acme["bridge"]) as standin:
        zone = standin.add_zone("example.com")
        standin.on_txt_change = acme["pebble"].serve_txt
        deploy_token = standin.add_token()
        host_token = standin.add_token(["DNS Read", "DNS Write"])
        secret_file(tmp, deploy_token, "cloudflare-token")
        secret_file(tmp, host_token, "dns-token")
        result = deploy(acme, "--set", f"server_name={DNS_NAME}", "--set", "cloudflare_zone=example.com",
                        "--set", "cloudflare_proxied=false", "--set", f"cloudflare_api_url={standin.base_url}",
                        "--set", "acme_challenge=dns-01", "--set", "acme_dns_propagation_seconds=0",
                        "--cloudflare-token-file", str(tmp / "cloudflare-token"),
                        "--acme-dns-token-file", str(tmp / "dns-token"))
        out = result.stdout + result.stderr
        assert f"certificate for {DNS_NAME} issued by" in out, out
        names = [r["name"] for r in standin.records(zone)]
        assert names == [DNS_NAME], f"records left: {names}"   # the TXT record was cleaned up
        assert [r["proxied"] for r in standin.records(zone)] == [False]
    assert deploy_token not in out + result.stderr and host_token not in out
    certificate = x509.load_der_x509_certificate(served_certificate(acme, DNS_NAME))
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [DNS_NAME]
    token_file = on_host(acme, f"stat -c '%a %U' {acme_mod.DNS_TOKEN_FILE}; cat {acme_mod.DNS_TOKEN_FILE}")
    assert token_file.stdout.split() == ["600", "root", host_token], token_file.stdout
    renewal = on_host(acme, f"cat /etc/letsencrypt/renewal/{DNS_NAME}.conf").stdout
    assert "authenticator = manual" in renewal and acme_mod.DNS_HOOK in renewal


def test_a_failed_issuance_says_why_and_puts_no_tls_live(acme, deployed):
    # public_ipv4 claims the name's address reaches this host (through NAT, say): the
    # preflight lets certbot try, and the CA finds no web server there
    failed = deploy(acme, "--set", f"server_name={OTHER}", "--set", f"public_ipv4={acme['bridge']}",
                    check=False)
    out = failed.stdout + failed.stderr
    assert failed.returncode == 1, out
    assert "could not connect to port 80" in out and "ACME connection" in out, out
    site = on_host(acme, "cat /etc/nginx/sites-enabled/jupyter.conf").stdout
    assert "acme-challenge" in site and "ssl_certificate" not in site and "proxy_pass" not in site
    with pytest.raises(ssl.SSLError):   # no certificate for the name: the handshake is refused
        served_certificate(acme, OTHER)
    back = deploy(acme)   # the host's own name again: its certificate is still there
    assert "sandbox1  ok, " in back.stdout and "issued by" not in back.stdout + back.stderr


def test_with_the_ca_down_a_failed_renewal_keeps_the_old_certificate_and_is_reported(acme, deployed):
    serving = served_certificate(acme)
    acme["pebble"].stop()
    renewed = on_host(acme, "REQUESTS_CA_BUNDLE=/etc/jupyterfab/acme-ca-bundle.pem "
                            "certbot renew --force-renewal --non-interactive --no-random-sleep-on-renew")
    assert renewed.returncode != 0
    assert served_certificate(acme) == serving
    status = fab(acme, "status", check=False)
    assert "certificate: expires" in status.stdout and "last renewal FAILED" in status.stdout, \
        status.stdout
    result = verify(acme, "--pytest-args", "-k acme")
    assert result.returncode != 0 and "last renewal FAILED" in result.stdout, result.stdout
