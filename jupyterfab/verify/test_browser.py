"""JupyterLab in a real browser through NGINX, as a person would use it: headless
Chromium logs in with the password, opens a new notebook, runs a cell and sees its
output. Collected only with `invoke verify --browser` (see conftest.py)."""

import os

import pytest

from jupyterfab.verify.browser import CA_ENV_VAR, CODE, EXPECTED, BrowserCheckFailed, run_notebook_cell


def test_jupyterlab_in_headless_chromium_runs_a_cell_and_shows_its_output(entry, v, password,
                                                                        keep_screenshot):
    try:
        result = run_notebook_cell(v["public_url"], entry.address, password,
                                   ca_file=os.environ.get(CA_ENV_VAR) or None, label=entry.name)
    except BrowserCheckFailed as exc:
        keep_screenshot(f"browser check failed on {entry.name}, screenshot: {exc.screenshot}")
        pytest.fail(str(exc), pytrace=False)
    keep_screenshot(f"browser check on {entry.name}: {CODE} -> {result.output!r} in "
                    f"{result.seconds:.1f} s, screenshot: {result.screenshot}")
    assert result.output == EXPECTED
