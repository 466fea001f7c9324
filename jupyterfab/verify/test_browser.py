"""JupyterLab in a real browser through NGINX, as a person would use it: headless
Chromium logs in with the password, opens a new notebook, runs a cell and sees its
output. Collected only with `invoke verify --browser` (see conftest.py)."""

import shlex

import pytest

from jupyterfab.verify.browser import CODE, EXPECTED, BrowserCheckFailed, run_notebook_cell


def test_jupyterlab_in_headless_chromium_runs_a_cell_and_shows_its_output(host, entry, v, password, way_in,
                                                                        keep_screenshot):
    address, verify, source = way_in   # the same way in as the other checks'
    # JupyterLab makes .ipynb_checkpoints/ beside the check's notebook, and its API
    # cannot remove a hidden folder: removed here when the check made it (and it is empty).
    checkpoints = f"{v['notebook_dir'].rstrip('/')}/.ipynb_checkpoints"
    with host.sudo():
        made_here = not host.file(checkpoints).exists
    try:
        result = run_notebook_cell(v["public_url"], address, password, verify=verify,
                                   source_address=source, label=entry.name)
    except BrowserCheckFailed as exc:
        keep_screenshot(f"browser check failed on {entry.name}, screenshot: {exc.screenshot}")
        pytest.fail(str(exc), pytrace=False)
    finally:
        if made_here:
            with host.sudo():
                host.run(f"rmdir -- {shlex.quote(checkpoints)}")     # only ever an empty folder
    keep_screenshot(f"browser check on {entry.name}: {CODE} -> {result.output!r} in "
                    f"{result.seconds:.1f} s, screenshot: {result.screenshot}")
    assert result.output == EXPECTED
