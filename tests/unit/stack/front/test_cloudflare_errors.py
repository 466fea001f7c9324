"""Token handling and API failures: 401, 403, 429, 5xx, unknown zones, and secrecy."""

import logging
import os

import pytest

from jupyterfab.dev.doubles.cloudflare_api import ALL_PERMISSIONS
from jupyterfab.engine.shell import Secret
from jupyterfab.stack.front import cloudflare as cf

DOMAIN = "example.com"
HOST = "jupyter.example.com"
FAST = 0.01  # Retry-After seconds sent with injected faults, so SDK retries don't slow the tests


def connect(standin, permissions=ALL_PERMISSIONS, **kwargs):
    return cf.connect(standin.add_token(permissions), base_url=standin.base_url, **kwargs)


# ----- token sources -----------------------------------------------------------------

def write_token_file(tmp_path, mode, value="file-token-value"):
    path = tmp_path / "cloudflare.token"
    path.write_text(value + "\n")
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_token_file_owner_only_is_read(tmp_path, mode):
    token = cf.load_token(write_token_file(tmp_path, mode))
    assert token.reveal() == "file-token-value"
    assert "file-token-value" not in repr(token) + str(token)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_token_file_open_to_group_or_others_is_refused(tmp_path, mode):
    path = write_token_file(tmp_path, mode)
    with pytest.raises(cf.TokenError) as caught:
        cf.load_token(path)
    message = str(caught.value)
    assert f"{mode:04o}" in message and "0600 or stricter" in message
    assert "file-token-value" not in message


def test_token_comes_from_the_environment_without_a_file(monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "  env-token-value\n")
    assert cf.load_token().reveal() == "env-token-value"


def test_no_token_anywhere_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    with pytest.raises(cf.TokenError, match="CLOUDFLARE_API_TOKEN.*--cloudflare-token-file"):
        cf.load_token()
    with pytest.raises(cf.TokenError, match="does not exist"):
        cf.load_token(tmp_path / "missing")


def test_connect_uses_the_environment_token(standin, zone_id, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", standin.add_token())
    with cf.connect(base_url=standin.base_url) as api:
        assert api.zone_id(DOMAIN) == zone_id


def test_environment_api_key_does_not_replace_the_token(standin, zone_id, monkeypatch):
    # The SDK would send X-Auth-Key/X-Auth-Email instead of the token if left to itself.
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "legacy-global-key")
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "someone@example.com")
    with connect(standin) as api:
        assert api.zone_id(DOMAIN) == zone_id


# ----- 401 ---------------------------------------------------------------------------

def test_unknown_token_fails_verification_with_401(standin, zone_id):
    with pytest.raises(cf.TokenError, match="HTTP 401") as caught:
        cf.connect("not-a-real-token", base_url=standin.base_url)
    assert "not-a-real-token" not in str(caught.value)


def test_disabled_token_is_refused(standin, zone_id):
    token = standin.add_token(status="disabled")
    with pytest.raises(cf.TokenError, match="disabled, not active"):
        cf.connect(token, base_url=standin.base_url)


def test_401_during_a_run_is_a_token_error(standin, zone_id):
    with connect(standin) as api:
        standin.inject_fault(401)
        with pytest.raises(cf.TokenError, match="invalid, expired or revoked"):
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")
    assert standin.records(zone_id) == []


# ----- 403 ---------------------------------------------------------------------------

def test_missing_dns_write_names_the_permission_and_leaves_no_partial_state(standin, zone_id):
    standin.add_record(zone_id, "A", HOST, "198.18.0.10", proxied=True)
    before = standin.records(zone_id)
    with connect(standin, {"Zone Read", "DNS Read"}) as api:
        standin.reset_counts()
        with pytest.raises(cf.MissingPermission) as caught:
            cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11")

    assert caught.value.permission == "DNS Write"
    assert '"DNS Write"' in str(caught.value) and HOST in str(caught.value)
    assert standin.records(zone_id) == before
    # Every read came first; the first write was refused and nothing followed it.
    methods = [r.method for r in standin.requests]
    assert methods[-1] == "PATCH" and methods.count("PATCH") + methods.count("POST") == 1
    assert all(m == "GET" for m in methods[:-1])


def test_dns_read_is_enough_when_nothing_needs_writing(standin, zone_id):
    standin.add_record(zone_id, "A", HOST, "198.18.0.11", proxied=True)
    with connect(standin, {"Zone Read", "DNS Read"}) as api:
        [result] = cf.ensure_dns(api, DOMAIN, "198.18.0.11")
    assert result.ok is True and result.changes == {}


def test_missing_zone_read_names_the_permission(standin, zone_id):
    with connect(standin, {"DNS Write"}) as api:
        with pytest.raises(cf.MissingPermission, match='"Zone Read"'):
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")


def test_missing_dns_read_names_the_permission(standin, zone_id):
    with connect(standin, {"Zone Read"}) as api:
        with pytest.raises(cf.MissingPermission, match='"DNS Read"'):
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")


def test_missing_zone_settings_write_changes_no_setting(standin, zone_id):
    with connect(standin, {"Zone Read", "Zone Settings Read"}) as api:
        with pytest.raises(cf.MissingPermission, match='"Zone Settings Write"') as caught:
            cf.ensure_zone_settings(api, DOMAIN)
    assert caught.value.permission == "Zone Settings Write"
    assert standin.setting(zone_id, "ssl") == "flexible"
    assert standin.setting(zone_id, "min_tls_version") == "1.0"


