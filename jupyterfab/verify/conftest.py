"""Fixtures for verifying a deployed host: its inventory entry, derived paths, a session.

``invoke verify`` sets JUPYTERFAB_VERIFY_INVENTORY and passes testinfra
``--hosts=ssh://NAME`` with an ssh_config written from that inventory.
"""

import json
import os

import pytest

from jupyterfab import inventory
from jupyterfab.engine import initsys
from jupyterfab.inventory import selection
from jupyterfab.stack import deploy, passwords
from jupyterfab.verify.jupyterclient import JupyterSession


@pytest.fixture(scope="module")
def entry(host):
    inv = inventory.load(os.environ["JUPYTERFAB_VERIFY_INVENTORY"])
    name = host.backend.hostname
    [found] = inv.select([name], overrides=json.loads(os.environ.get(selection.OVERRIDES_ENV) or "{}"))
    return found


def host_init(host) -> str:
    """``systemd``, ``upstart`` or ``none``: asked the way the deploy asks."""
    return initsys.parse(host.run("sh -c %s", initsys.DETECT).stdout).init or "none"


@pytest.fixture(scope="module")
def init(host):
    """The host's init system: which service the deploy wrote (unit or Upstart job)."""
    return host_init(host)


@pytest.fixture(scope="module")
def v(entry):
    """The variables the deploy used (paths, URL): its plan, which needs no password."""
    return deploy.plan_host(entry).vars


def only_with(key: str, why: str):
    """A fixture body: ``v``, or a skip saying why, for a host whose ``key`` is off."""
    def fixture(v):
        if not v[key]:
            pytest.skip(why)
        return v
    return fixture


tls = pytest.fixture(only_with("tls_enabled", "TLS is not configured for this host (no cloudflare_zone, "
                                              "no tls_certificate)"), scope="module", name="tls")
lockdown = pytest.fixture(only_with("origin_lockdown_enabled", "the origin lockdown is off (no proxied "
                                    "Cloudflare record, or origin_lockdown: false)"), scope="module", name="lockdown")
certbot_host = pytest.fixture(only_with("acme_enabled", "the certificate is not from ACME (tls: acme) for "
                                        "this host"), scope="module", name="certbot_host")


@pytest.fixture(scope="module")
def password():
    secret = passwords.from_sources(os.environ.get("JUPYTERFAB_PASSWORD_FILE"), prompt=False)
    if secret is None:
        pytest.fail(f"logging in needs the password: set ${passwords.ENV_VAR} or --password-file")
    return secret.reveal()


@pytest.fixture(scope="module")
def ca_file():
    """The CA the origin's certificate must chain to, when given (--ca-file)."""
    return os.environ.get("JUPYTERFAB_VERIFY_CA") or None


@pytest.fixture(scope="module")
def edge_address():
    """A local address inside Cloudflare's ranges (--edge-address), if any."""
    return os.environ.get("JUPYTERFAB_VERIFY_EDGE_ADDRESS") or None


@pytest.fixture(scope="module")
def source(v, edge_address):
    """Where the origin is reached from: the edge address when the lockdown demands it."""
    return edge_address if v["origin_lockdown_enabled"] else None


@pytest.fixture(scope="module")
def way_in(entry, v, ca_file, source):
    """A browser's way in: straight to the origin, or, when only Cloudflare may
    reach it, from the edge address or else through Cloudflare by the public name.
    (address, or None for DNS; verify as for requests; local source address)"""
    if v["origin_lockdown_enabled"] and not source:
        return None, ca_file or True, None
    return entry.address, ca_file or (False if v["tls_enabled"] else True), source


@pytest.fixture
def browser(v, way_in):
    address, verify, source = way_in
    return JupyterSession(address or v["server_name"], v["server_name"], v["public_url"],
                          verify=verify, source_address=source)


# The browser check (test_browser.py) starts Chromium and takes a dozen seconds:
# `invoke verify --browser` asks for it.
def pytest_addoption(parser):
    parser.addoption("--browser", action="store_true", default=False,
                     help="also log in, open a notebook and run a cell in headless Chromium")


def pytest_ignore_collect(collection_path, config):
    if collection_path.name == "test_browser.py" and not config.getoption("--browser"):
        return True
    return None


_screenshots: list[str] = []


@pytest.fixture
def keep_screenshot():
    """Record a screenshot's path for the summary at the end of the run."""
    return _screenshots.append


def pytest_terminal_summary(terminalreporter):
    for line in _screenshots:
        terminalreporter.write_line(line)
