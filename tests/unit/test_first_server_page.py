"""What docs/first-server.md and hosts.yaml tell a newcomer holds without a host: the
example names fail loudly when copied unchanged, naming server_name; the edit the page
asks for takes effect; `tls: off` as the docs write it reads as off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jupyterfab import inventory
from jupyterfab.inventory import schema
from jupyterfab.stack import deploy
from jupyterfab.stack.front import tlsplan

PROJECT = Path(__file__).resolve().parents[2]
PAGE = PROJECT / "docs" / "first-server.md"


def page_yaml() -> str:
    [block] = re.findall(r"^```yaml\n(.*?)^```", PAGE.read_text(), re.M | re.S)
    return block


def refusal(text: str) -> str:
    inv = inventory.parse(text, "hosts.yaml")
    with pytest.raises(tlsplan.EdgeConfigError) as caught:
        deploy.check_plans(list(inv.hosts.values()))
    return str(caught.value)


def test_the_pages_hosts_yaml_copied_unchanged_is_refused_naming_server_name():
    said = refusal(page_yaml())
    assert said.startswith("jupyter1: server_name: jupyter.example.org is an example name"), said
    assert "\n" not in said


def test_the_pages_hosts_yaml_with_your_names_is_planned_for_lets_encrypt():
    text = page_yaml().replace("jupyter.example.org", "jupyter.uni-example.de")
    assert "acme_email: ops@example.org" in text
    said = refusal(text)       # the e-mail too is one Let's Encrypt refuses
    assert said.startswith("jupyter1: acme_email: ops@example.org is an example address"), said
    inv = inventory.parse(text.replace("ops@example.org", "ops@uni-example.de"), "hosts.yaml")
    plan = deploy.check_plans(list(inv.hosts.values()))["jupyter1"]
    assert (plan.tls, plan.acme_challenge, plan.hostname) == ("acme", "http-01", "jupyter.uni-example.de")
    assert inv.hosts["jupyter1"].user == "admin"


def test_the_repository_hosts_yaml_is_refused_naming_server_name_until_its_default_is_edited():
    text = (PROJECT / "hosts.yaml").read_text()
    assert refusal(text).startswith("jupyter1: server_name: jupyter.example.com is an example name")
    edited = re.sub(r"^(    server_name:) jupyter\.example\.com", r"\1 jupyter.uni-example.de", text, count=1,
                    flags=re.M)
    assert edited != text
    host = inventory.parse(edited, "hosts.yaml").hosts["jupyter1"]
    assert host.vars["server_name"] == "jupyter.uni-example.de"     # no host or group overrides it
    assert refusal(edited).startswith("jupyter1: acme_email: required")


def test_an_example_name_with_plain_http_allowed_or_tls_acme_is_no_error():
    assert tlsplan.plan_for("a", {**inventory.VAR_DEFAULTS, "allow_plain_http": True}).tls == "off"
    plan = tlsplan.plan_for("a", {**inventory.VAR_DEFAULTS, "tls": "acme", "acme_email": "ops@example.org",
                                  "acme_server": "https://198.18.0.1:14000/dir"})
    assert plan.tls == "acme"      # a test CA (the sandbox's) takes any address


def test_a_name_that_is_not_public_and_not_an_example_still_names_allow_plain_http():
    said = str(pytest.raises(tlsplan.EdgeConfigError, tlsplan.plan_for, "a",
                             {**inventory.VAR_DEFAULTS, "server_name": "box.lan"}).value)
    assert said.startswith("a: allow_plain_http: refusing to serve Jupyter over plain HTTP")


@pytest.mark.parametrize("name, example", [
    ("jupyter.example.org", True), ("example.com", True), ("a.b.example.net", True), ("x.example", True),
    ("jupyter.uni-example.de", False), ("example.company.com", False), ("myexample.com", False)])
def test_example_names(name, example):
    assert schema.is_placeholder_name(name) is example


# ----- tls: off, as written -----------------------------------------------------------------

HOSTS = "defaults:\n  vars:\n{vars}hosts:\n  jupyter1:\n    address: 192.0.2.10\n"


@pytest.mark.parametrize("written", ["off", "Off", "false", "no", '"off"'])
def test_tls_off_written_plainly_is_off(written):
    host = inventory.parse(HOSTS.format(vars=f"    tls: {written}\n    allow_plain_http: true\n")).hosts["jupyter1"]
    assert host.vars["tls"] == "off"
    assert deploy.check_plans([host])["jupyter1"].tls == "off"


def test_tls_off_without_the_opt_in_is_refused_as_off():
    said = refusal(HOSTS.format(vars="    server_name: jupyter.uni-example.de\n    tls: off\n"))
    assert said.startswith("jupyter1: allow_plain_http: refusing to serve Jupyter over plain HTTP (tls is off)")


@pytest.mark.parametrize("written", ["on", "true", "yes"])
def test_tls_on_is_no_word_of_tls(written):
    with pytest.raises(inventory.InventoryError) as caught:
        inventory.parse(HOSTS.format(vars=f"    tls: {written}\n"), "hosts.yaml")
    assert "hosts.yaml:3: defaults.vars.tls: must be a string, not true/false" in str(caught.value)


def test_every_tls_off_the_docs_and_hosts_yaml_show_reads_as_off():
    found = []
    for path in [PROJECT / "hosts.yaml", PROJECT / "docs" / "https.md"]:
        found += re.findall(r"\btls: ([a-z\"']+)", path.read_text().replace("`", " "))
    assert "off" in found and set(found) <= {"auto", "acme", "off"}, found
    host = inventory.parse(HOSTS.format(vars="    tls: off\n    allow_plain_http: true\n")).hosts["jupyter1"]
    assert host.vars["tls"] == "off"
    assert "off (unquoted too" in (PROJECT / "docs" / "reference" / "variables.md").read_text()
