"""Fixtures for verifying a deployed host: its inventory entry, derived paths, a session.

``invoke verify`` sets JUPYTERFAB_VERIFY_INVENTORY and passes testinfra
``--hosts=ssh://NAME`` with an ssh_config written from that inventory.
"""

import os

import pytest

from jupyterfab import deploy, inventory, passwords
from jupyterfab.jupyterclient import JupyterSession


@pytest.fixture(scope="module")
def entry(host):
    inv = inventory.load(os.environ["JUPYTERFAB_VERIFY_INVENTORY"])
    name = host.backend.hostname
    [found] = inv.select([name])
    return found


@pytest.fixture(scope="module")
def v(entry):
    """The variables the deploy used (paths, URL), without needing the password."""
    info = {"hashed_password": "argon2:unused", "python": "", "machine": "", "glibc": (2, 17)}
    variables = dict(entry.vars, wheelhouse="")
    return deploy.derive_vars(inventory.Host(**{**entry.__dict__, "vars": variables}), info, None)


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


@pytest.fixture
def browser(entry, v, ca_file, edge_address):
    """A browser's way in: straight to the origin, or, when only Cloudflare may
    reach it, from the edge address or else through Cloudflare by the public name."""
    verify = ca_file or (False if v["tls_enabled"] else True)
    if v["origin_lockdown_enabled"] and not edge_address:
        return JupyterSession(v["server_name"], v["server_name"], v["public_url"], verify=ca_file or True)
    return JupyterSession(entry.address, v["server_name"], v["public_url"], verify=verify,
                          source_address=edge_address if v["origin_lockdown_enabled"] else None)
