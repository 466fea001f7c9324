"""End-to-end fixtures: real sandbox hosts booted with systemd-nspawn.

These tests need root and the sandbox tools. Outside CI they are skipped with the
reason when those are missing; in CI (CI=true) every skip is an error unless listed
in tests/conftest.py, so a broken CI machine can never pass by skipping.
"""

import pytest
from e2e_support import PROJECT, require_sandbox_prerequisites, system_leftovers

from jupyterfab import inventory
from jupyterfab.dev import sandbox


@pytest.fixture(scope="session")
def sandbox_lock():
    """One sandbox per machine: concurrent test sessions wait their turn."""
    require_sandbox_prerequisites()
    with sandbox.exclusive():
        yield


@pytest.fixture(scope="module")
def sandbox_factory(sandbox_lock):
    """Boots hosts on demand for one test module and tears them all down after it."""
    require_sandbox_prerequisites()
    booted = []

    def boot(count: int, release: str = sandbox.DEFAULT_RELEASE):
        hosts = sandbox.up(PROJECT, count=count, release=release, replace=True)   # the session holds the lock
        booted.append(hosts)
        return inventory.load(sandbox.workdir_for(PROJECT) / "hosts.yaml")

    yield boot
    sandbox.down()
    assert system_leftovers() == []
