"""hosts.yaml: merge order, and errors that name file, line and key before any SSH."""

import pytest
from unit_support import PROJECT

from jupyterfab import inventory
from jupyterfab.inventory import InventoryError

GOOD = """\
defaults:
  user: deploy
  vars:
    server_name: jupyter.example.com
    tasks_max: 8000
groups:
  prod:
    port: 2222
    vars:
      tasks_max: 9000
  big:
    vars:
      tasks_max: 9100
      client_max_body_size: 1G
hosts:
  web1:
    address: 203.0.113.10
    groups: [prod, big]
    vars:
      client_max_body_size: 2G
  web2:
    address: 203.0.113.11
"""


def test_merge_order_defaults_then_groups_in_order_then_host_then_cli():
    inv = inventory.parse(GOOD, "hosts.yaml")
    web1, web2 = inv.hosts["web1"], inv.hosts["web2"]
    assert web1.user == "deploy" and web1.port == 2222
    assert web1.vars["tasks_max"] == 9100           # big listed after prod
    assert web1.vars["client_max_body_size"] == "2G"   # host beats groups
    assert web2.vars["tasks_max"] == 8000           # defaults beat code defaults
    assert web2.vars["jupyter_user"] == "jupyter"      # code default
    assert web2.port == 22
    [chosen] = inv.select(["web2"], overrides={"tasks_max": 1234})
    assert chosen.vars["tasks_max"] == 1234


def test_groups_select_their_members():
    inv = inventory.parse(GOOD, "hosts.yaml")
    assert [h.name for h in inv.select([], group="prod")] == ["web1"]
    with pytest.raises(InventoryError, match="no group named 'prd'.*did you mean 'prod'"):
        inv.select([], group="prd")


def test_plain_targets_take_the_inventory_defaults():
    inv = inventory.parse(GOOD, "hosts.yaml")
    [h] = inv.select(["admin@198.51.100.7:2200"])
    assert (h.user, h.address, h.port) == ("admin", "198.51.100.7", 2200)
    [h] = inv.select(["198.51.100.8"])
    assert (h.user, h.port, h.vars["tasks_max"]) == ("deploy", 22, 8000)
    with pytest.raises(InventoryError, match="unknown host 'web3'.*did you mean 'web[12]'"):
        inv.select(["web3"])
    for port in ("0", "99999"):      # was taken as it stood and tried on the network
        with pytest.raises(InventoryError, match=f"-H admin@198.51.100.7:{port}: {port} is not a port"):
            inv.select([f"admin@198.51.100.7:{port}"])


