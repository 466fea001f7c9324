"""Security behaviour as the deploy renders it, read back by meaning.

Each test renders what the deploy writes (the NGINX site through crossplane, NGINX's own
parser; the systemd unit as systemd reads it; the Jupyter config through Python's ast;
the state declarations; a backup as it lands) and asserts the directive or the value
that makes it safe, never a byte copy: a golden file can be re-blessed, these cannot.
"""

from __future__ import annotations

import ast
import hashlib
import ipaddress
import tempfile

import crossplane
import pytest
import yaml

from jupyterfab import inventory
from jupyterfab.engine import sls
from jupyterfab.engine.errors import ConfigError
from jupyterfab.engine.runner import CmdResult
from jupyterfab.engine.states.base import Context
from jupyterfab.engine.states.file import render_source
from jupyterfab.inventory import VAR_DEFAULTS, Host
from jupyterfab.stack import deploy, operations

CLOUDFLARE_RANGES = ["173.245.48.0/20", "2400:cb00::/32"]
# The ways a site is served: each security test of the site holds in every one.
SITES = {
    "plain HTTP": {"allow_plain_http": True},
    "own certificate": {"server_name": "jupyter.example.org", "tls_certificate": "/etc/c.pem",
                        "tls_key": "/etc/k.pem"},
    "behind Cloudflare": {"server_name": "jupyter.example.com", "cloudflare_zone": "example.com"},
}
TLS_SITES = [name for name in SITES if name != "plain HTTP"]


def deploy_vars(init: str = "systemd", **overrides) -> dict:
    """The template variables the deploy derives for a host with these variables (and
    stand-ins for what the deploy's own steps add)."""
    host = Host("jupyter1", "203.0.113.10", vars={**VAR_DEFAULTS, "allow_plain_http": True, **overrides})
    v = deploy.plan_host(host).vars
    return {**v, "hashed_password": "argon2:$argon2id$placeholder", "wheelhouse_local": "",
            "env_bundle": "", "kernel_bundle": "", "extensions_local": "/nonexistent",
            "cloudflare_ranges": CLOUDFLARE_RANGES if v["origin_lockdown_enabled"] else []}


def render(template: str, init: str = "systemd", **overrides) -> str:
    ctx = Context("jupyter1", vars=deploy_vars(init, **overrides), files_dir=deploy.PROJECT / "files",
                  init=init)
    return render_source(template, ctx)[0]


# --- reading an NGINX site ----------------------------------------------------------------

