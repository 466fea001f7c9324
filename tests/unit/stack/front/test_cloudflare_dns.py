"""ensure_dns against the local Cloudflare stand-in (real HTTP through the official SDK)."""

import pytest

from jupyterfab.stack.front import cloudflare as cf

DOMAIN = "example.com"
HOST = "jupyter.example.com"


def records_named(standin, zone_id, name):
    return sorted((r["type"], r["content"], r["proxied"], r["ttl"])
                   for r in standin.records(zone_id) if r["name"] == name)


def test_creates_a_proxied_a_record(standin, zone_id, api):
    [result] = cf.ensure_dns(api, DOMAIN, "198.18.0.11")

    assert records_named(standin, zone_id, HOST) == [("A", "198.18.0.11", True, 1)]
    assert result.ok is True
    assert result.changes["created"]["content"] == "198.18.0.11"
    assert "created A jupyter.example.com -> 198.18.0.11" in result.comment
    assert standin.request_counts["POST"] == 1


def test_second_run_sends_no_write_request(standin, zone_id, api):
    cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11")
    standin.reset_counts()

    results = cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11")

    assert standin.write_count == 0
    assert standin.request_counts["GET"] > 0
    assert [r.changes for r in results] == [{}, {}]
    assert all(r.ok is True for r in results)
    assert results[0].comment == "A jupyter.example.com -> 198.18.0.11 (proxied) is already correct"


def test_updates_the_record_when_the_ip_changes(standin, zone_id, api):
    record_id = standin.add_record(zone_id, "A", HOST, "198.18.0.10", proxied=True)

    [result] = cf.ensure_dns(api, DOMAIN, "198.18.0.11")

    [record] = [r for r in standin.records(zone_id) if r["name"] == HOST]
    assert (record["id"], record["content"], record["proxied"]) == (record_id, "198.18.0.11", True)
    assert result.changes == {"content": {"old": "198.18.0.10", "new": "198.18.0.11"}}
    assert standin.request_counts["PATCH"] == 1 and standin.request_counts["POST"] == 0


def test_toggles_proxied_both_ways(standin, zone_id, api):
    standin.add_record(zone_id, "A", HOST, "198.18.0.11", proxied=True)

    [off] = cf.ensure_dns(api, DOMAIN, "198.18.0.11", proxied=False)
    assert records_named(standin, zone_id, HOST) == [("A", "198.18.0.11", False, 1)]
    assert off.changes == {"proxied": {"old": True, "new": False}}

    [on] = cf.ensure_dns(api, DOMAIN, "198.18.0.11", proxied=True)
    assert records_named(standin, zone_id, HOST) == [("A", "198.18.0.11", True, 1)]
    assert on.changes == {"proxied": {"old": False, "new": True}}


def test_changing_only_the_ip_keeps_the_proxy_on(standin, zone_id, api):
    # A PATCH without ``proxied`` turns the proxy off: the update must always send it.
    standin.add_record(zone_id, "A", HOST, "198.18.0.10", proxied=True)

    cf.ensure_dns(api, DOMAIN, "198.18.0.11")

    assert records_named(standin, zone_id, HOST) == [("A", "198.18.0.11", True, 1)]


def test_unproxied_record_keeps_its_ttl_unless_one_is_asked_for(standin, zone_id, api):
    standin.add_record(zone_id, "A", HOST, "198.18.0.11", proxied=False, ttl=300)

    [kept] = cf.ensure_dns(api, DOMAIN, "198.18.0.11", proxied=False)
    assert kept.changes == {} and standin.write_count == 0

    [changed] = cf.ensure_dns(api, DOMAIN, "198.18.0.11", proxied=False, ttl=3600)
    assert changed.changes == {"ttl": {"old": 300, "new": 3600}}
    assert records_named(standin, zone_id, HOST) == [("A", "198.18.0.11", False, 3600)]


def test_proxied_record_with_a_ttl_is_refused_before_any_request(standin, zone_id, api):
    standin.reset_counts()
    with pytest.raises(ValueError, match="ttl must be 1"):
        cf.ensure_dns(api, DOMAIN, "198.18.0.11", proxied=True, ttl=300)
    assert sum(standin.request_counts.values()) == 0


def test_invalid_addresses_are_refused_before_any_request(standin, zone_id, api):
    standin.reset_counts()
    with pytest.raises(ValueError, match="not an IPv4 address"):
        cf.ensure_dns(api, DOMAIN, "198.18.0")
    with pytest.raises(ValueError, match="not an IPv6 address"):
        cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="198.18.0.12")
    assert sum(standin.request_counts.values()) == 0


