"""Cloudflare and TLS as a deploy plans them: variables in, a plan or a clear error out;
the NGINX site each plan renders; the session's steps against the API stand-in."""

import datetime as dt
import os
import re
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from unit_support import LocalRunner

from jupyterfab import inventory
from jupyterfab.engine import templates
from jupyterfab.engine.shell import Secret
from jupyterfab.stack import serving
from jupyterfab.stack.deploy import PROJECT
from jupyterfab.stack.front import tlsplan
from jupyterfab.stack.probe import HostInfo


def variables(**overrides):
    # the plain-HTTP refusal is test_acme.py's; here plain HTTP is what the user opted into
    return {**inventory.VAR_DEFAULTS, "allow_plain_http": True, **overrides}


def plan(**overrides):
    return tlsplan.plan_for("web1", variables(**overrides))


# ----- the plan ------------------------------------------------------------------------

def test_without_a_zone_or_certificate_nothing_changes_http_only_when_allowed():
    p = plan(allow_plain_http=True)
    assert (p.zone, p.tls, p.proxied, p.lockdown) == ("", "off", False, False)


def test_the_public_url_is_https_once_the_host_has_tls_unless_the_inventory_names_one():
    assert tlsplan.public_url(variables(), plan()) == "http://jupyter.example.com"
    proxied = variables(cloudflare_zone="example.com")
    assert tlsplan.public_url(proxied, tlsplan.plan_for("web1", proxied)) == "https://jupyter.example.com"
    named = variables(public_url="https://notebooks.example.org")
    assert tlsplan.public_url(named, tlsplan.plan_for("web1", named)) == "https://notebooks.example.org"


def test_a_proxied_zone_means_origin_ca_and_lockdown():
    p = plan(cloudflare_zone="Example.COM.")
    assert (p.zone, p.subdomain, p.tls, p.proxied, p.lockdown) == \
        ("example.com", "jupyter", "origin-ca", True, True)
    assert p.certificate_path == "/etc/ssl/jupyterfab/jupyter.example.com/cert.pem"


def test_the_zone_apex_is_its_own_subdomain():
    assert plan(cloudflare_zone="example.com", server_name="example.com").subdomain == "@"


def test_lockdown_can_be_turned_off():
    assert not plan(cloudflare_zone="example.com", origin_lockdown=False).lockdown


def test_a_server_name_outside_the_zone_is_refused():
    with pytest.raises(tlsplan.EdgeConfigError, match=r"web1: server_name: 'jupyter.example.org' is not in "
                                                   r"the Cloudflare zone 'example.com'"):
        plan(cloudflare_zone="example.com", server_name="jupyter.example.org")


def test_dns_only_without_an_own_certificate_gets_acme_over_dns_01_not_origin_ca():
    p = plan(cloudflare_zone="example.com", cloudflare_proxied=False, acme_email="ops@uni-example.de")
    assert (p.tls, p.acme_challenge, p.proxied, p.lockdown) == ("acme", "dns-01", False, False)


def test_dns_only_with_an_own_certificate_has_no_lockdown():
    p = plan(cloudflare_zone="example.com", cloudflare_proxied=False,
             tls_certificate="/c.pem", tls_key="/k.pem")
    assert (p.tls, p.proxied, p.lockdown) == ("own", False, False)


def test_half_an_own_certificate_is_refused():
    with pytest.raises(tlsplan.EdgeConfigError, match="tls_key: give both"):
        plan(tls_certificate="/c.pem")


def test_origin_pulls_need_cloudflare_s_ca():
    with pytest.raises(tlsplan.EdgeConfigError, match="origin_pull_ca"):
        plan(cloudflare_zone="example.com", authenticated_origin_pulls=True)


def test_public_addresses_come_from_the_variables_the_address_or_the_host():
    v = variables()
    assert tlsplan.public_addresses("192.0.2.5", v, {"ipv4": "10.0.0.1"}) == ("192.0.2.5", None)
    assert tlsplan.public_addresses("web1.lan", v, {"ipv4": "192.0.2.9", "ipv6": "2001:db8::9"}) == \
        ("192.0.2.9", "2001:db8::9")
    assert tlsplan.public_addresses("web1.lan", variables(public_ipv4="198.51.100.1"), {}) == ("198.51.100.1", None)
    with pytest.raises(tlsplan.EdgeConfigError, match="set public_ipv4"):
        tlsplan.public_addresses("web1.lan", v, {})


def test_the_probe_reports_routed_addresses_and_only_global_ipv6():
    out = "os=debian 12\nipv4=192.0.2.7\nipv6=fd00::7\n"
    parsed = HostInfo().parse(out, 0)
    assert parsed["ipv4"] == "192.0.2.7" and parsed["ipv6"] == ""
    assert HostInfo().parse("ipv6=2606:4700::1\n", 0)["ipv6"] == "2606:4700::1"


