"""Zone settings, authenticated origin pulls, Origin CA certificates and the /ips cache."""

import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from jupyterfab.stack.front import cloudflare as cf

DOMAIN = "example.com"
HOST = "jupyter.example.com"
FAST = 0.01


# ----- zone settings -------------------------------------------------------------------

def test_zone_settings_are_patched_only_where_they_differ(standin, zone_id, api):
    standin.set_setting(zone_id, "ssl", "strict")      # already right
    standin.set_setting(zone_id, "websockets", "on")   # already right
    standin.reset_counts()

    results = cf.ensure_zone_settings(api, DOMAIN)

    patched = sorted(r.path.rsplit("/", 1)[1] for r in standin.requests if r.method == "PATCH")
    assert patched == ["always_use_https", "min_tls_version"]
    assert {k: standin.setting(zone_id, k) for k in cf.ZONE_SETTINGS} == cf.ZONE_SETTINGS
    by_setting = {r.name.split()[3]: r for r in results}
    assert by_setting["ssl"].changes == {} and by_setting["ssl"].comment == "ssl is already 'strict'"
    assert by_setting["min_tls_version"].changes == {"min_tls_version": {"old": "1.0", "new": "1.2"}}


def test_zone_settings_second_run_sends_no_write(standin, zone_id, api):
    cf.ensure_zone_settings(api, DOMAIN)
    standin.reset_counts()

    results = cf.ensure_zone_settings(api, DOMAIN)

    assert standin.write_count == 0
    assert all(r.ok is True and r.changes == {} for r in results)


def test_zone_settings_dry_run_predicts_without_writing(standin, zone_id, api):
    standin.reset_counts()

    results = cf.ensure_zone_settings(api, DOMAIN, dry_run=True)

    assert standin.write_count == 0
    assert standin.setting(zone_id, "ssl") == "flexible"
    predicted = {r.name.split()[3]: r.ok for r in results}
    assert predicted == {"ssl": None, "always_use_https": None, "min_tls_version": None,
                         "websockets": True}
    assert "would change ssl from 'flexible' to 'strict'" in [r.comment for r in results]


def test_a_setting_value_cloudflare_does_not_take_is_refused(standin, zone_id, api):
    with pytest.raises(cf.CloudflareError, match="HTTP 400.*not one of"):
        cf.ensure_zone_settings(api, DOMAIN, {"ssl": "very-strict"})
    assert standin.setting(zone_id, "ssl") == "flexible"


# ----- authenticated origin pulls ---------------------------------------------------------

def test_authenticated_origin_pulls_on_then_nothing_to_do(standin, zone_id, api):
    assert cf.ensure_authenticated_origin_pulls(api, DOMAIN, dry_run=True).ok is None
    assert standin.origin_pulls[zone_id] is False and standin.write_count == 0

    done = cf.ensure_authenticated_origin_pulls(api, DOMAIN)
    assert standin.origin_pulls[zone_id] is True
    assert done.changes == {"enabled": {"old": False, "new": True}}

    standin.reset_counts()
    again = cf.ensure_authenticated_origin_pulls(api, DOMAIN)
    assert (again.changes, standin.write_count) == ({}, 0)

    cf.ensure_authenticated_origin_pulls(api, DOMAIN, enabled=False)
    assert standin.origin_pulls[zone_id] is False


# ----- Origin CA certificate --------------------------------------------------------------

def verify_chain(ca_pem, certificate_pem, hostname):
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName(hostname))
    return verifier.verify(leaf, [])


