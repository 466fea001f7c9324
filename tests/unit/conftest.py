"""Unit-test fixtures; the helpers they and the tests share are in unit_support."""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

sys.path.insert(0, str(Path(__file__).parent))

from unit_support import Project  # noqa: E402


def pytest_configure(config):
    """Hypothesis keeps its caches (written while pytest collects, before any fixture)
    in a temporary folder of the run, not as .hypothesis/ in the checkout."""
    home = tempfile.mkdtemp(prefix="jupyterfab-hypothesis-")
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    set_hypothesis_home_dir(home)


@pytest.fixture
def project(tmp_path) -> Project:
    (tmp_path / "states").mkdir()
    (tmp_path / "files").mkdir()
    return Project(tmp_path)


# --- the Cloudflare API stand-in, shared by the test_cloudflare_* files ------------

CLOUDFLARE_DOMAIN = "example.com"


@pytest.fixture
def standin():
    from jupyterfab.dev.doubles.cloudflare_api import CloudflareStandIn
    with CloudflareStandIn() as server:     # its end checks that every answer fit the schema
        yield server


@pytest.fixture
def zone_id(standin):
    return standin.add_zone(CLOUDFLARE_DOMAIN)


@pytest.fixture
def api(standin, zone_id):
    from jupyterfab.stack.front import cloudflare as cf
    with cf.connect(standin.add_token(), base_url=standin.base_url, max_retries=2) as client:
        yield client