# ----- own certificates -----------------------------------------------------------------

def _self_signed(tmp_path, names, days=30, key_mode=0o600):
    key = rsa.generate_private_key(65537, 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(7)
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(key_mode)
    return str(cert_file), str(key_file)


def test_an_own_certificate_is_read_and_its_key_kept_secret(tmp_path):
    cert_file, key_file = _self_signed(tmp_path, ["jupyter.example.com"])
    certificate_pem, key = tlsplan.read_own_certificate(plan(allow_plain_http=True), cert_file, key_file)
    assert certificate_pem.startswith("-----BEGIN CERTIFICATE-----") and certificate_pem.endswith("\n")
    assert isinstance(key, Secret) and "PRIVATE KEY" not in repr(key)


def test_an_own_certificate_for_another_name_is_refused(tmp_path):
    cert_file, key_file = _self_signed(tmp_path, ["other.example.com"])
    with pytest.raises(tlsplan.EdgeConfigError, match="covers other.example.com, not jupyter.example.com"):
        tlsplan.read_own_certificate(plan(allow_plain_http=True), cert_file, key_file)


def test_a_wildcard_covers_the_name(tmp_path):
    cert_file, key_file = _self_signed(tmp_path, ["*.example.com"])
    tlsplan.read_own_certificate(plan(allow_plain_http=True), cert_file, key_file)


def test_a_key_others_can_read_is_refused(tmp_path):
    cert_file, key_file = _self_signed(tmp_path, ["jupyter.example.com"], key_mode=0o644)
    with pytest.raises(tlsplan.EdgeConfigError, match="chmod 600"):
        tlsplan.read_own_certificate(plan(allow_plain_http=True), cert_file, key_file)


def test_a_key_of_another_certificate_is_refused(tmp_path):
    cert_file, _ = _self_signed(tmp_path, ["jupyter.example.com"])
    (tmp_path / "other").mkdir()
    _, other_key = _self_signed(tmp_path / "other", ["jupyter.example.com"])
    with pytest.raises(tlsplan.EdgeConfigError, match="is not the key of"):
        tlsplan.read_own_certificate(plan(allow_plain_http=True), cert_file, other_key)


def test_the_installed_pair_is_split_from_one_command_output():
    certificate, key = tlsplan.parse_current_certificate("CERT\n%%jupyterfab%%\nKEY\n")
    assert certificate == "CERT\n" and key.reveal() == "KEY\n"
    assert tlsplan.parse_current_certificate("%%jupyterfab%%\n") == (None, None)


# ----- the NGINX site each plan renders ---------------------------------------------------

def render_site(**overrides):
    v = {**variables(**overrides), **serving.template_vars()}
    v.update(tlsplan.template_vars(tlsplan.plan_for("web1", v)))
    v["cloudflare_ranges"] = ["173.245.48.0/20", "2400:cb00::/32"] if v["origin_lockdown_enabled"] else []
    return templates.render_template(PROJECT / "files", "nginx/jupyter.conf.j2", v)


def test_every_site_proxies_to_jupyters_socket_and_never_to_a_port():
    for site in (render_site(), render_site(cloudflare_zone="example.com")):
        upstreams = re.findall(r"upstream (\S+) \{\s*server (\S+);\s*\}", site)
        assert upstreams == [("jupyter", "unix:/var/lib/jupyterfab/socket/jupyter.sock")], upstreams
        assert set(re.findall(r"proxy_pass (\S+);", site)) == {"http://jupyter"}
        assert "127.0.0.1" not in site and "8888" not in site


def test_plain_http_site_has_no_tls_and_no_lockdown():
    site = render_site(allow_plain_http=True)
    assert "listen 443" not in site and "geo " not in site and "return 301" not in site
    assert "proxy_pass http://jupyter;" in site


def test_other_names_get_a_catch_all_that_never_proxies():
    for site, ports in ((render_site(), ["80"]), (render_site(cloudflare_zone="example.com"), ["80", "443"])):
        catch_all = [block for block in site.split("\nserver {")[1:] if "server_name _;" in block]
        assert [re.search(r"listen (\d+)", b).group(1) for b in catch_all] == ports
        assert all("return 444;" in b and "proxy_pass" not in b for b in catch_all)
        assert ("ssl_reject_handshake on;" in catch_all[-1]) == ("443" in ports)


def test_the_login_throttle_follows_the_inventory():
    site = render_site(login_rate_per_minute=3, login_burst=0)
    assert "rate=3r/m;" in site and "limit_req zone=jupyterfab_login burst=0 nodelay;" in site


def test_tls_site_redirects_http_and_offers_modern_protocols_only():
    site = render_site(cloudflare_zone="example.com")
    assert "return 301 https://jupyter.example.com$request_uri;" in site
    assert "listen 443 ssl;" in site and "ssl_protocols TLSv1.2 TLSv1.3;" in site
    assert "ssl_certificate_key /etc/ssl/jupyterfab/jupyter.example.com/key.pem;" in site


def test_lockdown_tests_the_connecting_address_not_the_forwarded_one():
    site = render_site(cloudflare_zone="example.com")
    assert re.search(r"geo \$realip_remote_addr \$jupyterfab_via_cloudflare \{\s*default 0;\s*"
                     r"173\.245\.48\.0/20 1;\s*2400:cb00::/32 1;\s*\}", site)
    # both servers (80 and 443) refuse others and take the visitor from CF-Connecting-IP
    assert site.count("if ($jupyterfab_via_cloudflare = 0)") == 2
    assert site.count("real_ip_header CF-Connecting-IP;") == 2
    assert site.count("set_real_ip_from 173.245.48.0/20;") == 2


def test_lockdown_off_keeps_tls_without_the_address_check():
    site = render_site(cloudflare_zone="example.com", origin_lockdown=False)
    assert "listen 443 ssl;" in site and "geo " not in site and "real_ip_header" not in site


def test_origin_pulls_demand_cloudflare_s_client_certificate():
    site = render_site(cloudflare_zone="example.com", authenticated_origin_pulls=True,
                       origin_pull_ca="/ca.pem")
    assert "ssl_verify_client on;" in site
    assert "ssl_client_certificate /etc/ssl/jupyterfab/cloudflare-origin-pull-ca.pem;" in site


# ----- the session's steps, against the stand-in ------------------------------------------

@pytest.fixture
def token_file(standin, tmp_path):
    """A token with every permission, in a 0600 file as the deploy demands."""
    token = tmp_path / "token"
    token.write_text(standin.add_token())
    token.chmod(0o600)
    return str(token)


def test_before_states_issues_a_certificate_and_fetches_ranges_once(standin, zone_id, tmp_path, token_file):
    session = tlsplan.EdgeSession(ip_cache=tmp_path / "ips.json", token_file=token_file)
    p = plan(cloudflare_zone="example.com", cloudflare_api_url=standin.base_url)
    first, second = tlsplan.template_vars(p), tlsplan.template_vars(p)
    try:
        results = session.before_states(p, first, lambda: (None, None))
        assert [r.function for r in results] == ["cloudflare.origin_certificate", "cloudflare.ips"]
        assert first["tls_certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")
        assert "173.245.48.0/20" in first["cloudflare_ranges"]
        # the next host: its certificate is current, the ranges are not fetched again
        standin.reset_counts()
        again = session.before_states(p, second, lambda: (first["tls_certificate_pem"], first["tls_key_pem"]))
        assert again[0].changes == {} and "kept" in again[0].comment
        assert "fetched once for this deploy" in again[1].comment
        assert second["tls_key_pem"].reveal() == first["tls_key_pem"].reveal()
        assert standin.request_counts.total() == 0   # zone id, certificate and ranges: all known
    finally:
        session.close()


def test_the_first_host_reports_the_ranges_fetch_even_when_the_prefetch_made_it(standin, zone_id, tmp_path,
                                                                                token_file):
    session = tlsplan.EdgeSession(ip_cache=tmp_path / "ips.json", token_file=token_file)
    p = plan(cloudflare_zone="example.com", cloudflare_api_url=standin.base_url)
    try:
        session.prefetch([p])
        deadline = time.monotonic() + 30
        while not (tmp_path / "ips.json").exists() and time.monotonic() < deadline:   # the prefetch's fetch
            time.sleep(0.01)
        first = session.before_states(p, tlsplan.template_vars(p), lambda: (None, None))[1]
        again = session.before_states(p, tlsplan.template_vars(p), lambda: (None, None))[1]
    finally:
        session.close()
    # the fetch wrote the cache: the first host says so (a dry run would say it would)
    assert "into the cache" in first.comment and first.changes["etag"]["new"], first.comment
    assert "fetched once for this deploy" in again.comment and again.changes == {}


def test_a_certificate_without_its_key_is_replaced(standin, zone_id, tmp_path, token_file):
    session = tlsplan.EdgeSession(ip_cache=tmp_path / "ips.json", token_file=token_file)
    p = plan(cloudflare_zone="example.com", cloudflare_api_url=standin.base_url, origin_lockdown=False)
    v = tlsplan.template_vars(p)
    try:
        session.before_states(p, v, lambda: (None, None))
        old = v["tls_certificate_pem"]
        results = session.before_states(p, v, lambda: (old, None))
        assert "issued a new Origin CA certificate" in results[0].comment
        assert v["tls_certificate_pem"] != old
    finally:
        session.close()


def test_zone_settings_are_decided_once_per_zone(standin, zone_id, tmp_path, token_file):
    session = tlsplan.EdgeSession(ip_cache=tmp_path / "ips.json", token_file=token_file)
    p = plan(cloudflare_zone="example.com", cloudflare_api_url=standin.base_url)
    try:
        first = session.after_states(p, "192.0.2.1", None)
        second = session.after_states(plan(cloudflare_zone="example.com", server_name="lab.example.com",
                                           cloudflare_api_url=standin.base_url), "192.0.2.2", None)
    finally:
        session.close()
    assert sum(1 for r in first if r.function == "cloudflare.zone_setting") == 4
    assert [r.function for r in second] == ["cloudflare.dns_record"]
    assert {r["name"]: r["content"] for r in standin.records(zone_id)} == \
        {"jupyter.example.com": "192.0.2.1", "lab.example.com": "192.0.2.2"}


def test_a_dry_run_writes_nothing_and_predicts(standin, zone_id, tmp_path, token_file):
    session = tlsplan.EdgeSession(dry_run=True, ip_cache=tmp_path / "ips.json", token_file=token_file)
    p = plan(cloudflare_zone="example.com", cloudflare_api_url=standin.base_url)
    v = tlsplan.template_vars(p)
    try:
        before = session.before_states(p, v, lambda: (None, None))
        after = session.after_states(p, "192.0.2.1", None)
    finally:
        session.close()
    assert standin.write_count == 0 and not (tmp_path / "ips.json").exists()
    assert v["tls_certificate_pem"] == tlsplan.PLACEHOLDER_CERTIFICATE
    assert all(r.ok is None for r in before + after if r.changes)
    assert any(r.ok is None and "would create" in r.comment for r in after)


def test_an_own_certificate_left_from_before_is_replaced_by_an_origin_ca_one(standin, zone_id, tmp_path, token_file):
    """Switching from tls_certificate to Cloudflare: the user's certificate is not mistaken
    for an Origin CA one just because it covers the name and has time left."""
    cert_file, key_file = _self_signed(tmp_path, ["jupyter.example.com"], days=300)
    session = tlsplan.EdgeSession(ip_cache=tmp_path / "ips.json", token_file=token_file)
    p = plan(cloudflare_zone="example.com", cloudflare_api_url=standin.base_url, origin_lockdown=False)
    v = tlsplan.template_vars(p)
    own = open(cert_file).read()
    try:
        [result] = session.before_states(p, v, lambda: (own, Secret(open(key_file).read())))
    finally:
        session.close()
    assert "not a Cloudflare Origin CA certificate" in result.comment
    assert v["tls_certificate_pem"] != own


def test_the_probe_brings_the_installed_certificate_in_the_same_round_trip(tmp_path):
    """The real probe script, run by the local shell: no extra command for the certificate."""
    import subprocess
    certificate, key = tmp_path / "c.crt", tmp_path / "c.key"
    certificate.write_text("-----BEGIN CERTIFICATE-----\nAAA=\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nBBB=\n-----END PRIVATE KEY-----\n")
    probe = HostInfo(config_file=str(tmp_path / "none.py"), tls_files=(str(certificate), str(key)))
    out = subprocess.run(["/bin/sh", "-c", probe.command().text], capture_output=True, text=True).stdout
    info = probe.parse(out, 0)
    installed_certificate, installed_key = info["installed_certificate"]
    assert installed_certificate == certificate.read_text()
    assert isinstance(installed_key, Secret) and installed_key.reveal() == key.read_text()
    assert not any("AAA" in k or "BBB" in k for k in info)   # PEM lines ("AAA=") are not read as key=value
    assert "BBB" not in str(info)                              # the key shows as ***
    without = HostInfo(config_file=str(tmp_path / "none.py"))
    assert without.parse(subprocess.run(["/bin/sh", "-c", without.command().text], capture_output=True,
                                        text=True).stdout, 0)["installed_certificate"] == (None, None)


def test_the_probe_asks_the_routes_for_addresses_only_when_told_to(tmp_path, monkeypatch):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "ip").write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/asked\n"
                              "case $1 in -4) echo '1.1.1.1 via 10.0.0.1 dev eth0 src 192.0.2.44 uid 0';;\n"
                              "-6) echo '2606:4700:4700::1111 from :: dev eth0 src 2606:4700::44 metric 1';; esac\n")
    (stubs / "ip").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")
    probe = HostInfo(config_file=str(tmp_path / "none.py"), addresses=False)
    assert probe.parse(LocalRunner().run(probe.command()).stdout, 0)["ipv4"] == ""
    assert not (tmp_path / "asked").exists()
    probe = HostInfo(config_file=str(tmp_path / "none.py"))
    parsed = probe.parse(LocalRunner().run(probe.command()).stdout, 0)
    assert (parsed["ipv4"], parsed["ipv6"]) == ("192.0.2.44", "2606:4700::44")