@pytest.mark.parametrize("text, where, says", [
    ("hosts:\n  a:\n    adress: 1.2.3.4\n", "hosts.yaml:3", "hosts.a.adress: unknown key (did you mean 'address'?)"),
    ("hosts:\n  a:\n    address: 1.2.3.4\n    port: '22'\n", "hosts.yaml:4", "hosts.a.port: must be a whole number"),
    ("hosts:\n  a:\n    user: x\n", "hosts.yaml:2", "hosts.a.address: is required"),
    ("hosts:\n  a:\n    address: 1.2.3.4\n    vars:\n      tasks_mx: 1\n", "hosts.yaml:5",
     "hosts.a.vars.tasks_mx: unknown variable (did you mean 'tasks_max'?)"),
    ("defaults:\n  vars:\n    jupyter_password: hunter2\nhosts:\n  a: {address: x}\n", "hosts.yaml:3",
     "secrets never live in hosts.yaml"),
    ("hosts:\n  a: {address: x}\n  a: {address: y}\n", "hosts.yaml:3", "appears twice"),
    ("hosts:\n  a: {address: 'x; reboot'}\n", "hosts.yaml:2", "is not a host name or IP address"),
    ("hosts:\n  a: {address: x\n", "hosts.yaml:3", "not valid YAML"),
    ("hosts:\n  a:\n    address: x\n    vars:\n      tasks_max: eighty\n", "hosts.yaml:5",
     "tasks_max: must be a whole number, not a string"),
    ("hostz:\n  a: {address: x}\n", "hosts.yaml:1", "hostz: unknown key (did you mean 'hosts'?)"),
    ("defaults:\n  vars:\n    login_rate_per_minute: 0\nhosts:\n  a: {address: x}\n", "hosts.yaml:3",
     "defaults.vars.login_rate_per_minute: must be a whole number above 0"),
    ("hosts:\n  a:\n    address: x\n    vars:\n      login_burst: -1\n", "hosts.yaml:5",
     "hosts.a.vars.login_burst: must be a whole number, 0 or more"),
    # YAML a safe loader cannot build, or builds and fails on: the line, never a traceback
    ("hosts:\n  a:\n    address: x\n    vars:\n      tasks_max: !!python/object:os.system ls\n",
     "hosts.yaml:5", "hosts.a.vars.tasks_max: YAML cannot read this value"),
    ("hosts:\n  a:\n    address: x\n    vars:\n      tasks_max: !foo 1\n", "hosts.yaml:5",
     "hosts.a.vars.tasks_max: YAML cannot read this value"),
    ("hosts:\n  a:\n    address: x\n    vars:\n      tasks_max: !!int eighty\n", "hosts.yaml:5",
     "hosts.a.vars.tasks_max: YAML cannot read this value (int 'eighty'"),
    ("hosts:\n  a:\n    address: x\n    vars:\n      server_name: 2026-13-01\n", "hosts.yaml:5",
     "quote it"),
    ("hosts:\n  a:\n    address: x\n    vars:\n      tasks_max: 8888.5\n", "hosts.yaml:5",
     "tasks_max: must be a whole number, not a decimal number (got 8888.5)"),   # was "a number, not a number"
    ("groups:\n  production:\n    vars: {client_max_body_size: 500M}\nhosts:\n  a:\n    address: x\n"
     "    groups: [lab, prodution]\n", "hosts.yaml:7",                   # was silently taken
     "hosts.a.groups.1: 'prodution' is not under groups: (did you mean 'production'?)"),
    ("hosts:\n  ? [a, b]\n  : {address: x}\n", "hosts.yaml:2", "hosts: a key must be plain text"),
    ("hosts:\n  a: {address: x, groups: [[g]]}\n", "hosts.yaml:2", "hosts.a.groups.0: ['g'] is not a group name"),
])
def test_errors_name_file_line_and_key(text, where, says):
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "hosts.yaml")
    assert str(err.value).startswith(where + ":"), str(err.value)
    assert says in str(err.value)


def test_a_value_the_problem_already_quotes_is_not_repeated():
    with pytest.raises(InventoryError) as err:
        inventory.parse("hosts:\n  a:\n    address: x\n    vars:\n      acme_email: a@b\n", "hosts.yaml")
    assert str(err.value).endswith("acme_email: 'a@b' is not an email address"), str(err.value)


def test_the_example_inventory_in_the_repo_is_valid():
    inv = inventory.load(PROJECT / "hosts.yaml")
    assert inv.hosts


def test_a_key_or_known_hosts_file_that_is_not_there_is_named_at_load(tmp_path):
    """Before: the host failed at connect time ('[Errno 2] No such file ...'), after the
    other hosts had begun, and a missing known_hosts stopped fab with no key named."""
    (tmp_path / "id").write_text("key\n")
    (tmp_path / "kh").write_text("")
    good = ("defaults:\n  key: id\n  known_hosts: kh\ngroups:\n  lab:\n    key: {lab_key}\n"
            "hosts:\n  a:\n    address: x\n    groups: [lab]\n    known_hosts: {host_kh}\n")
    inv = inventory.load(_written(tmp_path, good.format(lab_key="id", host_kh="kh")))
    assert inv.hosts["a"].key == str(tmp_path / "id")       # relative to the inventory
    with pytest.raises(InventoryError) as err:
        inventory.load(_written(tmp_path, good.format(lab_key="nokey", host_kh="kh")))
    assert str(err.value).startswith(f"{tmp_path / 'hosts.yaml'}:6: groups.lab.key: no such file: "
                                     f"{tmp_path / 'nokey'}")
    with pytest.raises(InventoryError) as err:
        inventory.load(_written(tmp_path, good.format(lab_key="id", host_kh="/nonexistent/kh")))
    assert str(err.value).startswith(f"{tmp_path / 'hosts.yaml'}:11: hosts.a.known_hosts: no such "
                                     "file: /nonexistent/kh")


def _written(folder, text):
    (folder / "hosts.yaml").write_text(text)
    return folder / "hosts.yaml"