def test_origin_certificate_is_issued_and_verifies_against_the_test_ca(standin, zone_id, api):
    result, issued = cf.ensure_origin_certificate(api, HOST, validity_days=90)

    assert result.ok is True and "issued a new Origin CA certificate" in result.comment
    chain = verify_chain(standin.ca_certificate_pem, issued.certificate_pem, HOST)
    assert len(chain) == 2
    with pytest.raises(VerificationError):
        verify_chain(standin.ca_certificate_pem, issued.certificate_pem, "www.example.com")
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [HOST]
    assert issued.hostnames == (HOST,)
    lifetime = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=89) < lifetime <= dt.timedelta(days=90)
    key = serialization.load_pem_private_key(issued.private_key_pem.reveal().encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.public_key() == leaf.public_key()
    assert "PRIVATE KEY" not in repr(issued) + repr(result)
    [stored] = standin.certificates.values()
    assert stored["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert "PRIVATE" not in json.dumps(stored)  # only the CSR went to Cloudflare


def test_origin_certificate_with_an_ecc_key(standin, zone_id, api):
    _, issued = cf.ensure_origin_certificate(api, HOST, key_type="ecc", validity_days=30)
    key = serialization.load_pem_private_key(issued.private_key_pem.reveal().encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    verify_chain(standin.ca_certificate_pem, issued.certificate_pem, HOST)


def test_current_certificate_with_time_left_is_kept(standin, zone_id, api):
    _, first = cf.ensure_origin_certificate(api, HOST, validity_days=365)
    standin.reset_counts()

    result, kept = cf.ensure_origin_certificate(
        api, HOST, current_certificate_pem=first.certificate_pem,
        current_private_key_pem=first.private_key_pem)

    assert standin.request_counts["POST"] == 0
    assert (result.ok, result.changes) == (True, {})
    assert "days left): kept" in result.comment
    assert kept.certificate_pem == first.certificate_pem and kept.private_key_pem is None


def test_certificate_close_to_expiry_is_replaced(standin, zone_id, api):
    _, first = cf.ensure_origin_certificate(api, HOST, validity_days=365)
    twenty_days_before_expiry = first.expires_on - dt.timedelta(days=20)

    result, renewed = cf.ensure_origin_certificate(
        api, HOST, current_certificate_pem=first.certificate_pem, now=twenty_days_before_expiry)

    assert "not more than 30" in result.comment
    assert renewed.certificate_pem != first.certificate_pem and renewed.private_key_pem is not None
    assert len(standin.certificates) == 2

    # The threshold is the caller's: with 10 days required, 20 left is enough.
    kept_result, _ = cf.ensure_origin_certificate(
        api, HOST, current_certificate_pem=first.certificate_pem, now=twenty_days_before_expiry,
        min_days_left=10)
    assert kept_result.changes == {}


def test_certificate_for_another_hostname_or_key_is_replaced(standin, zone_id, api):
    _, www = cf.ensure_origin_certificate(api, "www.example.com")
    result, _ = cf.ensure_origin_certificate(api, HOST, current_certificate_pem=www.certificate_pem)
    assert "covers www.example.com, not jupyter.example.com" in result.comment

    _, jupyter = cf.ensure_origin_certificate(api, HOST)
    result, _ = cf.ensure_origin_certificate(api, HOST, current_certificate_pem=jupyter.certificate_pem,
                                             current_private_key_pem=www.private_key_pem)
    assert "private key does not belong" in result.comment
    assert len(standin.certificates) == 4


def test_wildcard_certificate_covers_the_host(standin, zone_id, api):
    _, wildcard = cf.ensure_origin_certificate(api, "*.example.com")
    standin.reset_counts()
    result, _ = cf.ensure_origin_certificate(api, HOST, current_certificate_pem=wildcard.certificate_pem)
    assert result.changes == {} and standin.request_counts["POST"] == 0


def test_origin_certificate_dry_run_requests_nothing(standin, zone_id, api):
    standin.reset_counts()
    result, issued = cf.ensure_origin_certificate(api, HOST, dry_run=True)
    assert (result.ok, issued, standin.write_count) == (None, None, 0)
    assert "would request a new Origin CA certificate" in result.comment


def test_certificate_for_a_hostname_outside_the_account_is_refused(standin, zone_id, api):
    with pytest.raises(cf.CloudflareError, match="not part of your account"):
        cf.ensure_origin_certificate(api, "jupyter.example.org")


# ----- /ips and its cache -------------------------------------------------------------------

def test_ips_are_fetched_then_reused_by_etag(standin, tmp_path):
    cache = tmp_path / "cache" / "cloudflare-ips.json"

    first, fetched = cf.cloudflare_ips(cache, base_url=standin.base_url)
    assert "173.245.48.0/20" in first.ipv4_cidrs and "2400:cb00::/32" in first.ipv6_cidrs
    assert json.loads(cache.read_text())["etag"] == first.etag == standin.ip_ranges["etag"]
    assert fetched.changes["etag"] == {"old": None, "new": first.etag}

    cache_text = cache.read_text()
    second, unchanged = cf.cloudflare_ips(cache, base_url=standin.base_url)
    assert second == first
    assert unchanged.changes == {} and "unchanged (etag" in unchanged.comment
    assert cache.read_text() == cache_text
    assert standin.request_counts["GET"] == 2


def test_changed_ranges_update_the_cache(standin, tmp_path):
    cache = tmp_path / "ips.json"
    cf.cloudflare_ips(cache, base_url=standin.base_url)
    new_etag = standin.set_ips(["173.245.48.0/20", "198.51.100.0/24"], ["2400:cb00::/32"])

    ranges, result = cf.cloudflare_ips(cache, base_url=standin.base_url)

    assert ranges.etag == new_etag and ranges.ipv4_cidrs == ("173.245.48.0/20", "198.51.100.0/24")
    assert result.changes["added"] == ["198.51.100.0/24"]
    assert "104.16.0.0/13" in result.changes["removed"]
    assert json.loads(cache.read_text())["etag"] == new_etag


def test_ips_dry_run_leaves_the_cache_alone(standin, tmp_path):
    cache = tmp_path / "ips.json"
    ranges, result = cf.cloudflare_ips(cache, base_url=standin.base_url, dry_run=True)
    assert result.ok is None and ranges.ipv4_cidrs and not cache.exists()


def test_unreachable_api_falls_back_to_the_cache(standin, tmp_path):
    cache = tmp_path / "ips.json"
    fetched, _ = cf.cloudflare_ips(cache, base_url=standin.base_url)

    standin.inject_fault(503, count=3, retry_after=FAST)
    during_outage, result = cf.cloudflare_ips(cache, base_url=standin.base_url, max_retries=2)
    assert during_outage == fetched
    assert "unreachable (HTTP 503)" in result.comment and "cached ranges" in result.comment

    base_url = standin.base_url
    standin.stop()
    offline, result = cf.cloudflare_ips(cache, base_url=base_url, max_retries=0, timeout=2)
    assert offline == fetched and "unreachable" in result.comment


def test_unreachable_api_without_cache_is_an_error(standin, tmp_path):
    standin.inject_fault(500, count=1, retry_after=FAST)
    with pytest.raises(cf.CloudflareError, match="no cache"):
        cf.cloudflare_ips(tmp_path / "ips.json", base_url=standin.base_url, max_retries=0)


def test_a_range_that_is_not_a_network_is_refused(standin, tmp_path):
    # The ranges end up in NGINX configuration: nothing but networks may pass.
    standin.set_ips(["173.245.48.0/20; include /etc/passwd"], ["2400:cb00::/32"])
    with pytest.raises(cf.CloudflareError, match="invalid range"):
        cf.cloudflare_ips(tmp_path / "ips.json", base_url=standin.base_url)
    assert not (tmp_path / "ips.json").exists()


def test_ips_through_an_authenticated_client(standin, zone_id, api, tmp_path):
    ranges, _ = cf.cloudflare_ips(tmp_path / "ips.json", api=api)
    assert ranges.etag == standin.ip_ranges["etag"]
