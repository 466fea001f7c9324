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


@pytest.fixture
def browser(entry, v):
    return JupyterSession(entry.address, v["server_name"], v["public_url"])


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