def nginx_site(**overrides) -> list[dict]:
    """The site's directives as NGINX parses them."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write(render("nginx/jupyter.conf.j2", **overrides))
        f.flush()
        parsed = crossplane.parse(f.name, single=True, check_ctx=False, check_args=False)
    assert parsed["status"] == "ok", parsed["errors"]
    return parsed["config"][0]["parsed"]


def directives(block: list[dict], name: str) -> list[dict]:
    """Every ``name`` directive in ``block``, at any depth."""
    found = []
    for d in block:
        if d["directive"] == name:
            found.append(d)
        found += directives(d.get("block", []), name)
    return found


def args_of(block: list[dict], name: str) -> list[list[str]]:
    """The arguments of each ``name`` directive directly in ``block``."""
    return [d["args"] for d in block if d["directive"] == name]


def proxied_locations(site: list[dict]) -> list[dict]:
    """Every location that passes requests on to Jupyter."""
    return [loc for loc in directives(site, "location") if args_of(loc["block"], "proxy_pass")]


def jupyter_headers(location: dict) -> dict[str, str]:
    return {args[0].lower(): args[1] for args in args_of(location["block"], "proxy_set_header")}


# --- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["server_name", "client_max_body_size"])
def test_the_nginx_site_refuses_a_value_with_a_dollar_sign(name):
    """NGINX expands ``$name`` even inside quotes: a value holding one would read a
    request variable into the site. The schema refuses it first; this is the second line,
    for a value that reaches the template past the schema."""
    value = {"server_name": "jupyter.example.org$request_uri", "client_max_body_size": "1m$arg_x"}[name]
    with pytest.raises(ConfigError, match=r"cannot be written into an NGINX config.*'\$'"):
        render("nginx/jupyter.conf.j2", **SITES["plain HTTP"], **{name: value})


@pytest.mark.parametrize("notebook_dir", ["/home/jupyter2/nb", "/home/jupyterX", "/srv/nb"])
def test_notebook_dir_outside_the_notebook_users_home_is_refused(notebook_dir):
    """The deploy gives notebook_dir to the notebook user: a folder of another user's
    (whose name merely starts with this one's) must not be handed over."""
    text = yaml.safe_dump({"hosts": {"h": {"address": "203.0.113.10", "vars": {
        "allow_plain_http": True, "jupyter_user": "jupyter", "notebook_dir": notebook_dir}}}})
    with pytest.raises(inventory.InventoryError, match=r"notebook_dir: must be inside the notebook "
                                                       r"user's home /home/jupyter "):
        inventory.parse(text, "hosts.yaml").select(["h"])
    inside = text.replace(notebook_dir, "/home/jupyter/nb")
    assert inventory.parse(inside, "hosts.yaml").select(["h"])[0].vars["notebook_dir"] == "/home/jupyter/nb"


@pytest.mark.parametrize("site", SITES)
def test_the_login_throttle_counts_password_posts_per_client_address(site):
    """The /login location's limit_req zone is keyed by a map of the request method:
    a POST counts against the client's address; any other method (an empty key) is never
    counted, so viewing the form costs nothing."""
    tree = nginx_site(**SITES[site])
    [zone_args] = [d["args"] for d in directives(tree, "limit_req_zone")]
    key, zone = zone_args[0], next(a.split("=", 1)[1].split(":")[0] for a in zone_args if a.startswith("zone="))
    [method_map] = [d for d in directives(tree, "map") if d["args"] == ["$request_method", key]]
    by_method = {entry["directive"]: entry["args"] for entry in method_map["block"]}
    assert by_method.get("POST") == ["$binary_remote_addr"], f"the throttle's key by method: {by_method}"
    assert by_method.get("default") == [""], by_method
    assert set(by_method) == {"POST", "default"}, by_method
    [login] = [loc for loc in directives(tree, "location") if loc["args"] == ["=", "/login"]]
    assert any(f"zone={zone}" in args for args in args_of(login["block"], "limit_req")), login


@pytest.mark.parametrize("site", SITES)
def test_every_server_hides_the_nginx_version(site):
    """``server_tokens off`` in every server block: the TLS one users reach, and the
    catch-alls that answer scans."""
    servers = [d for d in nginx_site(**SITES[site]) if d["directive"] == "server"]
    assert len(servers) >= 2
    for server in servers:
        where = [" ".join(args) for args in args_of(server["block"], "listen")]
        assert args_of(server["block"], "server_tokens") == [["off"]], f"server listening on {where}"


@pytest.mark.parametrize("site", SITES)
def test_nginx_sets_x_forwarded_for_itself(site):
    """Jupyter trusts X-Forwarded-For and X-Real-IP (trust_xheaders): NGINX sets both to
    the address it saw (behind Cloudflare, the visitor's, through real_ip), never
    passing on what the client sent."""
    locations = proxied_locations(nginx_site(**SITES[site]))
    assert locations
    for location in locations:
        headers = jupyter_headers(location)
        got = headers.get("x-forwarded-for")
        assert got == "$remote_addr", f"location {' '.join(location['args'])}: X-Forwarded-For {got}"


@pytest.mark.parametrize("site", SITES)
def test_nginx_sets_x_real_ip_itself(site):
    """Tornado prefers X-Real-IP over X-Forwarded-For: left unset, the client's own
    X-Real-IP would reach Jupyter as the address it logs and trusts."""
    for location in proxied_locations(nginx_site(**SITES[site])):
        headers = jupyter_headers(location)
        got = headers.get("x-real-ip")
        assert got == "$remote_addr", f"location {' '.join(location['args'])}: X-Real-IP {got}"


def unit_settings(text: str) -> dict[str, dict[str, str]]:
    """A systemd unit as systemd reads it: section -> setting -> its last assignment."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return sections


SYSTEMD_TRUE = {"yes", "true", "on", "1"}
# setting -> what its value must mean (docs/security.md: the unit's sandbox)
HARDENING = {
    "NoNewPrivileges": SYSTEMD_TRUE,
    "CapabilityBoundingSet": {""},
    "AmbientCapabilities": {""},
    "PrivateTmp": SYSTEMD_TRUE,
    "PrivateDevices": SYSTEMD_TRUE,
    "ProtectSystem": {"strict"},
    "ProtectHome": {"tmpfs", "yes", "true"},
    "ProtectKernelTunables": SYSTEMD_TRUE,
    "ProtectKernelModules": SYSTEMD_TRUE,
    "ProtectKernelLogs": SYSTEMD_TRUE,
    "ProtectControlGroups": SYSTEMD_TRUE | {"strict"},
    "ProtectClock": SYSTEMD_TRUE,
    "ProtectHostname": SYSTEMD_TRUE,
    "ProtectProc": {"invisible", "noaccess"},
    "RestrictNamespaces": SYSTEMD_TRUE,
    "RestrictSUIDSGID": SYSTEMD_TRUE,
    "LockPersonality": SYSTEMD_TRUE,
    "SystemCallFilter": {"@system-service"},
    "UMask": {"0027", "0077"},
    "LimitCORE": {"0"},
}


def test_the_unit_keeps_its_hardening():
    """The unit's sandbox, setting by setting as systemd reads it (the last assignment of
    each): a golden copy re-blessed without one of them fails here."""
    service = unit_settings(render("jupyter/jupyter.service.j2"))["Service"]
    weakened = {name: service.get(name, "(not set)") for name, means in HARDENING.items()
                if service.get(name) not in means}
    assert not weakened, weakened
    assert service["User"] != "root" and service["User"] == service["Group"]


def test_the_server_config_is_roots_and_only_readable_by_the_notebook_group():
    """The config holds the password hash and the auth settings: Jupyter (the notebook
    user's group) reads it, only root writes it, nobody else reads it."""
    variables = deploy_vars(allow_plain_http=True)
    ctx = Context("jupyter1", vars=variables, files_dir=deploy.PROJECT / "files")
    [config] = [d for d in sls.load_states(deploy.PROJECT / "states", ctx) if d.id == "jupyter_config"]
    assert config.name == variables["config_file"]
    mode = config.args["mode"]      # the state's mode argument, as a number
    assert config.args["user"] == "root", f"owner {config.args['user']}"
    assert config.args["group"] == variables["jupyter_user"], f"group {config.args['group']}"
    assert mode & 0o040 and not mode & 0o020, f"group: {mode:04o}"     # reads, cannot write
    assert not mode & 0o007, f"others: {mode:04o}"


class _HostWithNotebooks:
    """The two calls a backup makes: the archive made on the host, then fetched."""

    def __init__(self, data: bytes):
        self.data = data

    def run(self, command, *, stdin=None, timeout=None) -> CmdResult:
        return CmdResult(0, f"{hashlib.sha256(self.data).hexdigest()}  /var/tmp/jupyterfab-backup.x\n", "")

    def get(self, path: str) -> bytes:
        return self.data


def test_a_backup_makes_an_existing_open_destination_private(tmp_path):
    """Notebooks are private: a --dest that exists as 0755 becomes 0700, and the
    archive and its .sha256 are 0600."""
    dest = tmp_path / "backups"
    dest.mkdir(mode=0o755)
    dest.chmod(0o755)
    host = Host("web1", "203.0.113.10", vars={**VAR_DEFAULTS})
    done = operations.backup(dest, "20260101")(host, _HostWithNotebooks(b"archive"))
    assert not done.failed, done.text
    assert dest.stat().st_mode & 0o777 == 0o700, f"{dest.stat().st_mode & 0o777:04o}"
    archives = list(dest.iterdir())
    assert len(archives) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in archives)


