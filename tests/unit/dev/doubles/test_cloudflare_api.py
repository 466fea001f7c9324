"""The Cloudflare stand-in itself: it must refuse what Cloudflare refuses, or tests lie."""

import os
import signal
import subprocess
import sys

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jupyterfab.dev.doubles.cloudflare_api import ApiError, CloudflareStandIn
from jupyterfab.stack.front import cloudflare as cf

DOMAIN = "example.com"     # the zone of conftest's zone_id fixture, on conftest's standin


@pytest.fixture
def http(standin):
    """Raw HTTP with a valid token, to send what the SDK never would."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {standin.add_token()}"

    def send(method, path, **kwargs):
        response = session.request(method, standin.base_url + path, timeout=5, **kwargs)
        return response.status_code, response.json()
    yield send
    session.close()


def ecc_csr_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def first_error(body):
    assert body["success"] is False and body["result"] is None
    return body["errors"][0]


def test_unknown_path_is_404_and_wrong_method_is_405(standin, http):
    status, body = http("GET", "/zones/abc/workers")
    assert status == 404 and first_error(body)["code"] == 7000
    status, body = http("DELETE", "/zones")
    assert status == 405 and first_error(body)["code"] == 7001


def test_query_parameters_are_checked_against_the_schema(standin, zone_id, http):
    status, body = http("GET", "/zones", params={"per_page": 500})  # the schema's maximum is 50
    assert status == 400 and "per_page" in first_error(body)["message"]
    status, body = http("GET", "/zones", params={"per_page": 50})
    assert status == 200 and body["result_info"]["per_page"] == 50


def test_missing_or_unknown_credentials(standin, zone_id):
    status = requests.get(standin.base_url + "/zones", timeout=5).status_code
    assert status == 400
    response = requests.get(standin.base_url + "/zones", timeout=5,
                            headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and first_error(response.json())["code"] == 1000
    assert requests.get(standin.base_url + "/ips", timeout=5).status_code == 200  # public


@pytest.mark.parametrize("record, message", [
    ({"type": "A", "name": "x", "content": "198.18.0.1"}, "ttl is required"),
    ({"type": "A", "name": "x", "content": "198.18.0", "ttl": 1}, "ipv4"),
    ({"type": "A", "name": "x", "content": "2001:db8::1", "ttl": 1}, "ipv4"),
    ({"type": "AAAA", "name": "x", "content": "198.18.0.1", "ttl": 1}, "ipv6"),
    ({"type": "A", "name": "x", "content": "198.18.0.1", "ttl": 300, "proxied": True}, "ttl 1"),
    ({"type": "A", "name": "x", "content": "198.18.0.1", "ttl": 5}, "Request body"),
    ({"type": "TXT", "name": "x", "content": "hi", "ttl": 1, "proxied": True}, "cannot be proxied"),
    ({"type": "A", "name": "x", "ttl": 1}, "content"),
])
def test_dns_records_cloudflare_would_reject_are_rejected(standin, zone_id, http, record, message):
    status, body = http("POST", f"/zones/{zone_id}/dns_records", json=record)
    assert status == 400
    assert message in first_error(body)["message"]
    assert standin.records(zone_id) == []


def test_a_record_next_to_a_cname_and_identical_records_are_rejected(standin, zone_id, http):
    standin.add_record(zone_id, "CNAME", "www.example.com", "example.net")
    status, body = http("POST", f"/zones/{zone_id}/dns_records",
                        json={"type": "A", "name": "www", "content": "198.18.0.1", "ttl": 1})
    assert status == 400 and first_error(body)["code"] == 81053

    record = {"type": "A", "name": "jupyter", "content": "198.18.0.1", "ttl": 1}
    assert http("POST", f"/zones/{zone_id}/dns_records", json=record)[0] == 200
    status, body = http("POST", f"/zones/{zone_id}/dns_records", json=record)
    assert status == 400 and first_error(body)["code"] == 81058


def test_relative_names_are_completed_with_the_zone(standin, zone_id, http):
    status, body = http("POST", f"/zones/{zone_id}/dns_records",
                        json={"type": "A", "name": "jupyter", "content": "198.18.0.1", "ttl": 1})
    assert status == 200 and body["result"]["name"] == "jupyter.example.com"


def test_patch_without_proxied_turns_the_proxy_off(standin, zone_id, http):
    record_id = standin.add_record(zone_id, "A", "jupyter.example.com", "198.18.0.1", proxied=True)
    status, body = http("PATCH", f"/zones/{zone_id}/dns_records/{record_id}",
                        json={"type": "A", "name": "jupyter.example.com", "content": "198.18.0.2",
                              "ttl": 1})
    assert status == 200 and body["result"]["proxied"] is False


def test_lists_page_and_end_with_an_empty_page(standin, zone_id, http):
    for n in range(7):
        standin.add_record(zone_id, "A", f"h{n}.example.com", f"198.18.0.{n}")
    pages = [http("GET", f"/zones/{zone_id}/dns_records", params={"per_page": 3, "page": p})[1]
             for p in (1, 2, 3, 4)]
    assert [len(p["result"]) for p in pages] == [3, 3, 1, 0]
    assert pages[0]["result_info"] == {"page": 1, "per_page": 3, "count": 3, "total_count": 7,
                                       "total_pages": 3}
    names = [r["name"] for p in pages for r in p["result"]]
    assert len(set(names)) == 7


def test_zone_setting_values_are_checked_per_setting(standin, zone_id, http):
    status, body = http("PATCH", f"/zones/{zone_id}/settings/min_tls_version", json={"value": "1.5"})
    assert status == 400 and "'1.5' is not one of" in first_error(body)["message"]
    status, body = http("PATCH", f"/zones/{zone_id}/settings/no_such_setting", json={"value": "on"})
    assert status == 400
    status, body = http("PATCH", f"/zones/{zone_id}/settings/min_tls_version", json={"value": "1.3"})
    assert status == 200 and standin.setting(zone_id, "min_tls_version") == "1.3"


def test_origin_ca_refuses_a_key_of_the_wrong_type(standin, zone_id, http):
    pem = ecc_csr_pem()
    status, body = http("POST", "/certificates", json={
        "csr": pem, "hostnames": ["jupyter.example.com"], "request_type": "origin-rsa",
        "requested_validity": 7})
    assert status == 400 and "not RSA" in first_error(body)["message"]
    status, _ = http("POST", "/certificates", json={
        "csr": pem, "hostnames": ["jupyter.example.com"], "request_type": "origin-ecc",
        "requested_validity": 8})  # not one of the validities Cloudflare offers
    assert status == 400


def test_faults_answer_the_next_requests_and_everything_is_counted(standin, zone_id, http):
    standin.inject_fault(429, count=2, method="GET", retry_after=0.5)
    statuses = [http("GET", "/zones")[0] for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert http("POST", f"/zones/{zone_id}/dns_records",
                json={"type": "A", "name": "x", "content": "198.18.0.1", "ttl": 1})[0] == 200
    assert standin.request_counts == {"GET": 3, "POST": 1} and standin.write_count == 1


def test_a_response_that_violates_the_schema_is_caught(standin, zone_id, http, monkeypatch):
    # The safety net under every other test: drift from the contract answers 500.
    monkeypatch.setattr(standin, "_op_zones_get", lambda call: ([{"id": "x", "name": 7}], None))
    status, body = http("GET", "/zones")
    assert status == 500 and "violates the schema" in first_error(body)["message"]
    assert len(standin.response_errors) == 1
    with pytest.raises(ApiError, match="outside Cloudflare's schema"):   # as the with block ends
        standin.check_responses()
    standin.response_errors.clear()


def test_cli_serves_keeps_state_and_exports_the_ca(tmp_path):
    state, token_file, ca = tmp_path / "state.json", tmp_path / "token", tmp_path / "ca.pem"
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterfab.dev.doubles.cloudflare_api", "--port", "0",
         "--state", str(state), "--zone", DOMAIN, "--token-file", str(token_file),
         "--ca-cert-out", str(ca)],
        stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().rsplit(" ", 1)[1].strip()
        with cf.connect(token_file=token_file, base_url=base_url) as api:
            [created] = cf.ensure_dns(api, DOMAIN, "198.18.0.11")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

    assert created.changes["created"]["content"] == "198.18.0.11"
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    assert os.stat(state).st_mode & 0o777 == 0o600
    # Started again from its state file, it has the record, the token and the same CA.
    with CloudflareStandIn(state_file=state) as restarted:
        assert restarted.ca_certificate_pem == ca.read_text()
        with cf.connect(token_file=token_file, base_url=restarted.base_url) as api:
            [again] = cf.ensure_dns(api, DOMAIN, "198.18.0.11")
        assert again.changes == {} and restarted.write_count == 0


def test_a_crash_in_the_stand_in_is_an_answer_not_a_dropped_connection(standin, zone_id, http,
                                                                         monkeypatch):
    def broken(call):
        raise KeyError("bug")
    monkeypatch.setattr(standin, "_op_zones_get", broken)
    status, body = http("GET", "/zones")
    assert status == 500 and "stand-in crashed" in first_error(body)["message"]
    assert standin.response_errors
    standin.response_errors.clear()


def test_an_origin_ca_certificate_is_read_and_revoked_by_id_and_an_unknown_id_is_404(standin, zone_id, http):
    status, body = http("POST", "/certificates", json={
        "csr": ecc_csr_pem(), "hostnames": ["jupyter.example.com"],
        "request_type": "origin-ecc", "requested_validity": 7})
    assert status == 200, body
    made = body["result"]["id"]
    status, body = http("GET", f"/certificates/{made}")
    assert status == 200 and body["result"]["hostnames"] == ["jupyter.example.com"]
    status, body = http("DELETE", f"/certificates/{made}", json={})    # the schema wants a body
    assert status == 200 and body["result"]["id"] == made and body["result"]["revoked_at"]
    assert http("GET", "/certificates", params={"zone_id": zone_id})[1]["result"] == []
    for method, body in (("GET", None), ("DELETE", {})):
        status, body = http(method, "/certificates/" + "0" * 32, json=body)
        assert status == 404 and first_error(body)["message"] == "Certificate not found", body