def test_creates_aaaa_when_an_ipv6_address_is_given(standin, zone_id, api):
    results = cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:DB8:0::11")

    assert records_named(standin, zone_id, HOST) == [
        ("A", "198.18.0.11", True, 1), ("AAAA", "2001:db8::11", True, 1)]
    assert [r.name for r in results] == ["cloudflare DNS A jupyter.example.com",
                                         "cloudflare DNS AAAA jupyter.example.com"]


def test_records_of_other_names_are_never_touched(standin, zone_id, api):
    others = {
        standin.add_record(zone_id, "A", "www.example.com", "203.0.113.5", proxied=True),
        standin.add_record(zone_id, "A", "example.com", "203.0.113.6"),
        standin.add_record(zone_id, "AAAA", "jupyter2.example.com", "2001:db8::99"),
        standin.add_record(zone_id, "TXT", HOST, "v=spf1 -all"),
        standin.add_record(zone_id, "A", "a.jupyter.example.com", "203.0.113.7"),
    }
    before = {r["id"]: r for r in standin.records(zone_id) if r["id"] in others}

    cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11")
    cf.ensure_dns(api, DOMAIN, "198.18.0.12", ipv6="2001:db8::12", proxied=False)

    after = {r["id"]: r for r in standin.records(zone_id) if r["id"] in others}
    assert after == before
    written = [r.path for r in standin.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]
    assert not any(record_id in path for path in written for record_id in others)


def test_finds_the_record_past_the_first_page(standin, zone_id, api):
    for n in range(120):
        standin.add_record(zone_id, "A", f"host-{n:03}.example.com", f"203.0.113.{n}")
    target = standin.add_record(zone_id, "A", HOST, "198.18.0.10", proxied=True)
    standin.reset_counts()

    [result] = cf.ensure_dns(api, DOMAIN, "198.18.0.11", per_page=50)

    listed = [r.path for r in standin.requests if r.method == "GET" and r.path.endswith("/dns_records")]
    assert len(listed) == 4  # 50 + 50 + 21 records, then the empty page that ends the listing
    assert result.changes == {"content": {"old": "198.18.0.10", "new": "198.18.0.11"}}
    assert standin.request_counts["POST"] == 0  # found on page 3, so updated, not duplicated
    assert [r for r in standin.records(zone_id) if r["id"] == target][0]["content"] == "198.18.0.11"


def test_dry_run_predicts_without_writing(standin, zone_id, api):
    standin.add_record(zone_id, "A", HOST, "198.18.0.10", proxied=False)
    standin.reset_counts()

    results = cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11", dry_run=True)

    assert standin.write_count == 0
    assert records_named(standin, zone_id, HOST) == [("A", "198.18.0.10", False, 1)]
    assert [r.ok for r in results] == [None, None]
    assert results[0].changes == {"content": {"old": "198.18.0.10", "new": "198.18.0.11"},
                                  "proxied": {"old": False, "new": True}}
    assert results[0].comment.startswith("would update A jupyter.example.com")
    assert results[1].changes["created"]["content"] == "2001:db8::11"
    assert results[1].comment.startswith("would create AAAA")


def test_dry_run_of_a_correct_record_reports_ok(standin, zone_id, api):
    standin.add_record(zone_id, "A", HOST, "198.18.0.11", proxied=True)
    [result] = cf.ensure_dns(api, DOMAIN, "198.18.0.11", dry_run=True)
    assert (result.ok, result.changes) == (True, {})


def test_a_cname_on_the_name_blocks_every_record_and_nothing_is_written(standin, zone_id, api):
    standin.add_record(zone_id, "CNAME", HOST, "elsewhere.example.net")
    standin.reset_counts()

    results = cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11")

    assert [r.ok for r in results] == [False, False]
    assert "is a CNAME to elsewhere.example.net" in results[0].comment
    assert standin.write_count == 0


def test_several_records_of_one_type_are_not_guessed_at(standin, zone_id, api):
    standin.add_record(zone_id, "A", HOST, "198.18.0.11", proxied=True)
    standin.add_record(zone_id, "A", HOST, "203.0.113.9", proxied=True)
    standin.reset_counts()

    results = cf.ensure_dns(api, DOMAIN, "198.18.0.11", ipv6="2001:db8::11")

    assert results[0].ok is False and "has 2 A records (198.18.0.11, 203.0.113.9)" in results[0].comment
    assert results[1].ok is False and "not changed" in results[1].comment
    assert standin.write_count == 0


def test_apex_record(standin, zone_id, api):
    cf.ensure_dns(api, DOMAIN, "198.18.0.11", subdomain="@")
    assert records_named(standin, zone_id, DOMAIN) == [("A", "198.18.0.11", True, 1)]