def test_missing_ssl_permission_for_origin_ca(standin, zone_id):
    with connect(standin, {"Zone Read"}) as api:
        with pytest.raises(cf.MissingPermission, match='"SSL and Certificates Write"'):
            cf.ensure_origin_certificate(api, HOST)
    assert standin.certificates == {}


def test_token_scoped_to_another_zone_cannot_see_this_one(standin, zone_id):
    standin.add_zone("other.org")
    token = standin.add_token(zones={"other.org"})
    with cf.connect(token, base_url=standin.base_url) as api:
        with pytest.raises(cf.ZoneNotFound, match="'example.com' not found"):
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")


# ----- missing zone -------------------------------------------------------------------

def test_unknown_zone_is_a_clear_error_and_nothing_is_written(standin, zone_id):
    with connect(standin) as api:
        with pytest.raises(cf.ZoneNotFound) as caught:
            cf.ensure_dns(api, "example.net", "198.18.0.11")
    assert caught.value.zone == "example.net"
    assert "'example.net' not found" in str(caught.value)
    assert standin.write_count == 0


# ----- 429 and 5xx: retried by the SDK -------------------------------------------------

@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_failures_are_retried_until_success(standin, zone_id, status):
    with connect(standin, max_retries=2) as api:
        standin.reset_counts()
        standin.inject_fault(status, count=2, method="POST", retry_after=FAST)
        [result] = cf.ensure_dns(api, DOMAIN, "198.18.0.11")

    assert result.ok is True
    posts = [r.status for r in standin.requests if r.method == "POST"]
    assert posts == [status, status, 200]
    assert [r["content"] for r in standin.records(zone_id)] == ["198.18.0.11"]


def test_rate_limit_that_outlasts_the_retries_is_reported(standin, zone_id):
    with connect(standin, max_retries=1) as api:
        standin.inject_fault(429, count=5, retry_after=FAST)
        with pytest.raises(cf.CloudflareError, match="HTTP 429, 1 retries"):
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")
    assert standin.records(zone_id) == []


def test_server_error_that_outlasts_the_retries_is_reported(standin, zone_id):
    with connect(standin, max_retries=2) as api:
        standin.inject_fault(500, count=3, retry_after=FAST)
        with pytest.raises(cf.CloudflareError, match="HTTP 500, 2 retries"):
            cf.ensure_zone_settings(api, DOMAIN)


def test_unreachable_api_is_reported(standin):
    token = standin.add_token()
    base_url = standin.base_url
    standin.stop()
    with pytest.raises(cf.CloudflareError, match="could not reach the Cloudflare API"):
        cf.connect(token, base_url=base_url, max_retries=0, timeout=2)


# ----- the token never shows --------------------------------------------------------------

def test_token_never_appears_in_output_logs_or_errors(standin, zone_id, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    token = standin.add_token({"Zone Read", "DNS Read"})
    seen = []
    api = cf.connect(token, base_url=standin.base_url, max_retries=1)
    seen += [repr(api), str(api)]
    for action in (
        lambda: cf.ensure_dns(api, DOMAIN, "198.18.0.11"),                  # 403
        lambda: cf.ensure_dns(api, "missing.example", "198.18.0.11"),       # unknown zone
        lambda: (standin.inject_fault(401), cf.ensure_dns(api, DOMAIN, "198.18.0.11")),
        lambda: (standin.inject_fault(500, count=2, retry_after=FAST),
                 cf.ensure_dns(api, DOMAIN, "198.18.0.11")),
    ):
        with pytest.raises(cf.CloudflareError) as caught:
            action()
        seen += [str(caught.value), repr(caught.value), str(caught.value.__cause__),
                 str(caught.value.__context__)]
    seen += [repr(r) for r in cf.ensure_dns(api, DOMAIN, "198.18.0.11", dry_run=True)]
    api.close()
    token_file = tmp_path / "token"
    token_file.write_text(token)
    os.chmod(token_file, 0o644)
    with pytest.raises(cf.TokenError) as unsafe:
        cf.load_token(token_file)
    seen.append(str(unsafe.value))
    seen += [repr(Secret(token)), str(cf.OriginCertificate("pem", Secret(token), (), None))]

    captured = capsys.readouterr()
    everything = "\n".join(seen + [captured.out, captured.err, caplog.text])
    assert "DNS Write" in everything and "HTTP 401" in everything  # the errors did happen
    assert len(caplog.records) > 0
    assert token not in everything


def test_credentials_cloudflare_cannot_parse_are_a_token_error(standin, zone_id):
    # Cloudflare answers an Authorization header it cannot parse with 400, not 401.
    with connect(standin) as api:
        standin.inject_fault(400, code=6003, message="Invalid request headers")
        with pytest.raises(cf.TokenError, match="Invalid request headers"):
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")
        standin.inject_fault(400, code=9005, message="Content for A record is invalid.")
        with pytest.raises(cf.CloudflareError, match="HTTP 400") as other:
            cf.ensure_dns(api, DOMAIN, "198.18.0.11")
        assert not isinstance(other.value, cf.TokenError)
