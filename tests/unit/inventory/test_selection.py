"""One inventory rule for fab and invoke: --inventory, $JUPYTERFAB_INVENTORY, the running
sandbox's (the last demo's first) when it has the hosts, else hosts.yaml."""

from __future__ import annotations

import os
import time

import pytest

from jupyterfab import inventory
from jupyterfab.dev import demo_record, sandbox
from jupyterfab.inventory import selection


def inventory_file(path, *names):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hosts:\n" + "".join(f"  {n}:\n    address: 198.18.0.{i + 2}\n" for i, n in enumerate(names)))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv(selection.ENV_VAR, raising=False)
    monkeypatch.setattr(sandbox, "list_hosts", lambda: ["running"])
    inventory_file(tmp_path / "hosts.yaml", "jupyter1")
    inventory_file(tmp_path / ".sandbox" / "hosts.yaml", "sandbox1")
    return tmp_path


def test_the_option_then_the_environment_win(project, monkeypatch):
    assert selection.choose("mine.yaml", ["sandbox1"], project, demo_record.sandbox_inventories(project)) == selection.Path("mine.yaml")
    monkeypatch.setenv(selection.ENV_VAR, "/etc/fleet.yaml")
    assert str(selection.choose(None, ["sandbox1"], project, demo_record.sandbox_inventories(project))) == "/etc/fleet.yaml"


def test_a_running_sandbox_is_used_for_its_own_hosts_only(project, monkeypatch):
    assert selection.choose(None, ["sandbox1"], project, demo_record.sandbox_inventories(project)) == project / ".sandbox" / "hosts.yaml"
    assert selection.choose(None, ["jupyter1"], project, demo_record.sandbox_inventories(project)) == project / "hosts.yaml"
    monkeypatch.setattr(sandbox, "list_hosts", lambda: [])      # no sandbox running
    assert selection.choose(None, ["sandbox1"], project, demo_record.sandbox_inventories(project)) == project / "hosts.yaml"


def test_after_a_demo_its_inventory_and_options_come_first_until_the_next_sandbox_up(project):
    demo = inventory_file(project / ".sandbox" / "hosts-cloudflare.yaml", "sandbox1")
    demo_record.remember_demo(project, demo, kind="cloudflare", host="sandbox1", password_file="pw",
                                 edge_address="198.18.0.254")
    assert selection.choose(None, [], project, demo_record.sandbox_inventories(project)) == demo
    assert selection.choose(None, ["sandbox1"], project, demo_record.sandbox_inventories(project)) == demo
    assert demo_record.verify_options(project, demo) == {"password_file": "pw", "edge_address": "198.18.0.254"}
    assert demo_record.verify_options(project, project / ".sandbox" / "hosts.yaml") == {}
    later = time.time() + 5
    os.utime(project / ".sandbox" / "hosts.yaml", (later, later))    # sandbox.up rewrote it
    assert selection.choose(None, ["sandbox1"], project, demo_record.sandbox_inventories(project)) == project / ".sandbox" / "hosts.yaml"
    assert demo_record.verify_options(project, demo) == {}


def test_an_unknown_host_names_where_it_looked_and_the_fix(project):
    with pytest.raises(inventory.InventoryError) as refused:
        selection.select(None, ["nosuch"], project, preferred=demo_record.sandbox_inventories(project))
    said = str(refused.value)
    assert "unknown host 'nosuch'" in said
    assert f"looked in {project / '.sandbox' / 'hosts.yaml'}, {project / 'hosts.yaml'}" in said
    assert "--inventory FILE" in said and selection.ENV_VAR in said


def test_a_known_host_beside_an_unknown_one_is_not_the_one_named_unknown(project):
    # -H sandbox1,nosuch used to fall back to hosts.yaml and call sandbox1 unknown
    with pytest.raises(inventory.InventoryError) as refused:
        selection.select(None, ["sandbox1", "nosuch"], project, preferred=demo_record.sandbox_inventories(project))
    assert "unknown host 'nosuch'" in str(refused.value)
    assert "'sandbox1'" not in str(refused.value)
    # a sandbox host with a plain address beside it: the sandbox's inventory serves both
    path, hosts = selection.select(None, ["sandbox1", "admin@198.18.0.77"], project, preferred=demo_record.sandbox_inventories(project))
    assert path == project / ".sandbox" / "hosts.yaml"
    assert [h.address for h in hosts] == ["198.18.0.2", "198.18.0.77"]
    # hosts in different inventories: a tie goes to the project's, as before
    assert selection.choose(None, ["sandbox1", "jupyter1"], project, demo_record.sandbox_inventories(project)) == project / "hosts.yaml"