def _config_assignments(text: str) -> dict[str, object]:
    """``c.X.y = <constant>`` of a Jupyter config, as Python reads it."""
    found = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    found[f"{target.value.attr}.{target.attr}"] = node.value.value
    return found


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def test_jupyter_listens_on_no_public_address():
    """Only NGINX talks to Jupyter: Jupyter listens on a Unix socket or on loopback
    (its own default, ``localhost``, when the config names no address), and NGINX
    passes requests to that same kind of place."""
    config = _config_assignments(render("jupyter/jupyter_server_config.py.j2", allow_plain_http=True))
    if not config.get("ServerApp.sock"):
        ip = config.get("ServerApp.ip", "localhost")
        assert isinstance(ip, str) and _loopback(ip), f"c.ServerApp.ip = {ip!r}"
    # no address on the command line either (it would override the config's)
    service = unit_settings(render("jupyter/jupyter.service.j2"))["Service"]
    assert "--ip" not in service["ExecStart"] and "ServerApp.ip" not in service["ExecStart"]
    for site in SITES:
        for address in _proxied_to(nginx_site(**SITES[site])):
            assert address.startswith("unix:") or _loopback(address.rsplit(":", 1)[0]), (site, address)


def _proxied_to(site: list[dict]) -> list[str]:
    """Where NGINX sends requests: each proxy_pass's host, or the servers of the upstream
    it names (``127.0.0.1:8888``, ``unix:/run/x.sock``)."""
    upstreams = {d["args"][0]: [args[0] for args in args_of(d["block"], "server")]
                 for d in directives(site, "upstream")}
    targets = [d["args"][0].split("://", 1)[1].rstrip("/") for d in directives(site, "proxy_pass")]
    assert targets
    return [address for target in targets for address in upstreams.get(target, [target])]
