"""The inventory schema: every variable's form, as data, checked at load and for --set."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jupyterfab import edge, inventory, schema
from jupyterfab.inventory import InventoryError

PROJECT = Path(__file__).resolve().parents[2]


def host_with(**variables) -> str:
    return yaml.safe_dump({"hosts": {"h": {"address": "203.0.113.10", "vars": variables}}})


def load(**variables) -> inventory.Host:
    return inventory.parse(host_with(**variables), "hosts.yaml").select(["h"])[0]


def test_every_default_and_every_example_is_valid():
    for name, var in schema.VARIABLES.items():
        assert schema.problem(name, var.default) is None, name
        if name not in ("wheelhouse",):
            assert schema.problem(name, var.example) is None, (name, var.example)
        assert var.description and var.form


# (variable, good values, bad values): the table the reference is a summary of
TABLE = [
    ("server_name", ["jupyter.example.com", "localhost", "a-1.b2.example"],
     ["x.example.com; location /e {}", "-x.example.com", "a..b", "a_b.example.com", "a" * 64 + ".com", ""]),
    ("public_url", ["", "https://notebooks.example.org", "http://203.0.113.10:8080/"],
     ["javascript:alert(1)", "https://x.example.com/path", "ftp://x.example.com", "https://u:p@x.example.com",
      "https://x.example.com/?a=1"]),
    ("jupyter_user", ["jupyter", "nb_user", "lab-1"],
     ["root", "www-data", "nobody", "Alice", "a b", "-x", "jupyter;id"]),
    ("jupyter_user_login", [True, False], ["yes", 1, "false", ""]),
    ("notebook_dir", ["/home/jupyter/notebooks", "/home/jupyter"],
     ["/home", "/home/jupyter/../../etc", "notebooks", "/home/jupyter/nb\n- unless: x", "/home/jupyter/a b",
      "/home/jupyter/", "/home//jupyter", "/etc"]),
    ("prefix", ["/opt/jupyterfab", "/srv/jupyter", "/usr/local/jupyterfab"],
     ["/usr", "/", "/opt", "/opt/jupyter fab", "/opt/x/../y", "opt/x"]),
    ("jupyter_port", [1024, 8888, 65535], [80, 443, 1023, 65536, 99999, -1]),
    ("jupyterlab_version", ["==4.4.*", ">=4.4,<5", "~=4.4.0"],
     [" @ https://x/jl.whl", "4.4", "", "==4.4; os_name=='nt'", "[extra]==4"]),
    ("python_packages", [[], ["numpy>=1.26", "pandas[excel]", "requests; python_version>'3.8'"]],
     [["--index-url=http://x"], ["numpy\n--pre"], ["a b c"]]),
    ("client_max_body_size", ["100M", "1g", "0", "512k"], ["100MB", "1.5G", "100M;", "-1", ""]),
    ("proxy_read_timeout", [1, 86400, 604800], [0, -5, 604801]),
    ("apt_proxy", ["", "http://198.18.0.1:3142", "https://apt.example.org/debian"],
     ["ftp://x", "http://", "http://a b", "apt.example.org:3142", "http://x:99999"]),
    ("pip_index_url", ["", "https://pypi.example.org/simple"], ["file:///srv/wheels", "http://x/simple\n"]),
    ("cloudflare_zone", ["", "example.com"], ["com", "example.com;id", "exa mple.com"]),
    ("cloudflare_api_url", ["", schema.CLOUDFLARE_API_URL, schema.CLOUDFLARE_API_URL + "/"],
     ["http://collector.evil.example/client/v4", "https://127.0.0.1:8443/client/v4"]),
    ("public_ipv4", ["", "203.0.113.10"], ["203.0.113.999", "2001:db8::1", "localhost"]),
    ("public_ipv6", ["", "2001:db8::10"], ["203.0.113.10", "2001:db8::zz"]),
    ("conda_prefix", ["/opt/jupyterfab/conda", "/opt/conda"], ["/opt/my conda", "/opt/conda/../x", "/usr"]),
    ("tls_key", ["", "~/certs/key.pem", "/certs/my key (1).pem"], ["/certs/key\n.pem"]),
    ("x_anything", ["free text; with {braces} and 'quotes'", 42, ["a", "b"]], ["two\nlines", ["a\tb"]]),
    ("env_provider", ["venv", "conda"], ["docker", ""]),
    ("build_env_here", [0, 1], [2, True]),
]


@pytest.mark.parametrize("name, good, bad", TABLE, ids=[row[0] for row in TABLE])
def test_each_variable_takes_its_form_and_refuses_the_rest(name, good, bad):
    for value in good:
        inventory.validate_vars({name: value}, ("hosts", "h", "vars"))
    for value in bad:
        with pytest.raises(InventoryError) as err:
            inventory.validate_vars({name: value}, ("hosts", "h", "vars"))
        assert str(err.value).startswith(f"hosts.h.vars.{name}: "), str(err.value)
        assert "\n" not in str(err.value)


def test_the_error_names_file_line_key_and_the_expected_form():
    text = "defaults:\n  vars:\n    jupyter_port: 99999\nhosts:\n  h: {address: 203.0.113.10}\n"
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "hosts.yaml")
    assert str(err.value) == ("hosts.yaml:3: defaults.vars.jupyter_port: must be a port between "
                              "1024 and 65535 (Jupyter listens on 127.0.0.1 only) (got 99999)")


@pytest.mark.parametrize("variables, key, says", [
    ({"notebook_dir": "/srv/notebooks"}, "notebook_dir", "inside the notebook user's home /home/jupyter"),
    ({"jupyter_user": "lab", "notebook_dir": "/home/jupyter/notebooks"}, "notebook_dir", "/home/lab"),
    ({"prefix": "/home/jupyter/env"}, "prefix", "outside the notebook user's home"),
    ({"conda_prefix": "/home/jupyter/conda"}, "conda_prefix", "outside the notebook user's home"),
    ({"jupyter_port": 2222}, "jupyter_port", "taken by SSH"),
    ({"python_packages": ["x @ https://x.example/x.whl"]}, "python_packages", "allow_url_requirements"),
])
def test_rules_over_one_hosts_variables_name_where_the_value_was_set(variables, key, says):
    text = yaml.safe_dump({"hosts": {"h": {"address": "203.0.113.10", "port": 2222, "vars": variables}}})
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "hosts.yaml").select(["h"])
    assert f": hosts.h.vars.{key}: " in str(err.value) and says in str(err.value), str(err.value)
    assert str(err.value).startswith("hosts.yaml:")


def test_the_notebook_user_is_never_the_ssh_user():
    text = yaml.safe_dump({"hosts": {"h": {"address": "203.0.113.10", "user": "deploy",
                                           "vars": {"jupyter_user": "deploy"}}}})
    with pytest.raises(InventoryError, match=r"hosts\.h\.vars\.jupyter_user: 'deploy' is the SSH user"):
        inventory.parse(text, "hosts.yaml").select(["h"])


def test_the_default_notebook_dir_follows_the_notebook_user_and_set_mends_the_file():
    assert load(jupyter_user="lab").vars["notebook_dir"] == "/home/lab/notebooks"
    inv = inventory.parse(host_with(notebook_dir="/home/lab/nb"), "hosts.yaml")
    [host] = inv.select(["h"], overrides={"jupyter_user": "lab"})     # the file alone is inconsistent
    assert host.vars["notebook_dir"] == "/home/lab/nb"


def test_urls_to_install_from_need_the_opt_in():
    host = load(python_packages=["x @ https://x.example/x.whl"], allow_url_requirements=True)
    assert host.vars["python_packages"] == ["x @ https://x.example/x.whl"]


def test_set_goes_through_the_same_schema_and_says_so():
    inv = inventory.parse(host_with(), "hosts.yaml")
    with pytest.raises(InventoryError, match=r"^--set\.proxy_read_timeout: must be between 1 and 604800"):
        inv.select(["h"], overrides={"proxy_read_timeout": -5})
    with pytest.raises(InventoryError, match=r"^--set notebook_dir: must be inside"):
        inv.select(["h"], overrides={"notebook_dir": "/srv/x"})


def test_another_cloudflare_endpoint_only_from_the_command_line_or_the_environment(monkeypatch):
    inv = inventory.parse(host_with(cloudflare_zone="example.com"), "hosts.yaml")
    [host] = inv.select(["h"], overrides={"cloudflare_api_url": "https://127.0.0.1:8443/client/v4"})
    assert edge.plan_for("h", host.vars).api_url == "https://127.0.0.1:8443/client/v4"
    with pytest.raises(InventoryError, match="https:// URL: the API token is sent there"):
        inv.select(["h"], overrides={"cloudflare_api_url": "http://collector.evil.example/client/v4"})
    inv.select(["h"], overrides={"cloudflare_api_url": "http://127.0.0.1:8787/client/v4"})  # this machine
    inv.select(["h"], overrides={"cloudflare_api_url": "http://198.18.0.1:8787/client/v4"})  # a test bridge
    with pytest.raises(InventoryError, match="https:// URL"):
        inv.select(["h"], overrides={"cloudflare_api_url": "http://93.184.216.34/client/v4"})  # a public address (never contacted)
    monkeypatch.setenv(schema.CLOUDFLARE_API_URL_ENV, "https://standin.test/client/v4")
    assert edge.plan_for("h", load(cloudflare_zone="example.com").vars).api_url == "https://standin.test/client/v4"
    monkeypatch.setenv(schema.CLOUDFLARE_API_URL_ENV, "http://collector.evil.example/client/v4")
    with pytest.raises(edge.EdgeConfigError, match=schema.CLOUDFLARE_API_URL_ENV):
        edge.plan_for("h", load(cloudflare_zone="example.com").vars)


def test_yaml_aliases_are_refused_at_once_with_their_line(tmp_path, monkeypatch):
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdef", "bcdefg", strict=True)]
    bomb += ["hosts: {h: {address: 203.0.113.10, vars: {x_bomb: *g}}}"]
    path = tmp_path / "hosts.yaml"
    path.write_text("\n".join(bomb) + "\n")
    built = []
    monkeypatch.setattr(inventory._Located, "build", lambda *a: built.append(a))
    with pytest.raises(InventoryError, match=r"hosts.yaml:2: YAML aliases \(\*a\) are not allowed"):
        inventory.load(path)
    assert built == []          # refused while YAML composes line 2: nothing was expanded
    with pytest.raises(InventoryError, match=":4: YAML aliases"):
        inventory.parse("defaults: &d\n  user: root\nhosts:\n  h: {address: x, <<: *d}\n", "hosts.yaml")


def test_an_inventory_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  h: {address: 203.0.113.10}\n" + "#" * inventory.MAX_INVENTORY_BYTES)
    with pytest.raises(InventoryError, match="larger than 1024 KiB"):
        inventory.load(path)


def test_the_shipped_and_generated_inventories_still_load(tmp_path):
    inventory.load(PROJECT / "hosts.yaml").select(["jupyter1"])
    sandbox_like = ("defaults:\n  user: root\n  key: /root/.ssh/id\n  vars:\n"
                    "    apt_proxy: http://198.18.0.1:3142\n    wheelhouse: build\n"
                    "hosts:\n  sandbox1:\n    address: 198.18.0.11\n    groups: [sandbox]\n")
    inventory.parse(sandbox_like, "hosts.yaml").select(["sandbox1"])


@pytest.mark.parametrize("key, value, says", [
    ("user", "root\nProxyCommand id", "control characters"),
    ("user", "-oProxyCommand=id", "not a user name"),
    ("key", "/root/.ssh/id\n", "control characters"),
    ("port", 70000, "not a port"),
])
def test_connection_settings_are_checked_too(key, value, says):
    text = yaml.safe_dump({"hosts": {"h": {"address": "203.0.113.10", key: value}}})
    with pytest.raises(InventoryError, match=rf"^hosts.yaml:\d+: hosts\.h\.{key}: .*{says}"):
        inventory.parse(text, "hosts.yaml")


@pytest.mark.parametrize("name", [n for n, v in schema.VARIABLES.items()
                                  if isinstance(v.default, str) and not v.choices])
def test_no_string_variable_takes_a_control_character(name):
    """Whatever a variable's own form allows, a newline, tab or escape never passes."""
    for bad in ("\n", "\t", "\x1b", "\x7f"):
        value = (schema.VARIABLES[name].example or "x") + bad
        assert schema.problem(name, value) == \
            "must not contain control characters (newlines, tabs, escapes)", (name, bad)
